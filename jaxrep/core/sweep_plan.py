"""The plan of a seeded sweep: grid points × seeds, each run's seed, folder and command.

A sweep point is one value per ``--grid`` key plus the fixed ``--config``
overrides, canonicalised (values parsed as the config's types, keys sorted).
Seed index r of a point is replicate r of one run seed: ``execute(...,
seed=seed, replicate_offset=r)`` with ``num_seeds=1``, whose keys are
``fold_in(key(name), r)``, the keys one program vmapped over ``num_seeds=N``
gives its replicate r (``seeds_in_one_program``). The run seed is

    seed = int(sha256(json([paper_id, base_seed, overrides]))) mod SEED_SPACE

where ``overrides`` are, by default, the point's canonical overrides (every
point has its own seeds: independent noise per config) and, with
``paired_seeds`` (DomainBed's trial seed), only the fixed ``--config``
overrides: replicate r of every grid point then uses the same run seed and keys
(the same data, init and batch order wherever the config allows), so config
differences are not mixed with seed noise. Either way a rerun is bitwise
identical and no run depends on which ran before it.

A run's folder is ``<out>/<slug>/seed<r>/`` (one run per seed) or
``<out>/<slug>/seeds0-<N-1>/`` (one program), an ordinary experiment workdir, so
the ``jaxrep run ID --workdir ... --seed S --replicate R --config.K=V ...`` line
of ``run_commands`` runs exactly one sweep run. Its integer seeds in
``results.json`` are ``Context.seeds``: ``seed·1000 + r``, hence at most 1000
seeds. Imports no jax.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shlex
from typing import Any, Mapping, Sequence

from jaxrep.core import config as config_lib
from jaxrep.core import results as results_lib

ConfigError = config_lib.ConfigError
SEED_SPACE = 4_000_000  # Context.seeds() = seed·1000 + r then stays below 2³² (NumPy).
MAX_SEEDS = 1000  # replicate r < 1000 keeps seed·1000 + r unique per (seed, r)


@dataclasses.dataclass(frozen=True)
class SweepRun:
  """One experiment run of a sweep: a sweep point and seed indices
  ``replicate_offset … replicate_offset + num_seeds − 1``. ``config`` is the
  run's full config as ``results.json`` stores it."""

  paper_id: str
  slug: str
  overrides: dict[str, str]
  canonical: dict[str, Any]
  seed: int
  replicate_offset: int
  num_seeds: int
  quick: bool
  workdir: str
  config: dict[str, Any] | None = None

  def spec(self) -> dict[str, Any]:
    """What identifies the run (written to ``sweep_run.json``)."""
    return {"paper_id": self.paper_id, "overrides": self.canonical, "seed": self.seed,
            "replicate_offset": self.replicate_offset, "num_seeds": self.num_seeds,
            "quick": self.quick}

  def override_args(self) -> tuple[str, ...]:
    """``KEY=VALUE`` config overrides, ``num_seeds`` last."""
    return tuple(f"{k}={v}" for k, v in self.overrides.items()) + (
        f"num_seeds={self.num_seeds}",)

  def seeds(self) -> list[int]:
    """The integer seeds ``results.json`` lists (``Context.seeds``)."""
    return [self.seed * 1000 + self.replicate_offset + i for i in range(self.num_seeds)]

  def command(self, data_dir: str | None = None, program: str = "jaxrep") -> str:
    """The ``jaxrep run`` line that runs exactly this run (shell-quoted)."""
    args = [program, "run", self.paper_id, "--workdir", self.workdir, "--seed",
            str(self.seed), "--replicate", str(self.replicate_offset)]
    args += ["--quick"] if self.quick else []
    args += ["--data_dir", data_dir] if data_dir else []
    args += [f"--config.{o}" for o in self.override_args()]
    return " ".join(shlex.quote(a) for a in args)


def json_roundtrip(value: Any) -> Any:
  """``value`` as it reads back from a JSON file (``results.json``, ``sweep.json``)."""
  return json.loads(json.dumps(results_lib.to_jsonable(value)))


def split_values(text: str) -> list[str]:
  """``'1,2'`` → ``['1', '2']``; commas inside brackets stay: ``'(3,4),(5,6)'`` →
  ``['(3,4)', '(5,6)']``."""
  values, depth, current = [], 0, ""
  for char in text:
    depth += char in "([{"
    depth -= char in ")]}"
    if char == "," and depth == 0:
      values.append(current.strip())
      current = ""
    else:
      current += char
  values.append(current.strip())
  if any(not v for v in values):
    raise ConfigError(f"empty value in grid values {text!r}")
  return values


def _key_and_text(assignment: str, malformed: str) -> tuple[str, str]:
  """``'--config.lr=0.1'`` → ``('lr', '0.1')``; ConfigError ``malformed`` without ``=``."""
  if "=" not in assignment:
    raise ConfigError(malformed)
  key, text = assignment.split("=", 1)
  return key.strip().removeprefix("--config.").removeprefix("config."), text


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
  """``['lr=0.1,0.3', 'width=8']`` → ``{'lr': ['0.1', '0.3'], 'width': ['8']}``."""
  grid: dict[str, list[str]] = {}
  for spec in specs:
    key, text = _key_and_text(spec, f"--grid {spec!r} must look like KEY=V1,V2,...")
    if key in grid:
      raise ConfigError(f"--grid names '{key}' twice; give all its values in one --grid")
    grid[key] = split_values(text)
  return grid


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
  """``('config.lr=0.1',)`` → ``{'lr': '0.1'}``."""
  return dict(_key_and_text(o, f"config override {o!r} must look like KEY=VALUE")
              for o in overrides)


def grid_points(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
  """Every combination, the first key varying slowest: ``[{'lr': '0.1'}, ...]``."""
  keys = list(grid)
  return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def build_config(experiment: Any, *, quick: bool = False, overrides: Sequence[str] = ()):
  """``experiment.build_config`` without jax: ``experiment`` is an ``Experiment``
  or anything with ``paper_id``, ``get_config``, ``quick`` and ``validate``
  (e.g. an ``experiments/configs`` module wrapped by the CLI). ConfigError (one
  line) on a bad key, type or value."""
  config = experiment.get_config()
  if quick:
    config = experiment.quick(config)
  config = config_lib.apply_overrides(config, list(overrides), experiment.paper_id)
  config_lib.check_positive_sizes(config)
  validate = getattr(experiment, "validate", None)
  if validate is not None:
    validate(config)
  return config


def canonical_overrides(experiment: Any, overrides: Mapping[str, str]) -> dict[str, Any]:
  """The overridden keys, sorted, with values parsed as the config's types
  (JSON-able), so ``lr=0.10`` and ``lr=.1`` are the same point."""
  config = config_lib.apply_overrides(
      experiment.get_config(), [f"{k}={v}" for k, v in overrides.items()],
      experiment.paper_id)
  leaves = config_lib.flat_items(config)
  return {k: results_lib.to_jsonable(leaves[k]) for k in sorted(overrides)}


def run_seed(paper_id: str, canonical: Mapping[str, Any], base_seed: int = 0) -> int:
  """A stable hash of (experiment, overrides, base seed): a point's run seed
  (its canonical overrides) or, with paired seeds, every point's (the fixed ones)."""
  text = json.dumps([paper_id, int(base_seed), dict(sorted(canonical.items()))],
                    sort_keys=True, separators=(",", ":"))
  return int(hashlib.sha256(text.encode()).hexdigest(), 16) % SEED_SPACE


def config_slug(canonical: Mapping[str, Any], max_len: int = 80) -> str:
  """A folder name for a sweep point: ``{'lr': 0.1, 'ks': [3, 4]}`` → ``ks-3,4_lr-0.1``."""
  if not canonical:
    return "default"

  def text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)

  slug = "_".join(f"{k}-{text(v)}" for k, v in sorted(canonical.items()))
  slug = re.sub(r"[^A-Za-z0-9._,+=-]", "-", slug)
  if len(slug) > max_len:
    digest = hashlib.sha256(slug.encode()).hexdigest()[:8]
    slug = f"{slug[:max_len - 9]}-{digest}"
  return slug


def _check_sweep_args(experiment: Any, grid: Mapping[str, Sequence[str]], num_seeds: int,
                      base_overrides: Mapping[str, str], base_seed: int) -> None:
  """ConfigError (one line) for a sweep that cannot be planned."""
  if not 1 <= num_seeds <= MAX_SEEDS:
    raise ConfigError(f"--seeds must be in 1..{MAX_SEEDS}, got {num_seeds}")
  if base_seed < 0:
    raise ConfigError(f"--seed must be a non-negative integer, got {base_seed}")
  if "num_seeds" not in experiment.get_config():
    raise ConfigError(f"{experiment.paper_id} has no 'num_seeds' config key to sweep seeds over")
  if "num_seeds" in grid or "num_seeds" in base_overrides:
    raise ConfigError("set the number of seeds with --seeds, not the config key 'num_seeds'")
  clash = sorted(set(grid) & set(base_overrides))
  if clash:
    raise ConfigError(f"'{clash[0]}' is both swept (--grid) and fixed (--config)")


def _seed_groups(num_seeds: int, seeds_in_one_program: bool) -> list[tuple[int, int, str]]:
  """``(replicate_offset, num_seeds, folder)`` of each run of one sweep point."""
  if seeds_in_one_program:
    return [(0, num_seeds, f"seeds0-{num_seeds - 1}")]
  return [(r, 1, f"seed{r}") for r in range(num_seeds)]


def plan_sweep(experiment: Any, out: str, grid: Mapping[str, Sequence[str]], num_seeds: int,
               *, base_overrides: Mapping[str, str] | None = None, quick: bool = False,
               base_seed: int = 0, seeds_in_one_program: bool = False,
               paired_seeds: bool = False) -> list[SweepRun]:
  """The runs of a sweep, in a fixed order (grid points, then seeds), every
  config checked before anything runs."""
  base_overrides = dict(base_overrides or {})
  _check_sweep_args(experiment, grid, num_seeds, base_overrides, base_seed)
  paper_id = experiment.paper_id
  paired_seed = run_seed(paper_id, canonical_overrides(experiment, base_overrides), base_seed)
  runs, slugs = [], {}
  for point in grid_points(grid):
    overrides = {**base_overrides, **point}
    canonical = canonical_overrides(experiment, overrides)
    seed = paired_seed if paired_seeds else run_seed(paper_id, canonical, base_seed)
    slug = config_slug(canonical)
    if slugs.setdefault(slug, canonical) != canonical:
      raise ConfigError(f"two sweep points share the folder name '{slug}'")
    for offset, count, leaf in _seed_groups(num_seeds, seeds_in_one_program):
      run = SweepRun(paper_id, slug, overrides, canonical, seed, offset, count, quick,
                     os.path.join(out, slug, leaf))
      config = build_config(experiment, quick=quick, overrides=run.override_args())
      runs.append(dataclasses.replace(run, config=json_roundtrip(config.to_dict())))
  return runs


def partition(runs: Sequence[SweepRun], worker: int | None,
              num_workers: int = 1) -> list[SweepRun]:
  """Worker ``worker``'s runs: those whose index is ``worker`` mod ``num_workers``
  (all runs for ``worker=None``)."""
  if worker is None:
    return list(runs)
  if num_workers < 1 or not 0 <= worker < num_workers:
    raise ConfigError(f"--worker must be in 0..num_workers-1, got {worker} of {num_workers}")
  return list(runs[worker::num_workers])


def run_commands(runs: Sequence[SweepRun], data_dir: str | None = None,
                 program: str = "jaxrep") -> list[str]:
  """One ``jaxrep run`` line per run, in plan order (for ``sbatch --array``, ``xargs``)."""
  return [run.command(data_dir, program) for run in runs]
