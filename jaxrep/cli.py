"""The ``jaxrep`` command (a stable contract that other tools script against).

  jaxrep list [--json]
  jaxrep run ID --workdir DIR [--quick] [--seed N] [--data_dir D] [--config.KEY=VALUE ...]
  jaxrep reproduce [ID ...] [--quick] [--all] [--budget_s S] --out DIR
  jaxrep scoreboard --out DIR
  jaxrep sweep ID --out DIR [--grid KEY=V1,V2 ...] [--seeds N] [--seeds_in_one_program]
               [--quick] [--seed S] [--data_dir D] [--config.KEY=VALUE ...]

``reproduce`` without IDs runs the main paper (``MAIN_PAPER``, the DSD
sample-complexity separation) and then, in registry order, the experiments whose
measured runtimes fit the rest of ``--budget_s`` (default 800 s on 2 CPU cores); ``--all``
runs every implemented paper. ``scoreboard`` rebuilds ``DIR/SCOREBOARD.md`` from
the ``DIR/<paper id>/results.json`` already there (papers run one by one, or on
other machines). ``sweep`` runs configs × seeds (see
``jaxrep.core.sweep``) and writes ``sweep.md`` and ``sweep.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import os
import signal
import sys
import traceback
from typing import Sequence

from jaxrep import registry

DEFAULT_BUDGET_S = 800.0  # 15 minutes less a margin for start-up and timing noise
MAIN_PAPER = "locality_dsd"


class UsageError(Exception):
  """A one-line message for the user; exit status 2."""


def paper_for(paper_id: str) -> registry.Paper:
  try:
    return registry.get(paper_id)
  except KeyError:
    close = difflib.get_close_matches(paper_id, [p.id for p in registry.PAPERS], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `jaxrep list`"
    raise UsageError(f"unknown paper id '{paper_id}'{hint}") from None


def load_experiment(paper_id: str):
  """The ``EXPERIMENT`` object of a paper's experiment module."""
  paper = paper_for(paper_id)
  if paper.experiment is None:
    raise UsageError(f"paper '{paper_id}' has no experiment yet (status: {paper.status})")
  return importlib.import_module(f"experiments.{paper.experiment}").EXPERIMENT


def implemented_ids() -> list[str]:
  """Papers whose experiment module exists, in registry order."""
  return [p.id for p in registry.PAPERS if p.experiment is not None
          and importlib.util.find_spec(f"experiments.{p.experiment}") is not None]


def select_within_budget(ids: Sequence[str], budget_s: float) -> list[str]:
  """``MAIN_PAPER`` first, then a registry-order greedy fill of the runtimes that fit."""
  ordered = sorted(ids, key=lambda paper_id: paper_id != MAIN_PAPER)
  chosen, total = [], 0.0
  for paper_id in ordered:
    runtime = load_experiment(paper_id).runtime_s
    if total + runtime <= budget_s:
      chosen.append(paper_id)
      total += runtime
  return chosen


def cmd_list(args) -> int:
  if args.json:
    print(json.dumps([{"id": p.id, "title": p.title, "family": p.family, "claim": p.claim,
                       "module": p.module, "experiment": p.experiment, "status": p.status}
                      for p in registry.PAPERS], indent=2))
    return 0
  width = max(len(p.id) for p in registry.PAPERS)
  for p in registry.PAPERS:
    print(f"{p.id:<{width}}  {p.family:<11} {p.status:<12} {p.title}")
  return 0


def cmd_run(args, overrides: tuple[str, ...]) -> int:
  from jaxrep.core import experiment
  exp = load_experiment(args.id)
  experiment.execute(exp, args.workdir, quick=args.quick, seed=args.seed,
                     overrides=overrides, data_dir=args.data_dir)
  return 0


def cmd_reproduce(args, overrides: tuple[str, ...]) -> int:
  from jaxrep import scoreboard
  from jaxrep.core import experiment
  if overrides:
    raise UsageError("reproduce takes no --config overrides; use `jaxrep run` for one paper")
  for paper_id in args.ids:
    load_experiment(paper_id)
  if args.ids:
    ids = list(args.ids)
  elif args.all or args.quick:
    ids = implemented_ids()
  else:
    ids = select_within_budget(implemented_ids(), args.budget_s)
  print(f"reproducing {len(ids)} paper(s): {', '.join(ids)}", flush=True)
  rows = []
  for paper_id in ids:
    workdir = os.path.join(args.out, paper_id)
    title = registry.get(paper_id).title
    try:
      payload = experiment.execute(load_experiment(paper_id), workdir, quick=args.quick,
                                   seed=args.seed, data_dir=args.data_dir)
      rows.append(scoreboard.row_from_results(paper_id, title, payload, workdir))
    except Exception as error:  # one failing paper must not hide the others
      traceback.print_exc()
      message = f"{type(error).__name__}: {error}".splitlines()[0]
      rows.append(scoreboard.row_from_results(paper_id, title, None, workdir, message))
    scoreboard.write_scoreboard(rows, args.out)
  print(scoreboard.write_scoreboard(rows, args.out))
  print(f"wrote {os.path.join(args.out, 'SCOREBOARD.md')} and scoreboard.json")
  return 0 if all(r["verdict"] != "ERROR" for r in rows) else 1


def cmd_scoreboard(args) -> int:
  from jaxrep import scoreboard
  rows = []
  for paper in registry.PAPERS:
    workdir = os.path.join(args.out, paper.id)
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
      with open(path) as f:
        rows.append(scoreboard.row_from_results(paper.id, paper.title, json.load(f), workdir))
  if not rows:
    raise UsageError(f"no {args.out}/<paper id>/results.json found; run `jaxrep reproduce "
                     f"--out {args.out}` or `jaxrep run ID --workdir {args.out}/ID` first")
  print(scoreboard.write_scoreboard(rows, args.out))
  return 0


def cmd_sweep(args, overrides: tuple[str, ...]) -> int:
  from jaxrep.core import sweep
  exp = load_experiment(args.id)
  summary = sweep.run_sweep(
      exp, args.out, sweep.parse_grid(args.grid), args.seeds,
      base_overrides=sweep.parse_overrides(overrides), quick=args.quick,
      base_seed=args.seed, seeds_in_one_program=args.seeds_in_one_program,
      data_dir=args.data_dir)
  return 1 if any(p["errors"] for p in summary["points"]) else 0


def add_sweep_parser(sub) -> None:
  p_sweep = sub.add_parser("sweep", help="run configs × seeds and aggregate mean ± std")
  p_sweep.add_argument("id")
  p_sweep.add_argument("--out", required=True)
  p_sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a config key and its values (repeat for a product grid)")
  p_sweep.add_argument("--seeds", type=int, default=3, help="seeds per config")
  p_sweep.add_argument("--seeds_in_one_program", action="store_true",
                       help="run each config's seeds as one vmapped program")
  p_sweep.add_argument("--quick", action="store_true")
  p_sweep.add_argument("--seed", type=int, default=0, help="base seed, hashed into every run seed")
  p_sweep.add_argument("--data_dir", default=None)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxrep", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p_list = sub.add_parser("list", help="the paper registry")
  p_list.add_argument("--json", action="store_true")
  p_run = sub.add_parser("run", help="run one paper's experiment")
  p_run.add_argument("id")
  p_run.add_argument("--workdir", required=True)
  p_repro = sub.add_parser("reproduce", help="run experiments and write a scoreboard")
  p_repro.add_argument("ids", nargs="*")
  p_repro.add_argument("--out", required=True)
  p_repro.add_argument("--all", action="store_true")
  p_repro.add_argument("--budget_s", type=float, default=DEFAULT_BUDGET_S)
  for p in (p_run, p_repro):
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=None)
  p_board = sub.add_parser("scoreboard", help="rebuild a scoreboard from results on disk")
  p_board.add_argument("--out", required=True)
  add_sweep_parser(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  if hasattr(signal, "SIGPIPE") and argv is None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `jaxrep list | head` exits quietly
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = tuple(a.removeprefix("--") for a in argv if a.startswith("--config."))
  args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
  from jaxrep.core.checkpoint import CheckpointError
  from jaxrep.core.config import ConfigError
  from jaxrep.core.loop import NonFiniteLossError
  try:
    if args.command == "list":
      return cmd_list(args)
    if args.command == "run":
      return cmd_run(args, overrides)
    if args.command == "scoreboard":
      return cmd_scoreboard(args)
    if args.command == "sweep":
      return cmd_sweep(args, overrides)
    return cmd_reproduce(args, overrides)
  except (UsageError, ConfigError) as error:
    print(f"jaxrep: error: {error}", file=sys.stderr)
    return 2
  except (NonFiniteLossError, CheckpointError) as error:
    print(f"jaxrep: error: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
