"""Seeded sweeps: configs × seeds, each run's keys from a hash of its config.

A sweep point is one value per ``--grid`` key plus the fixed ``--config``
overrides, canonicalised (values parsed as the config's types, keys sorted).
Its run seed is

    seed = int(sha256(json([paper_id, base_seed, canonical overrides]))) mod SEED_SPACE

and seed index r is replicate r of that run: ``execute(..., seed=seed,
replicate_offset=r)`` with ``num_seeds=1``, whose keys are
``fold_in(key(name), r)`` — the keys that one program vmapped over
``num_seeds=N`` gives its replicate r (``seeds_in_one_program``). So a rerun is
bitwise identical, no run depends on which ran before it, and the one-program
mode gives the same per-seed values.

Layout under ``out``: ``<slug>/seed<r>/`` (one run per seed) or
``<slug>/seeds0-<N-1>/`` (one program), each an ordinary experiment workdir plus
``sweep_run.json`` naming the run. A run is skipped when its ``results.json``
exists, its ``sweep_run.json`` matches and its config equals the one to run.
``sweep.json`` and ``sweep.md`` hold mean ± std over seeds of every measured
value, per sweep point (rewritten after each run).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxrep.core import config as config_lib
from jaxrep.core import experiment as experiment_lib
from jaxrep.core import results as results_lib

ConfigError = config_lib.ConfigError
SEED_SPACE = 4_000_000  # Context.seeds() = seed·1000 + r then stays below 2³² (NumPy).
RUN_FILE = "sweep_run.json"
SWEEP_JSON, SWEEP_MD = "sweep.json", "sweep.md"


@dataclasses.dataclass(frozen=True)
class SweepRun:
  """One experiment run of a sweep: a sweep point and seed indices
  ``replicate_offset … replicate_offset + num_seeds − 1``."""

  paper_id: str
  slug: str
  overrides: dict[str, str]
  canonical: dict[str, Any]
  seed: int
  replicate_offset: int
  num_seeds: int
  quick: bool
  workdir: str

  def spec(self) -> dict[str, Any]:
    """What identifies the run (written to ``sweep_run.json``)."""
    return {"paper_id": self.paper_id, "overrides": self.canonical, "seed": self.seed,
            "replicate_offset": self.replicate_offset, "num_seeds": self.num_seeds,
            "quick": self.quick}

  def override_args(self) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in self.overrides.items()) + (
        f"num_seeds={self.num_seeds}",)


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


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
  """``['lr=0.1,0.3', 'width=8']`` → ``{'lr': ['0.1', '0.3'], 'width': ['8']}``."""
  grid: dict[str, list[str]] = {}
  for spec in specs:
    if "=" not in spec:
      raise ConfigError(f"--grid {spec!r} must look like KEY=V1,V2,...")
    key, text = spec.split("=", 1)
    key = key.strip().removeprefix("--config.").removeprefix("config.")
    if key in grid:
      raise ConfigError(f"--grid names '{key}' twice; give all its values in one --grid")
    grid[key] = split_values(text)
  return grid


def grid_points(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
  """Every combination, the first key varying slowest: ``[{'lr': '0.1'}, ...]``."""
  keys = list(grid)
  return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
  """``('config.lr=0.1',)`` → ``{'lr': '0.1'}``."""
  parsed = {}
  for override in overrides:
    if "=" not in override:
      raise ConfigError(f"config override {override!r} must look like KEY=VALUE")
    key, text = override.split("=", 1)
    parsed[key.strip().removeprefix("--config.").removeprefix("config.")] = text
  return parsed


def canonical_overrides(experiment: experiment_lib.Experiment,
                        overrides: Mapping[str, str]) -> dict[str, Any]:
  """The overridden keys, sorted, with values parsed as the config's types
  (JSON-able), so ``lr=0.10`` and ``lr=.1`` are the same point."""
  config = config_lib.apply_overrides(
      experiment.get_config(), [f"{k}={v}" for k, v in overrides.items()],
      experiment.paper_id)
  leaves = config_lib.flat_items(config)
  return {k: results_lib.to_jsonable(leaves[k]) for k in sorted(overrides)}


def run_seed(paper_id: str, canonical: Mapping[str, Any], base_seed: int = 0) -> int:
  """The run seed of a sweep point: a stable hash of (experiment, config, base seed)."""
  text = json.dumps([paper_id, int(base_seed), dict(sorted(canonical.items()))],
                    sort_keys=True, separators=(",", ":"))
  return int(hashlib.sha256(text.encode()).hexdigest(), 16) % SEED_SPACE


def config_slug(canonical: Mapping[str, Any], max_len: int = 80) -> str:
  """A folder name for a sweep point: ``{'lr': 0.1, 'ks': [3, 4]}`` → ``ks-3,4_lr-0.1``."""
  if not canonical:
    return "default"

  def text(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)

  slug = "_".join(f"{k}-{text(v)}" for k, v in sorted(canonical.items()))
  slug = re.sub(r"[^A-Za-z0-9._,+=-]", "-", slug)
  if len(slug) > max_len:
    digest = hashlib.sha256(slug.encode()).hexdigest()[:8]
    slug = f"{slug[:max_len - 9]}-{digest}"
  return slug


def plan_sweep(experiment: experiment_lib.Experiment, out: str,
               grid: Mapping[str, Sequence[str]], num_seeds: int, *,
               base_overrides: Mapping[str, str] | None = None, quick: bool = False,
               base_seed: int = 0, seeds_in_one_program: bool = False) -> list[SweepRun]:
  """The runs of a sweep, every config checked before anything runs."""
  base_overrides = dict(base_overrides or {})
  if num_seeds < 1:
    raise ConfigError(f"--seeds must be ≥ 1, got {num_seeds}")
  if base_seed < 0:
    raise ConfigError(f"--seed must be a non-negative integer, got {base_seed}")
  if "num_seeds" not in experiment.get_config():
    raise ConfigError(f"{experiment.paper_id} has no 'num_seeds' config key to sweep seeds over")
  if "num_seeds" in grid or "num_seeds" in base_overrides:
    raise ConfigError("set the number of seeds with --seeds, not the config key 'num_seeds'")
  clash = sorted(set(grid) & set(base_overrides))
  if clash:
    raise ConfigError(f"'{clash[0]}' is both swept (--grid) and fixed (--config)")
  runs = []
  for point in grid_points(grid):
    overrides = {**base_overrides, **point}
    canonical = canonical_overrides(experiment, overrides)
    seed = run_seed(experiment.paper_id, canonical, base_seed)
    slug = config_slug(canonical)
    groups = ([(0, num_seeds, f"seeds0-{num_seeds - 1}")] if seeds_in_one_program
              else [(r, 1, f"seed{r}") for r in range(num_seeds)])
    for offset, count, leaf in groups:
      run = SweepRun(experiment.paper_id, slug, overrides, canonical, seed, offset, count,
                     quick, os.path.join(out, slug, leaf))
      experiment_lib.build_config(experiment, quick=quick, overrides=run.override_args())
      runs.append(run)
  slugs = {}
  for run in runs:
    if slugs.setdefault(run.slug, run.canonical) != run.canonical:
      raise ConfigError(f"two sweep points share the folder name '{run.slug}'")
  return runs


def _json_roundtrip(value: Any) -> Any:
  return json.loads(json.dumps(results_lib.to_jsonable(value)))


def finished_results(run: SweepRun, experiment: experiment_lib.Experiment) -> dict | None:
  """The run's ``results.json`` payload if it finished with this exact config."""
  try:
    with open(os.path.join(run.workdir, RUN_FILE)) as f:
      spec = json.load(f)
    with open(os.path.join(run.workdir, experiment_lib.RESULTS_FILE)) as f:
      payload = json.load(f)
  except (OSError, ValueError):
    return None
  config = experiment_lib.build_config(experiment, quick=run.quick,
                                       overrides=run.override_args())
  if spec != _json_roundtrip(run.spec()) or payload.get("config") != _json_roundtrip(
      config.to_dict()):
    return None
  return payload


def _as_float(value: Any) -> float:
  return float(value)  # results.json stores NaN/inf as "nan"/"inf"


def aggregate_point(payloads: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Mean ± std over seeds of each measured value of one sweep point.

  One payload (one program over all seeds): its own statistics. Several (one
  run per seed): statistics of the runs' values, with ``per_seed`` listed.
  """
  if len(payloads) == 1:
    return {k: dict(v) for k, v in payloads[0]["measured"].items()}
  names = list(dict.fromkeys(k for p in payloads for k in p["measured"]))
  table = {}
  for name in names:
    values = [_as_float(p["measured"][name]["mean"]) if name in p["measured"] else np.nan
              for p in payloads]
    table[name] = {**results_lib.summarize(values), "per_seed": values}
  return table


def summarize_sweep(runs: Sequence[SweepRun], payloads: Mapping[str, Mapping[str, Any]],
                    errors: Mapping[str, str], *, num_seeds: int, grid: Mapping[str, Any],
                    seeds_in_one_program: bool) -> dict[str, Any]:
  """The ``sweep.json`` payload: one entry per sweep point, in grid order."""
  points = []
  for slug in dict.fromkeys(r.slug for r in runs):
    members = [r for r in runs if r.slug == slug]
    done = [payloads[r.workdir] for r in members if r.workdir in payloads]
    first = members[0]
    points.append({
        "slug": slug, "overrides": first.canonical, "seed": first.seed,
        "workdirs": [r.workdir for r in members],
        "complete": len(done) == len(members),
        "passed": [p["passed"] for p in done],
        "errors": [errors[r.workdir] for r in members if r.workdir in errors],
        "measured": aggregate_point(done) if done else {}})
  return {"paper_id": runs[0].paper_id if runs else None, "num_seeds": num_seeds,
          "seeds_in_one_program": seeds_in_one_program,
          "quick": bool(runs and runs[0].quick), "grid": dict(grid), "points": points}


def _cell(stats: Mapping[str, Any] | None) -> str:
  if not stats:
    return "—"
  mean, std = _as_float(stats["mean"]), _as_float(stats["std"])
  return f"{mean:.4g} ± {std:.2g} (n={stats['n']})" if stats["n"] > 1 else f"{mean:.4g}"


def _passed_cell(point: Mapping[str, Any]) -> str:
  verdicts = [p for p in point["passed"] if p is not None]
  if point["errors"]:
    return f"ERROR ({len(point['errors'])})"
  if not verdicts:
    return "n/a"
  return f"{sum(verdicts)}/{len(verdicts)}"


def format_markdown(summary: Mapping[str, Any]) -> str:
  """A table: one row per sweep point, one column per measured value (mean ± std)."""
  points = summary["points"]
  names = list(dict.fromkeys(k for p in points for k in p["measured"]))
  mode = "one program" if summary["seeds_in_one_program"] else "one run per seed"
  lines = [f"# Sweep: {summary['paper_id']}",
           "",
           f"{summary['num_seeds']} seed(s) per config ({mode}); mean ± std over seeds"
           + (" — quick mode" if summary["quick"] else "") + ".",
           "",
           "| config | run seed | passed | " + " | ".join(names) + " |",
           "|" + "---|" * (3 + len(names))]
  for p in points:
    config = ", ".join(f"{k}={v}" for k, v in p["overrides"].items()) or "(defaults)"
    cells = [_cell(p["measured"].get(n)) for n in names]
    lines.append(f"| {config} | {p['seed']} | {_passed_cell(p)} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_summary(summary: Mapping[str, Any], out: str) -> str:
  results_lib.write_json_atomic(os.path.join(out, SWEEP_JSON), summary)
  table = format_markdown(summary)
  tmp = os.path.join(out, f".{SWEEP_MD}.tmp")
  with open(tmp, "w") as f:
    f.write(table)
  os.replace(tmp, os.path.join(out, SWEEP_MD))
  return table


def run_sweep(experiment: experiment_lib.Experiment, out: str,
              grid: Mapping[str, Sequence[str]], num_seeds: int, *,
              base_overrides: Mapping[str, str] | None = None, quick: bool = False,
              base_seed: int = 0, seeds_in_one_program: bool = False,
              data_dir: str | None = None, verbose: bool = True,
              execute: Callable[..., dict] = experiment_lib.execute) -> dict[str, Any]:
  """Runs (or skips, if finished) every run of the sweep; writes and returns the summary.

  A run that raises is reported and the sweep goes on; its point shows ERROR.
  """
  runs = plan_sweep(experiment, out, grid, num_seeds, base_overrides=base_overrides,
                    quick=quick, base_seed=base_seed,
                    seeds_in_one_program=seeds_in_one_program)
  payloads: dict[str, dict] = {}
  errors: dict[str, str] = {}
  os.makedirs(out, exist_ok=True)
  start = time.perf_counter()
  for index, run in enumerate(runs):
    label = f"[{index + 1}/{len(runs)}] {run.slug}/{os.path.basename(run.workdir)}"
    payload = finished_results(run, experiment)
    if payload is not None:
      if verbose:
        print(f"{label}: finished earlier, skipped", flush=True)
    else:
      if verbose:
        print(f"{label}: running (seed {run.seed}, seed index {run.replicate_offset}"
              f"{'' if run.num_seeds == 1 else f'–{run.replicate_offset + run.num_seeds - 1}'})",
              flush=True)
      os.makedirs(run.workdir, exist_ok=True)
      results_lib.write_json_atomic(os.path.join(run.workdir, RUN_FILE), run.spec())
      try:
        payload = execute(experiment, run.workdir, quick=quick, seed=run.seed,
                          overrides=run.override_args(), data_dir=data_dir,
                          verbose=False, replicate_offset=run.replicate_offset)
      except ConfigError:
        raise
      except Exception as error:  # one failing run must not hide the others
        traceback.print_exc()
        errors[run.workdir] = f"{type(error).__name__}: {error}".splitlines()[0]
        payload = None
    if payload is not None:
      payloads[run.workdir] = _json_roundtrip(payload)
    summary = summarize_sweep(runs, payloads, errors, num_seeds=num_seeds, grid=grid,
                              seeds_in_one_program=seeds_in_one_program)
    write_summary(summary, out)
  if verbose:
    print(format_markdown(summary), flush=True)
    print(f"wrote {os.path.join(out, SWEEP_MD)} and {SWEEP_JSON} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
  return summary
