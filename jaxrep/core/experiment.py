"""The experiment harness: config, seeds, workdir outputs and the absl entrypoint.

An experiment module defines ``EXPERIMENT = Experiment(...)`` and ends with
``if __name__ == "__main__": experiment.main(EXPERIMENT)``. The harness

1. builds the config (``get_config``, then ``quick`` if ``--quick``, then
   ``--config.KEY=VALUE`` overrides) and checks it before any work;
2. runs ``run(config, ctx) -> Outcome`` where ``ctx`` gives seeded keys, a
   metrics logger, progress output, resumable stages and the figure path;
3. writes ``config.json``, ``metrics.jsonl``, ``figure.png`` and, last and
   atomically, ``results.json``. A run that fails leaves no ``results.json``.

Quick mode reports its numbers but never claims PASS (``passed`` is null).
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
import zlib
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from jaxrep import registry
from jaxrep.core import claims as claims_lib
from jaxrep.core import config as config_lib
from jaxrep.core import distributed
from jaxrep.core import logging as log_lib
from jaxrep.core import results as results_lib

ConfigError = config_lib.ConfigError
RESULTS_FILE = "results.json"
FIGURE_FILE = "figure.png"


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What a run measured. ``measured`` maps a name to per-seed values (or a
  scalar); the verdict is computed from them by the paper's checks in
  ``jaxrep/papers.toml`` (``jaxrep.core.claims``). ``passed`` is the
  experiment's own pass rule, used only for a paper without checks (otherwise
  ignored, and a disagreement is printed); ``details`` holds grids and fits."""

  measured: Mapping[str, Any]
  passed: bool | None = None
  details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One paper's reproduction: its config functions and ``run``. The claim,
  its checks and the headline come from ``jaxrep/papers.toml``; the measured
  runtime that ``reproduce`` budgets with from ``jaxrep/records/<id>.json``."""

  paper_id: str
  get_config: Callable[[], ml_collections.ConfigDict]
  run: Callable[[ml_collections.ConfigDict, "Context"], Outcome]
  quick: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict]
  validate: Callable[[ml_collections.ConfigDict], None] | None = None
  claim: str | None = None  # only for experiments outside papers.toml (test fixtures)


def _name_hash(name: str) -> int:
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


class Context:
  """Per-run services handed to ``Experiment.run``."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, seed: int,
               quick: bool, data_dir: str | None, replicate_offset: int = 0,
               mesh: str | None = None):
    from jaxrep.core import fit as fit_lib
    self.workdir, self.config, self.seed = workdir, config, seed
    self.mesh = fit_lib.parse_mesh(mesh)
    self.fits: dict[str, dict] = {}
    self.replicate_offset = replicate_offset
    self.quick, self.data_dir = quick, data_dir
    self.logger = log_lib.MetricLogger(workdir)
    self.figure_path = os.path.join(workdir, FIGURE_FILE)
    run_key = f"{config_lib.config_hash(config)}-seed{seed}" + (
        f"-rep{replicate_offset}" if replicate_offset else "")
    self._stage_dir = os.path.join(workdir, "stages", run_key)
    self._checkpoint_root = os.path.join(workdir, "checkpoints", run_key)

  def key(self, name: str) -> jax.Array:
    """A key for one named random choice, derived from the run's seed."""
    return jax.random.fold_in(jax.random.PRNGKey(self.seed), _name_hash(name))

  def seed_keys(self, name: str, num_seeds: int) -> jax.Array:
    """Keys of replicates offset … offset + num_seeds − 1 (a leading axis to vmap).

    Replicate r's key is ``fold_in(key(name), r)``, so replicate r is the same
    whether it runs alone (offset r, one seed) or inside a vmapped program.
    """
    base = self.key(name)
    return jnp.stack([jax.random.fold_in(base, self.replicate_offset + i)
                      for i in range(num_seeds)])

  def seeds(self, num_seeds: int) -> list[int]:
    """Integer seeds of the replicates, for libraries that take ints (numpy)."""
    return [self.seed * 1000 + self.replicate_offset + i for i in range(num_seeds)]

  def progress(self, label: str, total: int, unit: str = "it") -> log_lib.Progress:
    return log_lib.Progress(label, total, unit=unit)

  def stage(self, name: str, fn: Callable[[], Any]) -> Any:
    """Runs ``fn()`` once per (config, seed): the result is stored under the
    workdir, so rerunning an interrupted experiment skips finished stages."""
    path = os.path.join(self._stage_dir, f"{name}.pkl")
    if os.path.exists(path):
      try:
        with open(path, "rb") as f:
          return pickle.load(f)
      except Exception as error:  # truncated/corrupt pickles raise many types
        print(f"stage '{name}': stored result unreadable ({type(error).__name__}: "
              f"{str(error)[:120]}); recomputing", flush=True)
    value = jax.device_get(fn())
    if jax.process_index() == 0:
      os.makedirs(self._stage_dir, exist_ok=True)
      tmp = path + ".tmp"
      with open(tmp, "wb") as f:
        pickle.dump(value, f)
      os.replace(tmp, path)
    return value

  def fit(self, name: str, task, runs, num_steps: int, **kwargs):
    """``jaxrep.core.fit.fit`` on this run's mesh, logging its curves under run
    ``name`` and checkpointing in ``checkpoint_dir(name)`` (every
    ``$JAXREP_SAVE_EVERY_S`` seconds, default 60); the layout it used
    (devices, mesh, runs, padding) goes into results.json's ``env.fits``."""
    from jaxrep.core import fit as fit_lib
    kwargs.setdefault("mesh", self.mesh)
    kwargs.setdefault("logger", self.logger)
    kwargs.setdefault("checkpoint_dir", self.checkpoint_dir(name))
    kwargs.setdefault("save_every_s", float(os.environ.get(
        "JAXREP_SAVE_EVERY_S", fit_lib.DEFAULT_SAVE_EVERY_S)))
    result = fit_lib.fit(task, runs, num_steps, name=name, **kwargs)
    self.fits[name] = result.layout
    return result

  def env(self) -> dict[str, Any]:
    """Where and what ran: device kind and count, process count, mesh, fits, and
    ``results.provenance()`` (git SHA and dirty flag, package versions, Python,
    operating system)."""
    return {"devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
            "platform": jax.default_backend(), "processes": jax.process_count(),
            "mesh": dict(self.mesh.shape), "fits": dict(self.fits),
            **results_lib.provenance()}

  def checkpoint_dir(self, name: str) -> str:
    """Where the training ``name`` keeps its checkpoints (``train_loop(...,
    checkpoint_dir=ctx.checkpoint_dir(name))``), per (config, seed), so a rerun
    resumes an interrupted training."""
    return os.path.join(self._checkpoint_root, name)

  def save_figure(self, fig) -> str:
    """Saves a matplotlib figure as the run's ``figure.png``."""
    if jax.process_index() == 0:
      fig.savefig(self.figure_path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return self.figure_path


def build_config(experiment: Experiment, *, quick: bool = False,
                 overrides: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Default config, shrunk by ``quick``, then overridden; checked."""
  config = experiment.get_config()
  if quick:
    config = experiment.quick(config)
  config = config_lib.apply_overrides(config, overrides, experiment.paper_id)
  config_lib.check_positive_sizes(config)
  if experiment.validate is not None:
    experiment.validate(config)
  return config


def execute(experiment: Experiment, workdir: str, *, quick: bool = False,
            seed: int = 0, overrides: tuple[str, ...] = (),
            data_dir: str | None = None, verbose: bool = True,
            replicate_offset: int = 0, mesh: str | None = None) -> dict[str, Any]:
  """Runs one experiment and returns its ``results.json`` payload.

  ``replicate_offset`` shifts the replicate (seed) indices, so a sweep can run
  replicate r alone with ``num_seeds=1`` and get what a vmapped run gives it.
  """
  if seed < 0:
    raise ConfigError(f"--seed must be a non-negative integer, got {seed}")
  if not workdir:
    raise ConfigError("--workdir is required: the directory for this run's outputs")
  config = build_config(experiment, quick=quick, overrides=overrides)
  distributed.initialize_from_env()  # a no-op unless the env describes a multi-process job
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:  # on several hosts, only process 0 removes or writes files
    for stale in (RESULTS_FILE, FIGURE_FILE):
      if os.path.exists(os.path.join(workdir, stale)):
        os.remove(os.path.join(workdir, stale))
    results_lib.write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())

  ctx = Context(workdir, config, seed, quick, data_dir, replicate_offset, mesh)
  start = time.perf_counter()
  try:
    outcome = experiment.run(config, ctx)
  finally:
    ctx.logger.close()
  runtime = time.perf_counter() - start
  num_seeds = int(config.get("num_seeds", 1))
  paper, evaluation = evaluate_claim(experiment, outcome, quick)
  payload = results_lib.results_payload(
      paper_id=experiment.paper_id, claim=paper.claim if paper else experiment.claim,
      passed=outcome.passed, measured=outcome.measured,
      seeds=ctx.seeds(num_seeds), runtime_s=runtime, config=config.to_dict(),
      quick=quick, details=outcome.details,
      headline=tuple(paper.headline) if paper else (),
      evaluation=evaluation)
  payload["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
  payload["env"] = ctx.env()
  if jax.process_index() == 0:
    results_lib.write_json_atomic(os.path.join(workdir, RESULTS_FILE), payload)
  if verbose:
    print(format_results(payload), flush=True)
  return payload


def evaluate_claim(experiment: Experiment, outcome: Outcome, quick: bool):
  """``(paper or None, claims.evaluate(...) or None)``: the paper's checks against
  what the run measured; None when the paper has no checks (the experiment's own
  ``passed`` then decides)."""
  try:
    paper = registry.get(experiment.paper_id)
  except KeyError:
    return None, None
  if not paper.checks:
    return paper, None
  evaluation = claims_lib.evaluate(paper.checks, outcome.measured, quick=quick)
  missing = [c["measure"] for c in evaluation["checks"] if c["missing"]]
  if missing:
    print(f"warning: {experiment.paper_id}: its checks need measured values the run did "
          f"not report: {', '.join(dict.fromkeys(missing))}", flush=True)
  own = outcome.passed
  by_checks = {claims_lib.PASS: True, claims_lib.FAIL: False}.get(evaluation["verdict"])
  if own is not None and by_checks is not None and bool(own) != by_checks and not quick:
    print(f"warning: {experiment.paper_id}: the experiment's own pass rule says "
          f"{'PASS' if own else 'FAIL'}, its checks in papers.toml say "
          f"{evaluation['verdict']} (the checks decide)", flush=True)
  return paper, evaluation


def verdict(passed: bool | None, payload: Mapping[str, Any] | None = None) -> str:
  if payload is not None and payload.get("quick"):
    would = payload.get("verdict")
    return f"n/a (quick{'; checks: ' + would if would else ''})"
  if payload is not None and payload.get("verdict"):
    return payload["verdict"]
  return {True: "PASS", False: "FAIL", None: "n/a (quick)"}[passed]


def format_results(payload: Mapping[str, Any]) -> str:
  """A short human-readable summary of a results payload."""
  seeds = payload.get("seeds_holding")
  seeds = f", {seeds['k']}/{seeds['n']} seeds hold every claim check" if seeds else ""
  lines = [f"== {payload['paper_id']}: {verdict(payload['passed'], payload)} "
           f"({log_lib.format_duration(payload['runtime_s'])}{seeds})",
           f"claim: {payload['claim']}"]
  for check in payload.get("checks", ()):
    lines.append(f"  check: {claims_lib.format_check(check)}")
  for name, stats in payload["measured"].items():
    lines.append(f"  {name}: {results_lib.format_measured(stats)}")
  return "\n".join(lines)


def main(experiment: Experiment) -> None:
  """The absl entrypoint: ``python -m experiments.NAME --workdir=DIR
  [--quick] [--seed=N] [--data_dir=DIR] [--config.KEY=VALUE ...]``."""
  from jaxrep.core.watchdog import enable_stack_dumps
  enable_stack_dumps()  # crashes, `kill -USR1`, JAXREP_HANG_DUMP_S: thread stacks on stderr
  from absl import app, flags

  from jaxrep.core.checkpoint import CheckpointError
  from jaxrep.core.loop import NonFiniteLossError

  overrides = tuple(a.removeprefix("--") for a in sys.argv[1:] if a.startswith("--config."))
  argv = [sys.argv[0]] + [a for a in sys.argv[1:] if not a.startswith("--config.")]
  flags.DEFINE_string("workdir", None, "Directory for this run's outputs.")
  flags.DEFINE_bool("quick", False, "Shrink to seconds for smoke tests (never claims PASS).")
  flags.DEFINE_integer("seed", 0, "Changes every random choice of the run.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir for stored datasets.")
  flags.DEFINE_string("mesh", None, "Device mesh 'seeds=N,data=M' (default: every device "
                      "on the seed axis).")

  def run_main(_):
    values = flags.FLAGS
    try:
      execute(experiment, values.workdir, quick=values.quick, seed=values.seed,
              overrides=overrides, data_dir=values.data_dir, mesh=values.mesh)
    except ConfigError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
    except (NonFiniteLossError, CheckpointError) as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(1)

  app.run(run_main, argv=argv)

