"""Every shell command in README.md, BUILD.md and docs/*.md against the current code.

``jaxrep ...`` lines are parsed by the CLI's own parser and their ``--config``/``--grid``
keys checked against the paper's config (jax-free); ``python -m experiments.X`` lines
name an existing experiment and only flags its ``--help`` lists; ``pip install`` lines
name extras that exist (jax's installed metadata, our pyproject) at the installed jax
version. Wrappers (``gcloud ... --command "..."``, ``srun``, ``xargs``) are unwrapped.
"""
import importlib.metadata
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from jaxrep import cli
from jaxrep.commands import papers

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BUILD.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = ("python", "python3", ".venv/bin/python")
PLACEHOLDER = "1"  # stands for $SLURM_ARRAY_TASK_ID, $i, N, ...


def bash_blocks(text: str) -> list[str]:
  return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands_of(block: str) -> list[list[str]]:
  """Each simple command of a block as argv: continuations joined, comments and
  ``VAR=value`` prefixes dropped, ``$VAR`` from an earlier assignment substituted."""
  variables: dict[str, str] = {}
  out = []
  for line in block.replace("\\\n", " ").splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    words = shlex.split(line, comments=True, posix=True)
    for part in _split_operators(words):
      while part and re.fullmatch(r"[A-Z_]+=.*", part[0]):
        name, value = part.pop(0).split("=", 1)
        variables[name] = value
      if part:
        out.append(_expand(part, variables))
  return out


def _split_operators(words: list[str]) -> list[list[str]]:
  parts, current = [], []
  for word in words:
    if word in ("&&", "||", "|", ";"):
      parts.append(current)
      current = []
    else:
      current.append(word)
  return [p for p in parts + [current] if p]


def _expand(argv: list[str], variables: dict[str, str]) -> list[str]:
  expanded = []
  for word in argv:
    if word in {f"${name}" for name in variables}:
      expanded += shlex.split(variables[word[1:]])
    else:
      expanded.append(re.sub(r"\$\(\(.*?\)\)|\$\{?\w+\}?", PLACEHOLDER, word))
  return expanded


def unwrap(argv: list[str]) -> list[list[str]]:
  """The commands a wrapper runs (``gcloud ... --command``, ``srun``, ``xargs``)."""
  if argv[0] == "gcloud":
    inner = [a.split("=", 1)[1] for a in argv if a.startswith("--command=")]
    inner += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--command"]
    return [c for text in inner for c in commands_of(text)]
  if argv[0] in ("srun", "xargs"):
    tail = [i for i, a in enumerate(argv) if a in PYTHON or a == "jaxrep"]
    return [argv[tail[0]:]] if tail else []
  return [argv]


def all_commands() -> list[tuple[str, list[str]]]:
  found = []
  for doc in DOCS:
    for block in bash_blocks(doc.read_text()):
      for argv in commands_of(block):
        found += [(doc.name, c) for c in unwrap(argv)]
  return found


COMMANDS = all_commands()


def _ids(kind):
  return [f"{doc}: {' '.join(argv)[:70]}" for doc, argv in COMMANDS if kind(argv)]


def _of(kind):
  return [argv for _, argv in COMMANDS if kind(argv)]


def is_jaxrep(argv):
  return argv[0] == "jaxrep" and "..." not in argv


def is_experiment(argv):
  return argv[0] in PYTHON and argv[1:2] == ["-m"] and argv[2].startswith("experiments.")


def is_pip_install(argv):
  return argv[0] in ("pip", ".venv/bin/pip") and argv[1:2] == ["install"]


def test_the_docs_have_commands_of_every_kind():
  assert len(_of(is_jaxrep)) >= 20 and len(_of(is_experiment)) >= 3
  assert len(_of(is_pip_install)) >= 3


def _config_overrides(args) -> tuple[str, ...]:
  overrides = list(args.overrides)
  for grid in getattr(args, "grid", []):
    key, values = grid.split("=", 1)
    overrides.append(f"{key}={values.split(',')[0]}")
  return tuple(overrides)


@pytest.mark.parametrize("argv", _of(is_jaxrep), ids=_ids(is_jaxrep))
def test_jaxrep_command_parses_and_its_config_keys_exist(argv):
  args_in = [a for a in argv[1:] if not a.startswith("--config.")]
  args = cli.build_parser().parse_args(args_in)
  args.overrides = tuple(a.removeprefix("--") for a in argv[1:] if a.startswith("--config."))
  paper_id = getattr(args, "id", None)
  if paper_id is not None:
    paper = papers.started_paper(paper_id)
    papers.check_config(paper, quick=args.quick, overrides=_config_overrides(args))
  for paper_id in getattr(args, "ids", []):
    if args.command == "reproduce":
      papers.started_paper(paper_id)


@pytest.fixture(scope="module")
def experiment_flags():
  cache = {}

  def flags_of(module: str) -> set[str]:
    if module not in cache:
      text = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120).stdout
      cache[module] = set(re.findall(r"^\s+--(?:\[no\])?(\w+)", text, flags=re.M))
    return cache[module]

  return flags_of


@pytest.mark.parametrize("argv", _of(is_experiment), ids=_ids(is_experiment))
def test_experiment_entrypoint_exists_and_takes_these_flags(argv, experiment_flags):
  module = argv[2]
  assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
  known = experiment_flags(module)
  assert {"workdir", "seed", "mesh"} <= known, known
  for flag in argv[3:]:
    name = flag.removeprefix("--").split("=", 1)[0]
    if not name.startswith("config."):
      assert name in known, f"{module} has no flag --{name}"


def _requirement(word: str) -> tuple[str, list[str], str | None] | None:
  match = re.fullmatch(r"([\w.\-]+)(?:\[([\w,\-]+)\])?(?:==([\w.]+))?", word)
  if match is None or word.startswith("-"):
    return None
  name, extras, version = match.groups()
  return name, extras.split(",") if extras else [], version


@pytest.mark.parametrize("argv", _of(is_pip_install), ids=_ids(is_pip_install))
def test_pip_install_names_extras_that_exist_at_the_installed_version(argv):
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  for word in argv[2:]:
    requirement = _requirement(word)
    if requirement is None:
      continue
    name, extras, version = requirement
    if name == ".":
      assert set(extras) <= set(project.get("optional-dependencies", {})), extras
      continue
    installed = importlib.metadata.metadata(name)
    assert set(extras) <= set(installed.get_all("Provides-Extra") or []), (name, extras)
    if version is not None:
      assert version == installed["Version"], f"{word}: installed {installed['Version']}"
