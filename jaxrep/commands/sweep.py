"""``jaxrep sweep`` (configs × seeds, see ``jaxrep.core.sweep``) and ``jaxrep collect``.

``sweep --list`` prints one ``jaxrep run`` line per run (for any launcher) and
``--summarize`` rebuilds ``sweep.md`` from disk, neither importing jax;
``--worker I --num_workers N`` runs worker I's share, each run claimed with an
exclusive file. ``collect`` gathers any ``results.json`` files under the given
folders into one table (one row per run, or per config with per-seed values
pooled).
"""
from __future__ import annotations

import argparse
import os

from jaxrep.commands import papers
from jaxrep.commands.usage import UsageError, check_output_dir


def _check_sweep_flags(args: argparse.Namespace) -> None:
  if args.list and args.summarize:
    raise UsageError("--list and --summarize exclude each other")
  if (args.worker is None) != (args.num_workers is None):
    raise UsageError("--worker I and --num_workers N go together")
  if args.worker is not None and args.worker >= args.num_workers:
    raise UsageError(f"--worker must be in 0..{args.num_workers - 1}, got {args.worker}")
  if args.summarize and args.worker is not None:
    raise UsageError("--summarize rebuilds the whole sweep's summary; drop --worker")


def cmd_sweep(args: argparse.Namespace) -> int:
  """Lists, summarises or runs (this worker's share of) the sweep."""
  _check_sweep_flags(args)
  if not args.list:
    check_output_dir(args.out, "--out")
  if papers.is_registered(args.id):
    papers.check_config(papers.started_paper(args.id), quick=args.quick,
                        overrides=args.overrides)
  from jaxrep.core import sweep_plan
  grid = sweep_plan.parse_grid(args.grid)
  plan = dict(base_overrides=sweep_plan.parse_overrides(args.overrides), quick=args.quick,
              base_seed=args.seed, seeds_in_one_program=args.seeds_in_one_program,
              paired_seeds=args.paired_seeds)
  if args.list:
    runs = sweep_plan.plan_sweep(papers.sweep_source(args.id), args.out, grid, args.seeds,
                                 **plan)
    mine = sweep_plan.partition(runs, args.worker, args.num_workers or 1)
    for line in sweep_plan.run_commands(mine, data_dir=args.data_dir):
      print(line)
    return 0
  from jaxrep.core import sweep, sweep_summary
  if args.summarize:
    summary = sweep.rebuild_summary(papers.sweep_source(args.id), args.out, grid,
                                    args.seeds, **plan)
    print(sweep_summary.format_markdown(summary), end="")
    print(f"wrote {os.path.join(args.out, sweep_summary.SWEEP_MD)} and "
          f"{sweep_summary.SWEEP_JSON} "
          f"({summary['finished']}/{summary['runs']} runs finished, "
          f"{summary['failed']} failed)")
    return 0
  experiment = papers.load_experiment(args.id)  # an unknown id: UsageError with close matches
  summary = sweep.run_sweep(experiment, args.out, grid, args.seeds, worker=args.worker,
                            num_workers=args.num_workers or 1, data_dir=args.data_dir,
                            **plan)
  return 1 if summary["worker_errors"] else 0


def cmd_collect(args: argparse.Namespace) -> int:
  """Prints (or writes to ``--out``) the table of the results.json files found."""
  from jaxrep.core import collect
  if args.out and os.path.isdir(args.out):
    raise UsageError(f"--out {args.out} is a directory; name the table's file")
  columns = ([c.strip() for c in args.columns.split(",") if c.strip()]
             if args.columns is not None else None)
  runs = collect.load_results(args.paths)
  if not runs:
    raise UsageError(f"no results.json under {' '.join(args.paths)}")
  columns, rows = collect.collect_table(runs, by=args.by, columns=columns)
  text = collect.format_collect(columns, rows, fmt=args.format, by=args.by)
  if args.out:
    collect.write_text_atomic(args.out, text)
  else:
    print(text, end="")
  return 0
