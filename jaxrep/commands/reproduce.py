"""``jaxrep run`` (one paper's experiment) and ``jaxrep reproduce`` (papers → scoreboard).

``run --replicate R`` runs seed index R of a run seed alone (what a sweep line
runs). ``reproduce`` without ids runs the main paper first and then, in registry
order, the papers that fit the rest of ``--budget_s`` at this machine's measured
speed (``jaxrep.commands.budget``); with ids, ``--all`` or ``--quick`` it runs
them all. Either way it rewrites ``OUT/SCOREBOARD.md`` after each paper; one
failing paper becomes an ERROR row and the others still run.
"""
from __future__ import annotations

import argparse
import os
import time
import traceback
from typing import Any

from jaxrep import registry
from jaxrep.commands import budget, papers
from jaxrep.commands.usage import UsageError, check_output_dir

_now = time.monotonic  # reproduce's clock (tests replace it)


def _mesh(args: argparse.Namespace) -> dict[str, str]:
  return {"mesh": args.mesh} if args.mesh else {}


def recorded_runtime(paper_id: str) -> float | None:
  """The runtime of the paper's recorded default run (``jaxrep/records``), or None."""
  return registry.get(paper_id).runtime_s


def execute_paper(paper_id: str, workdir: str, **kwargs) -> dict[str, Any]:
  """Runs one paper's experiment (imports jax) and returns its results payload."""
  from jaxrep.core import experiment
  return experiment.execute(papers.load_experiment(paper_id), workdir, **kwargs)


def cmd_run(args: argparse.Namespace) -> int:
  """Checks the id, workdir and config (no jax), then runs the experiment."""
  registered = papers.is_registered(args.id)
  paper = papers.started_paper(args.id) if registered else None
  # an unregistered id is loaded now: UsageError with close matches
  loaded = None if registered else papers.load_experiment(args.id)
  check_output_dir(args.workdir, "--workdir")
  if registered:
    papers.check_config(paper, quick=args.quick, overrides=args.overrides)
  from jaxrep.core import experiment
  experiment.execute(loaded or papers.load_experiment(args.id), args.workdir,
                     quick=args.quick, seed=args.seed, overrides=args.overrides,
                     data_dir=args.data_dir, replicate_offset=args.replicate, **_mesh(args))
  return 0


def _run_paper(paper_id: str, args: argparse.Namespace) -> dict[str, Any]:
  """The paper's scoreboard row: its results, or ERROR with the one-line error."""
  from jaxrep import scoreboard
  workdir = os.path.join(args.out, paper_id)
  title = registry.get(paper_id).title
  try:
    payload = execute_paper(paper_id, workdir, quick=args.quick, seed=args.seed,
                            data_dir=args.data_dir, **_mesh(args))
    return scoreboard.row_from_results(paper_id, title, payload, workdir)
  except Exception as error:  # one failing paper must not hide the others
    traceback.print_exc()
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    return scoreboard.row_from_results(paper_id, title, None, workdir, message)


def cmd_reproduce(args: argparse.Namespace) -> int:
  """Runs papers (within the budget, or those given), writing the scoreboard as it goes."""
  if args.overrides:
    raise UsageError("reproduce takes no --config overrides; use `jaxrep run` for one paper")
  for paper_id in args.ids:
    papers.started_paper(paper_id)
  check_output_dir(args.out, "--out")
  if args.budget_s < 0:
    raise UsageError(f"--budget_s must be non-negative, got {args.budget_s:g}")
  from jaxrep import scoreboard
  rows: list[dict[str, Any]] = []

  def run_paper(paper_id: str) -> dict[str, Any]:
    rows.append(_run_paper(paper_id, args))
    scoreboard.write_scoreboard(rows, args.out)  # progress
    return rows[-1]

  ids = list(args.ids) if args.ids else budget.budget_order(papers.implemented_ids())
  if not (args.ids or args.all or args.quick):
    print(f"reproducing within {budget.format_minutes(args.budget_s)}: {budget.MAIN_PAPER} "
          f"first, then what fits at this machine's measured speed", flush=True)
    done, speed = budget.run_within_budget(ids, args.budget_s, run_paper, recorded_runtime,
                                           clock=_now, log=lambda line: print(line, flush=True))
    rows[:] = done  # with the SKIPPED rows
    notes = budget.speed_notes(speed, args.budget_s)
  else:
    print(f"reproducing {len(ids)} paper(s): {', '.join(ids)}", flush=True)
    speed = budget.SpeedEstimate()
    for paper_id in ids:
      began = _now()
      row = run_paper(paper_id)
      wall, recorded = _now() - began, recorded_runtime(paper_id)
      if recorded and not args.quick and row["verdict"] != "ERROR":
        speed.update(wall, recorded)
        row.update(wall_s=wall, recorded_runtime_s=recorded, speed_factor=speed.factor)
    notes = budget.speed_notes(speed, None)
  print(scoreboard.write_scoreboard(rows, args.out, notes=notes))
  print(f"wrote {os.path.join(args.out, 'SCOREBOARD.md')} and scoreboard.json")
  return 0 if all(r["verdict"] != "ERROR" for r in rows) else 1
