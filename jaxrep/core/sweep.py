"""Seeded sweeps run: configs × seeds, by one process or by many workers, then summarised.

The plan (grid points × seeds, run seeds, folders, ``jaxrep run`` lines) is
``jaxrep.core.sweep_plan``; this module runs it. Finished runs are skipped
(``jaxrep.core.run_state``), and a process runs a run only after claiming it
(``jaxrep.core.run_claims``), so concurrent workers, overlapping relaunches and
a plain sweep over the same folder never run one run twice.
``worker=I, num_workers=N`` runs the runs whose index in plan order is I mod N.
A run that raises is reported (``sweep_error.txt``) and the sweep goes on.

The summary (``jaxrep.core.sweep_summary``) is rewritten after each run by a
plain sweep (progress); at its end every process (plain or worker) that finds
every run ended (finished or failed) writes it from disk, and of processes
ending together at least one sees the others' results, so the last summary is
complete; any process rebuilds it (``rebuild_summary``, ``jaxrep sweep ...
--summarize``).

On several JAX processes (multi-host) process 0 alone claims, writes and
removes files and decides what to run; the others follow its decision.
This module imports no jax until a sweep runs.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from jaxrep.core import run_claims, run_state
from jaxrep.core.config import ConfigError
from jaxrep.core.sweep_plan import SweepRun, json_roundtrip, partition, plan_sweep
from jaxrep.core.sweep_summary import (SWEEP_JSON, SWEEP_MD, format_markdown, summarize_sweep,
                                       write_summary)

# Re-exported: the sweep's API in one place (tests/test_sweep.py uses it).
from jaxrep.core.pooling import aggregate_point  # noqa: F401
from jaxrep.core.run_claims import (CLAIM_FILE, claim_holder, claim_run,  # noqa: F401
                                    is_stale, release_claim)
from jaxrep.core.run_state import ERROR_FILE, RUN_FILE  # noqa: F401
from jaxrep.core.sweep_plan import run_seed  # noqa: F401

_RUN, _FINISHED, _CLAIMED = 0, 1, 2  # process 0's decision on a run


def _process_index() -> int:
  import jax
  return jax.process_index()


def _agree(code: int) -> int:
  """Process 0's ``code`` on every process (multi-host); ``code`` on one process."""
  import jax
  if jax.process_count() == 1:
    return code
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int32(code)))


@contextlib.contextmanager
def _sigterm_exits():
  """SIGTERM ends the process with status 143 through ``SystemExit`` (so ``finally``
  blocks release claims); training loops install their own handler inside it."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):
    raise SystemExit(128 + signal.SIGTERM)

  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def _decide(run: SweepRun, payloads: Mapping[str, Any], label: str) -> int:
  """Skip a finished run or one another process holds; else claim it and run it."""
  if run.workdir in payloads or run_state.finished_results(run) is not None:
    return _FINISHED
  if not run_claims.claim_run(run.workdir, label):
    return _CLAIMED
  return _FINISHED if run_state.finished_results(run) is not None else _RUN  # just finished


def _skip_note(run: SweepRun, action: int) -> str:
  if action == _FINISHED:
    return "finished earlier, skipped"
  holder = run_claims.claim_holder(run.workdir) or {}
  return f"claimed by {holder.get('host')}:{holder.get('pid')}, skipped"


def _seed_indices(run: SweepRun) -> str:
  last = run.replicate_offset + run.num_seeds - 1
  return f"{run.replicate_offset}" + ("" if run.num_seeds == 1 else f"–{last}")


def _one_line(error: BaseException) -> str:
  return f"{type(error).__name__}: {error}".splitlines()[0]


def run_sweep(experiment: Any, out: str, grid: Mapping[str, Sequence[str]], num_seeds: int, *,
              base_overrides: Mapping[str, str] | None = None, quick: bool = False,
              base_seed: int = 0, seeds_in_one_program: bool = False,
              paired_seeds: bool = False, worker: int | None = None, num_workers: int = 1,
              data_dir: str | None = None, verbose: bool = True,
              execute: Callable[..., dict] | None = None,
              checks: Iterable[Any] | None = None) -> dict[str, Any]:
  """Runs the sweep's runs (worker ``worker``'s share, or all), each claimed
  first; skips finished runs and runs another process holds; writes the summary
  (a plain sweep: after each run, as progress; every process: at the end if it
  finds every run ended) and returns it, rebuilt from disk, with
  ``worker_errors``: the errors of the runs this process ran.
  """
  runs = plan_sweep(experiment, out, grid, num_seeds, base_overrides=base_overrides,
                    quick=quick, base_seed=base_seed,
                    seeds_in_one_program=seeds_in_one_program, paired_seeds=paired_seeds)
  mine = partition(runs, worker, num_workers)
  if execute is None:
    from jaxrep.core import experiment as experiment_lib
    execute = experiment_lib.execute
  from jaxrep.core import distributed
  distributed.initialize_from_env()  # before any process_index; no-op on one process
  main = _process_index() == 0
  label = "all" if worker is None else f"{worker}/{num_workers}"
  info = {"num_seeds": num_seeds, "grid": grid, "seeds_in_one_program": seeds_in_one_program,
          "paired_seeds": paired_seeds, "checks": checks}
  say = print if verbose and main else (lambda *a, **k: None)
  if main:
    os.makedirs(out, exist_ok=True)
  payloads, _ = run_state.scan(runs) if main else ({}, {})
  errors: dict[str, str] = {}
  start = time.perf_counter()
  with _sigterm_exits():
    for index, run in enumerate(mine):
      name = f"[{index + 1}/{len(mine)}] {run.slug}/{os.path.basename(run.workdir)}"
      try:  # ``finally`` releases this process's claim (a no-op if it holds none)
        action = _agree(_decide(run, payloads, label) if main else _RUN)
        if action != _RUN:
          say(f"{name}: {_skip_note(run, action)}", flush=True)
          continue
        say(f"{name}: running (seed {run.seed}, seed index {_seed_indices(run)})",
            flush=True)
        if main:
          run_state.mark_started(run, run_claims.claimant(label))
        payload = execute(experiment, run.workdir, quick=quick, seed=run.seed,
                          overrides=run.override_args(), data_dir=data_dir,
                          verbose=False, replicate_offset=run.replicate_offset)
        payloads[run.workdir] = json_roundtrip(payload)
      except ConfigError:
        raise
      except Exception as error:  # one failing run must not hide the others
        traceback.print_exc()
        errors[run.workdir] = _one_line(error)
        if main:
          run_state.mark_failed(run, errors[run.workdir])
      finally:
        if main:
          run_claims.release_claim(run.workdir)
      if main and worker is None:  # progress, from what this process knows
        write_summary(summarize_sweep(runs, payloads, errors, **info), out)
  worker_errors = sorted(errors.values())
  if not main:
    return {**summarize_sweep(runs, payloads, errors, **info), "worker_errors": worker_errors}
  on_disk, disk_errors = run_state.scan(runs, payloads)
  summary = summarize_sweep(runs, on_disk, {**disk_errors, **errors}, **info)
  seconds = time.perf_counter() - start
  if summary["ended"]:  # of the processes ending together, at least one sees this
    write_summary(summary, out)
    say(format_markdown(summary), flush=True)
    say(f"wrote {os.path.join(out, SWEEP_MD)} and {SWEEP_JSON} ({seconds:.1f} s)", flush=True)
  else:
    say(f"{'sweep' if worker is None else 'worker ' + label}: {len(mine)} run(s) done "
        f"or skipped in {seconds:.1f} s; {summary['finished']}/{summary['runs']} "
        f"runs of the sweep finished, so the summary is left to the process that "
        f"ends last (or `jaxrep sweep ... --summarize`)", flush=True)
  return {**summary, "worker_errors": worker_errors}


def rebuild_summary(experiment: Any, out: str, grid: Mapping[str, Sequence[str]],
                    num_seeds: int, *, base_overrides: Mapping[str, str] | None = None,
                    quick: bool = False, base_seed: int = 0,
                    seeds_in_one_program: bool = False, paired_seeds: bool = False,
                    checks: Iterable[Any] | None = None, write: bool = True) -> dict[str, Any]:
  """The summary of what is on disk (runs nothing), written to ``out`` if ``write``."""
  runs = plan_sweep(experiment, out, grid, num_seeds, base_overrides=base_overrides,
                    quick=quick, base_seed=base_seed,
                    seeds_in_one_program=seeds_in_one_program, paired_seeds=paired_seeds)
  payloads, errors = run_state.scan(runs)
  summary = summarize_sweep(runs, payloads, errors, num_seeds=num_seeds, grid=grid,
                            seeds_in_one_program=seeds_in_one_program,
                            paired_seeds=paired_seeds, checks=checks)
  if write:
    os.makedirs(out, exist_ok=True)
    write_summary(summary, out)
  return summary
