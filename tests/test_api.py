"""The public API: every package's ``__all__`` resolves, every dotted ``jaxrep.`` name the
docs mention exists where they say, and the API reference (pdoc) builds without a warning
other than pdoc's known misreading of postponed annotations."""
import importlib
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import jaxrep

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BUILD.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = sorted(name for _, name, is_pkg in pkgutil.walk_packages(jaxrep.__path__, "jaxrep.")
                  if is_pkg) + ["jaxrep"]
# jaxrep.commands holds the CLI's commands, documented by `jaxrep --help`
PUBLIC_PACKAGES = [p for p in PACKAGES if p.split(".")[:2] != ["jaxrep", "commands"]]
# pdoc evaluates a NamedTuple's generated __init__ and third-party defaults in the wrong
# namespace under `from __future__ import annotations`; nothing else may warn
KNOWN_PDOC_WARNING = "Error parsing type annotation"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_declares_all_and_every_name_resolves(package):
  module = importlib.import_module(package)
  assert isinstance(getattr(module, "__all__", None), list | tuple), f"{package} lacks __all__"
  for name in module.__all__:
    if not hasattr(module, name):
      importlib.import_module(f"{package}.{name}")  # a submodule listed in __all__


def test_every_public_subpackage_is_in_the_top_level_all():
  top = {p.split(".")[1] for p in PUBLIC_PACKAGES if p != "jaxrep"}
  assert top <= set(jaxrep.__all__), top - set(jaxrep.__all__)


def _resolve(dotted: str):
  parts = dotted.split(".")
  for cut in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:cut]))
    except ModuleNotFoundError:
      continue
    for attr in parts[cut:]:
      obj = getattr(obj, attr)
    return obj
  raise ModuleNotFoundError(dotted)


def test_every_dotted_name_in_the_docs_resolves():
  names = set()
  for doc in DOCS:
    names |= set(re.findall(r"`(jaxrep(?:\.\w+)+)", doc.read_text()))
  assert len(names) >= 10
  missing = []
  for name in sorted(names):
    try:
      _resolve(name)
    except (AttributeError, ModuleNotFoundError) as error:
      missing.append(f"{name}: {error}")
  assert not missing, "\n".join(missing)


def test_api_reference_builds_without_warnings(tmp_path):
  run = subprocess.run([sys.executable, "-m", "pdoc", "jaxrep", "-o", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
  assert run.returncode == 0, run.stderr[-2000:]
  warnings = [line for line in (run.stdout + run.stderr).splitlines()
              if line.startswith("Warn") and KNOWN_PDOC_WARNING not in line]
  assert not warnings, "\n".join(warnings)
  for package in PUBLIC_PACKAGES:
    assert (tmp_path / (package.replace(".", "/") + ".html")).exists(), package
