"""Where a sweep run stands on disk: finished, failed, or not yet run.

A run is finished when its folder's ``results.json`` has this paper, quick
flag, config and integer seeds (whoever ran it: a sweep, a worker or the
``jaxrep run`` line of ``run_commands``). ``sweep_run.json`` names the run and
who ran it; ``sweep_error.txt`` holds the one-line error of a run that raised
(removed when it runs again). Imports no jax.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Mapping, Sequence

from jaxrep.core import results as results_lib
from jaxrep.core.sweep_plan import SweepRun, json_roundtrip

RESULTS_FILE = "results.json"
RUN_FILE = "sweep_run.json"
ERROR_FILE = "sweep_error.txt"


def read_json(path: str) -> Any:
  """The file's JSON, or None when it is missing or not (yet) valid JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def finished_results(run: SweepRun) -> dict | None:
  """The run's ``results.json`` payload if it finished with this exact run:
  same paper, quick flag, config and integer seeds."""
  payload = read_json(os.path.join(run.workdir, RESULTS_FILE))
  if not isinstance(payload, dict):
    return None
  if (payload.get("paper_id") != run.paper_id or bool(payload.get("quick")) != run.quick
      or payload.get("seeds") != run.seeds() or payload.get("config") != run.config):
    return None
  return payload


def run_error(run: SweepRun) -> str | None:
  """The one-line error a failed run left (``sweep_error.txt``), or None."""
  try:
    with open(os.path.join(run.workdir, ERROR_FILE)) as f:
      return f.read().strip() or "error"
  except OSError:
    return None


def mark_started(run: SweepRun, ran_by: Mapping[str, Any]) -> None:
  """Forgets the run's last error and writes ``sweep_run.json`` (the run and ``ran_by``)."""
  with contextlib.suppress(FileNotFoundError):
    os.remove(os.path.join(run.workdir, ERROR_FILE))
  results_lib.write_json_atomic(os.path.join(run.workdir, RUN_FILE),
                                {**run.spec(), "ran_by": dict(ran_by)})


def mark_failed(run: SweepRun, error: str) -> None:
  """Writes the run's one-line error (best effort: a folder gone is no second error)."""
  with contextlib.suppress(OSError), open(os.path.join(run.workdir, ERROR_FILE), "w") as f:
    f.write(error + "\n")


def scan(runs: Sequence[SweepRun], known: Mapping[str, Mapping[str, Any]] | None = None,
         ) -> tuple[dict[str, dict], dict[str, str]]:
  """``(payloads, errors)`` of the runs, keyed by workdir, read from disk
  (``known`` payloads reused)."""
  known = known or {}
  payloads, errors = {}, {}
  for run in runs:
    payload = known.get(run.workdir) or finished_results(run)
    if payload is not None:
      payloads[run.workdir] = json_roundtrip(payload)
    elif (error := run_error(run)) is not None:
      errors[run.workdir] = error
  return payloads, errors
