"""The ``jaxrep`` command (a stable contract that other tools script against).

  jaxrep list [--json]
  jaxrep run ID --workdir DIR [--quick] [--seed N] [--replicate R] [--data_dir D]
             [--mesh M] [--config.KEY=VALUE ...]
  jaxrep reproduce [ID ...] [--quick] [--all] [--budget_s S] --out DIR
  jaxrep scoreboard --out DIR
  jaxrep record RUNS_DIR [ID ...] [--records DIR] [--machine NOTE]
  jaxrep sweep ID --out DIR [--grid KEY=V1,V2 ...] [--seeds N] [--seeds_in_one_program]
               [--paired_seeds] [--quick] [--seed S] [--data_dir D] [--config.KEY=VALUE ...]
               [--worker I --num_workers N] [--list | --summarize]
  jaxrep collect DIR_OR_FILE ... [--format md|csv] [--by run|config] [--columns a,b]
                 [--out FILE]

This module parses and dispatches; the commands live in ``jaxrep.commands``:
``reproduce`` (run, reproduce within ``--budget_s`` at this machine's measured
speed, ``MAIN_PAPER`` first), ``records`` (list, scoreboard, record) and
``sweep`` (sweep, collect).

Bad input (an unknown id, flag or config key, an ill-typed value, a negative
seed, an output path that is a file or not writable) is answered in one line on
stderr with exit status 2, before jax is imported. ``list`` never imports jax.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from jaxrep import registry
from jaxrep.commands import budget, records, reproduce, sweep
from jaxrep.commands.papers import implemented_ids, load_experiment  # noqa: F401 (API)
from jaxrep.commands.usage import UsageError

TAKES_OVERRIDES = ("run", "sweep", "reproduce")  # commands that accept --config.KEY=VALUE


class _Parser(argparse.ArgumentParser):
  """argparse, with every usage error raised as a one-line UsageError."""

  def error(self, message):
    raise UsageError(f"{message} (see `{self.prog} --help`)")


def _non_negative_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
  return value


def _positive_int(text: str) -> int:
  value = _non_negative_int(text)
  if value == 0:
    raise argparse.ArgumentTypeError("must be a positive integer, got 0")
  return value


def _add_run_and_reproduce(sub) -> None:
  p_run = sub.add_parser("run", help="run one paper's experiment")
  p_run.set_defaults(func=reproduce.cmd_run)
  p_run.add_argument("id")
  p_run.add_argument("--workdir", required=True)
  p_run.add_argument("--replicate", type=_non_negative_int, default=0, metavar="R",
                     help="first seed index (replicate offset) of the run's seeds, as in a "
                          "sweep: keys fold_in(key(name), R + i)")
  p_repro = sub.add_parser("reproduce", help="run experiments and write a scoreboard")
  p_repro.set_defaults(func=reproduce.cmd_reproduce)
  p_repro.add_argument("ids", nargs="*")
  p_repro.add_argument("--out", required=True)
  p_repro.add_argument("--all", action="store_true")
  p_repro.add_argument("--budget_s", type=float, default=budget.DEFAULT_BUDGET_S)
  for p in (p_run, p_repro):
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--mesh", default=None, help="device mesh, e.g. 'seeds=4,data=2'")


def _add_list(sub) -> None:
  p = sub.add_parser("list", help="the papers, family, status and recorded runtime")
  p.set_defaults(func=records.cmd_list)
  p.add_argument("--json", action="store_true")


def _add_scoreboard_and_record(sub) -> None:
  p_board = sub.add_parser("scoreboard", help="rebuild a scoreboard from results on disk")
  p_board.set_defaults(func=records.cmd_scoreboard)
  p_board.add_argument("--out", required=True)
  p_record = sub.add_parser("record", help="copy default-config results into jaxrep/records")
  p_record.set_defaults(func=records.cmd_record)
  p_record.add_argument("runs_dir", metavar="RUNS_DIR")
  p_record.add_argument("ids", nargs="*", metavar="ID")
  p_record.add_argument("--records", default=registry.RECORDS_DIR,
                        help="records directory (default: the package's jaxrep/records)")
  p_record.add_argument("--machine", default=None,
                        help="a note on the machine the runs ran on (default: from results.json)")


def _add_sweep(sub) -> None:
  p = sub.add_parser("sweep", help="run configs × seeds and aggregate mean ± std")
  p.set_defaults(func=sweep.cmd_sweep)
  p.add_argument("id")
  p.add_argument("--out", required=True)
  p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                 help="a config key and its values (repeat for a product grid)")
  p.add_argument("--seeds", type=_positive_int, default=3, help="seeds per config")
  p.add_argument("--seeds_in_one_program", action="store_true",
                 help="run each config's seeds as one vmapped program")
  p.add_argument("--quick", action="store_true")
  p.add_argument("--paired_seeds", action="store_true",
                 help="replicate r of every grid point gets the same run seed and "
                      "keys (default: each point's seed hashes its config)")
  p.add_argument("--seed", type=_non_negative_int, default=0,
                 help="base seed, hashed into every run seed")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--worker", type=_non_negative_int, default=None, metavar="I",
                 help="run worker I's share of the runs (index mod N == I)")
  p.add_argument("--num_workers", type=_positive_int, default=None, metavar="N")
  p.add_argument("--list", action="store_true",
                 help="print one `jaxrep run` line per run and run nothing")
  p.add_argument("--summarize", action="store_true",
                 help="rebuild sweep.md/sweep.json from the runs on disk; run nothing")


def _add_collect(sub) -> None:
  p = sub.add_parser("collect", help="gather results.json files into one table")
  p.set_defaults(func=sweep.cmd_collect)
  p.add_argument("paths", nargs="+", metavar="DIR",
                 help="folders searched recursively for results.json (or the files)")
  p.add_argument("--format", choices=("md", "csv"), default="md")
  p.add_argument("--by", choices=("run", "config"), default="run",
                 help="one row per run, or per config with per-seed values pooled")
  p.add_argument("--columns", default=None, metavar="A,B",
                 help="measured values (or config.KEY, runtime_s, date, git_sha, "
                      "git_dirty) to show; default: the runs' headline values")
  p.add_argument("--out", default=None, metavar="FILE",
                 help="write the table to FILE instead of stdout")


def build_parser() -> argparse.ArgumentParser:
  """Every command's flags; each subparser sets ``func``, the command to run."""
  parser = _Parser(prog="jaxrep", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  _add_list(sub)
  _add_run_and_reproduce(sub)
  _add_scoreboard_and_record(sub)
  _add_sweep(sub)
  _add_collect(sub)
  return parser


def _one_line(error: BaseException) -> str:
  return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _loaded(*names: tuple[str, str]) -> tuple[type, ...]:
  """The error classes ``(module, name)`` whose modules are already imported: an
  error can only come from a module that was loaded, so none is imported here."""
  return tuple(getattr(sys.modules[module], name) for module, name in names
               if module in sys.modules)


def _exit_status(error: Exception) -> int | None:
  """2 for bad input, 1 for a run that ended with a known error, None otherwise."""
  if isinstance(error, (UsageError,) + _loaded(("jaxrep.core.config", "ConfigError"))):
    return 2
  if isinstance(error, _loaded(("jaxrep.core.loop", "NonFiniteLossError"),
                               ("jaxrep.core.checkpoint", "CheckpointError"))):
    return 1
  return None


def main(argv: Sequence[str] | None = None) -> int:
  """Runs one ``jaxrep`` command; returns its exit status."""
  from jaxrep.core.watchdog import enable_stack_dumps  # jax-free
  enable_stack_dumps()  # crashes, `kill -USR1`, JAXREP_HANG_DUMP_S: thread stacks on stderr
  if hasattr(signal, "SIGPIPE") and argv is None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `jaxrep list | head` exits quietly
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = tuple(a.removeprefix("--") for a in argv if a.startswith("--config."))
  try:
    args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
    if overrides and args.command not in TAKES_OVERRIDES:
      raise UsageError(f"{args.command} takes no --config overrides")
    args.overrides = overrides
    return args.func(args)
  except Exception as error:
    status = _exit_status(error)
    if status is None:
      raise
    print(f"jaxrep: error: {_one_line(error)}", file=sys.stderr)
    return status


if __name__ == "__main__":
  sys.exit(main())
