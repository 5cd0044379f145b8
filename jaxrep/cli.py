"""The ``jaxrep`` command (a stable contract that other tools script against).

  jaxrep list [--json]
  jaxrep run ID --workdir DIR [--quick] [--seed N] [--data_dir D] [--mesh M]
             [--config.KEY=VALUE ...]
  jaxrep reproduce [ID ...] [--quick] [--all] [--budget_s S] --out DIR
  jaxrep scoreboard --out DIR
  jaxrep record RUNS_DIR [ID ...] [--records DIR] [--machine NOTE]
  jaxrep sweep ID --out DIR [--grid KEY=V1,V2 ...] [--seeds N] [--seeds_in_one_program]
               [--quick] [--seed S] [--data_dir D] [--config.KEY=VALUE ...]

``reproduce`` without IDs runs the main paper (``MAIN_PAPER``, the DSD
sample-complexity separation) first and then, in registry order, the papers whose
recorded runtimes (``jaxrep/records/<id>.json``), rescaled to this machine's
measured speed, fit the rest of ``--budget_s`` (default 800 s); ``--all`` runs
every implemented paper. ``scoreboard`` rebuilds ``DIR/SCOREBOARD.md`` from the
``DIR/<paper id>/results.json`` already there. ``record`` copies the
``results.json`` of default-config runs into the committed records (status and
runtime of ``list`` and ``reproduce``). ``sweep`` runs configs × seeds (see
``jaxrep.core.sweep``).

Bad input (an unknown id, flag or config key, an ill-typed value, a negative
seed, an output path that is a file or not writable) is answered in one line on
stderr with exit status 2, before jax is imported. ``list`` never imports jax.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

from jaxrep import registry

DEFAULT_BUDGET_S = 800.0  # 15 minutes less a margin for start-up and timing noise
MAIN_PAPER = "locality_dsd"


class UsageError(Exception):
  """A one-line message for the user; exit status 2."""


# --- papers, experiments and their configs ------------------------------------------------

def paper_for(paper_id: str) -> registry.Paper:
  try:
    return registry.get(paper_id)
  except KeyError:
    raise UsageError(f"unknown paper id '{paper_id}'; {registry.hint(paper_id)}") from None


def started_paper(paper_id: str) -> registry.Paper:
  paper = paper_for(paper_id)
  if paper.experiment is None:
    raise UsageError(f"paper '{paper_id}' has no experiment yet (status: {paper.status})")
  return paper


def load_experiment(paper_id: str):
  """The ``EXPERIMENT`` object of a paper's experiment module (imports jax)."""
  paper = started_paper(paper_id)
  return importlib.import_module(f"experiments.{paper.experiment}").EXPERIMENT


def config_source(paper: registry.Paper):
  """Where a paper's ``get_config``/``quick``/``validate`` live: the jax-free
  ``experiments.configs.<experiment>`` module, or, for a paper not migrated to
  it yet, the experiment's ``EXPERIMENT`` (importing the experiment, and jax)."""
  name = f"experiments.configs.{paper.experiment}"
  try:
    found = importlib.util.find_spec(name) is not None
  except ModuleNotFoundError:
    found = False
  if found:
    return importlib.import_module(name)
  return load_experiment(paper.id)


def check_config(paper: registry.Paper, *, quick: bool = False,
                 overrides: Sequence[str] = ()):
  """The run's config, built and checked as ``experiment.build_config`` does
  (ConfigError, one line, on a bad key, type or value)."""
  from jaxrep.core import config as config_lib  # ml_collections: not needed by `list`
  source = config_source(paper)
  config = source.get_config()
  if quick:
    config = source.quick(config)
  config = config_lib.apply_overrides(config, overrides, paper.id)
  config_lib.check_positive_sizes(config)
  validate = getattr(source, "validate", None)
  if validate is not None:
    validate(config)
  return config


def implemented_ids() -> list[str]:
  """Papers whose experiment module exists, in registry order."""
  return [p.id for p in registry.PAPERS if p.experiment is not None
          and importlib.util.find_spec(f"experiments.{p.experiment}") is not None]


def check_output_dir(path: str, flag: str) -> None:
  """A directory we can create or write into; UsageError (one line) otherwise."""
  if not path:
    raise UsageError(f"{flag} must name a directory")
  full = os.path.abspath(path)
  if os.path.exists(full) and not os.path.isdir(full):
    raise UsageError(f"{flag} {path} is a file, not a directory")
  existing = full
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UsageError(f"{flag} {path}: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UsageError(f"{flag} {path}: {existing} is not writable")


# --- reproduce: main paper first, then what fits at this machine's speed ------------------

def format_minutes(seconds: float) -> str:
  """``75 -> '1.2 min'``."""
  return f"{seconds / 60:.1f} min"


@dataclasses.dataclass
class SpeedEstimate:
  """This machine's speed relative to the records: total measured wall time over
  total recorded runtime of the papers run so far (1.0 before the first)."""
  wall_s: float = 0.0
  recorded_s: float = 0.0
  papers: int = 0

  @property
  def factor(self) -> float:
    return self.wall_s / self.recorded_s if self.recorded_s > 0 else 1.0

  def update(self, wall_s: float, recorded_s: float) -> None:
    self.wall_s += wall_s
    self.recorded_s += recorded_s
    self.papers += 1


def budget_order(ids: Sequence[str]) -> list[str]:
  """``MAIN_PAPER`` first, then the others in the given (registry) order."""
  return sorted(ids, key=lambda paper_id: paper_id != MAIN_PAPER)


def run_within_budget(ids: Sequence[str], budget_s: float,
                      run_paper: Callable[[str], dict[str, Any]],
                      recorded_runtime: Callable[[str], float | None], *,
                      clock: Callable[[], float] = time.monotonic,
                      log: Callable[[str], None] = print) -> tuple[list[dict], SpeedEstimate]:
  """Runs ``MAIN_PAPER`` first, then, in order, every paper whose recorded runtime
  × this machine's speed factor (learned from the papers already run) fits the
  budget left; the others become SKIPPED rows saying why.

  ``run_paper(id)`` returns a scoreboard row (its ``verdict`` "ERROR" when the run
  raised); a paper without a recorded runtime is skipped (run it by id).
  """
  start, speed, rows = clock(), SpeedEstimate(), []
  for paper_id in budget_order(ids):
    recorded = recorded_runtime(paper_id)
    left = budget_s - (clock() - start)
    if recorded is None:
      note = f"skipped: no recorded runtime (run `jaxrep reproduce {paper_id}`)"
      rows.append(skipped_row(paper_id, note, None, left))
      log(f"{paper_id}: {note}")
      continue
    estimate = recorded * speed.factor
    if estimate > left:
      note = (f"skipped: estimated {format_minutes(estimate)} on this machine, "
              f"budget left {format_minutes(max(left, 0.0))}")
      rows.append(skipped_row(paper_id, note, estimate, left))
      log(f"{paper_id}: {note}")
      continue
    began = clock()
    row = run_paper(paper_id)
    wall = clock() - began
    if row.get("verdict") != "ERROR":
      speed.update(wall, recorded)
    row.update(wall_s=wall, recorded_runtime_s=recorded, speed_factor=speed.factor)
    rows.append(row)
    log(f"{paper_id}: {format_minutes(wall)} here vs {format_minutes(recorded)} recorded; "
        f"speed factor now {speed.factor:.2f}× (over {speed.papers} paper(s))")
  return rows, speed


def recorded_runtime(paper_id: str) -> float | None:
  """The runtime of the paper's recorded default run (``jaxrep/records``), or None."""
  return registry.get(paper_id).runtime_s


def execute_paper(paper_id: str, workdir: str, **kwargs) -> dict[str, Any]:
  """Runs one paper's experiment (imports jax) and returns its results payload."""
  from jaxrep.core import experiment
  return experiment.execute(load_experiment(paper_id), workdir, **kwargs)


_now = time.monotonic  # reproduce's clock (tests replace it)


def skipped_row(paper_id: str, note: str, estimate_s: float | None,
                budget_left_s: float) -> dict[str, Any]:
  from jaxrep import scoreboard
  try:
    title, claim = registry.get(paper_id).title, registry.get(paper_id).claim
  except KeyError:
    title, claim = paper_id, ""
  row = scoreboard.row_from_results(paper_id, title, None, "", verdict="SKIPPED", note=note)
  row.update(claim=claim, estimate_s=estimate_s, budget_left_s=max(budget_left_s, 0.0))
  return row


def speed_notes(speed: SpeedEstimate, budget_s: float | None) -> list[str]:
  if not speed.papers:
    return []
  note = (f"speed factor on this machine: {speed.factor:.2f}× the recorded runtimes "
          f"(measured wall {format_minutes(speed.wall_s)} / recorded "
          f"{format_minutes(speed.recorded_s)} over {speed.papers} paper(s))")
  if budget_s is not None:
    note += f"; budget {format_minutes(budget_s)}"
  return [note]


# --- commands -----------------------------------------------------------------------------

def cmd_list(args) -> int:
  if args.json:
    print(json.dumps([{"id": p.id, "title": p.title, "family": p.family, "claim": p.claim,
                       "module": p.module, "experiment": p.experiment, "status": p.status,
                       "runtime_s": p.runtime_s, "headline": list(p.headline),
                       "checks": [dataclasses.asdict(c) for c in p.checks]}
                      for p in registry.PAPERS], indent=2, ensure_ascii=False))
    return 0
  width = max(len(p.id) for p in registry.PAPERS)
  for p in registry.PAPERS:
    runtime = format_minutes(p.runtime_s) if p.runtime_s is not None else "—"
    print(f"{p.id:<{width}}  {p.family:<11} {p.status:<14} {runtime:>8}  {p.title}")
  return 0


def cmd_run(args, overrides: tuple[str, ...]) -> int:
  paper = started_paper(args.id)
  check_output_dir(args.workdir, "--workdir")
  check_config(paper, quick=args.quick, overrides=overrides)
  from jaxrep.core import experiment
  experiment.execute(load_experiment(args.id), args.workdir, quick=args.quick,
                     seed=args.seed, overrides=overrides, data_dir=args.data_dir,
                     **({"mesh": args.mesh} if args.mesh else {}))
  return 0


def cmd_reproduce(args, overrides: tuple[str, ...]) -> int:
  if overrides:
    raise UsageError("reproduce takes no --config overrides; use `jaxrep run` for one paper")
  for paper_id in args.ids:
    started_paper(paper_id)
  check_output_dir(args.out, "--out")
  if args.budget_s < 0:
    raise UsageError(f"--budget_s must be non-negative, got {args.budget_s:g}")
  from jaxrep import scoreboard

  def run_paper(paper_id: str) -> dict[str, Any]:
    workdir = os.path.join(args.out, paper_id)
    title = registry.get(paper_id).title
    try:
      payload = execute_paper(paper_id, workdir, quick=args.quick, seed=args.seed,
                              data_dir=args.data_dir,
                              **({"mesh": args.mesh} if args.mesh else {}))
      row = scoreboard.row_from_results(paper_id, title, payload, workdir)
    except Exception as error:  # one failing paper must not hide the others
      traceback.print_exc()
      message = f"{type(error).__name__}: {error}".splitlines()[0]
      row = scoreboard.row_from_results(paper_id, title, None, workdir, message)
    rows.append(row)
    scoreboard.write_scoreboard(rows, args.out)
    return row

  rows: list[dict[str, Any]] = []
  budgeted = not (args.ids or args.all or args.quick)
  ids = list(args.ids) if args.ids else budget_order(implemented_ids())
  if budgeted:
    print(f"reproducing within {format_minutes(args.budget_s)}: {MAIN_PAPER} first, then "
          f"what fits at this machine's measured speed", flush=True)
    done, speed = run_within_budget(ids, args.budget_s, run_paper, recorded_runtime,
                                    clock=_now, log=lambda line: print(line, flush=True))
    rows[:] = done
    notes = speed_notes(speed, args.budget_s)
  else:
    print(f"reproducing {len(ids)} paper(s): {', '.join(ids)}", flush=True)
    speed = SpeedEstimate()
    for paper_id in ids:
      began = _now()
      row = run_paper(paper_id)
      wall, recorded = _now() - began, recorded_runtime(paper_id)
      if recorded and not args.quick and row["verdict"] != "ERROR":
        speed.update(wall, recorded)
        row.update(wall_s=wall, recorded_runtime_s=recorded, speed_factor=speed.factor)
    notes = speed_notes(speed, None)
  print(scoreboard.write_scoreboard(rows, args.out, notes=notes))
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


def _config_differences(paper: registry.Paper, ran: Mapping[str, Any]) -> list[str]:
  """Config keys where a run differs from the paper's default config."""
  from jaxrep.core import results as results_lib
  default = json.loads(json.dumps(results_lib.to_jsonable(check_config(paper).to_dict())))
  ran = json.loads(json.dumps(results_lib.to_jsonable(dict(ran))))

  def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
      out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out

  a, b = flat(default), flat(ran)
  return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def make_record(paper: registry.Paper, payload: Mapping[str, Any], path: str,
                machine: str | None) -> dict[str, Any]:
  """The trimmed results.json a record keeps."""
  verdict = payload.get("verdict") or {True: "PASS", False: "FAIL"}.get(payload.get("passed"))
  env = payload.get("env")
  if machine is None:
    machine = (f"{env.get('devices')} × {env.get('device_kind')} ({env.get('platform')})"
               if isinstance(env, Mapping) else "not in results.json")
  date = payload.get("date") or time.strftime("%Y-%m-%d", time.gmtime(os.path.getmtime(path)))
  return {"paper_id": paper.id, "verdict": verdict, "passed": verdict == "PASS",
          "runtime_s": float(payload["runtime_s"]), "date": date, "machine": machine,
          "quick": False, "source": f"`jaxrep record` of {path}", "seeds": payload.get("seeds"),
          "env": env, "measured": payload.get("measured", {}),
          "checks": payload.get("checks", []), "seeds_holding": payload.get("seeds_holding")}


def cmd_record(args) -> int:
  if not os.path.isdir(args.runs_dir):
    raise UsageError(f"RUNS_DIR {args.runs_dir} is not a directory")
  check_output_dir(args.records, "--records")
  given = list(args.ids)
  papers = ([started_paper(i) for i in given] if given else
            [p for p in registry.PAPERS if p.experiment and os.path.isfile(
                os.path.join(args.runs_dir, p.id, "results.json"))])
  if not papers:
    raise UsageError(f"no {args.runs_dir}/<paper id>/results.json found")
  records, refused = [], []
  for paper in papers:
    path = os.path.join(args.runs_dir, paper.id, "results.json")
    if not os.path.isfile(path):
      refused.append(f"{paper.id}: no {path}")
      continue
    with open(path) as f:
      payload = json.load(f)
    if payload.get("paper_id") != paper.id:
      refused.append(f"{paper.id}: {path} is a run of '{payload.get('paper_id')}'")
    elif payload.get("quick"):
      refused.append(f"{paper.id}: a quick run (records hold default-config runs)")
    elif differences := _config_differences(paper, payload.get("config", {})):
      refused.append(f"{paper.id}: not the default config ({', '.join(differences[:4])})")
    elif (record := make_record(paper, payload, path, args.machine))["verdict"] is None:
      refused.append(f"{paper.id}: results.json has no verdict")
    else:
      records.append(record)
  if refused:
    raise UsageError("nothing recorded; refused " + "; ".join(refused))
  from jaxrep.core import results as results_lib
  for record in records:
    results_lib.write_json_atomic(os.path.join(args.records, f"{record['paper_id']}.json"),
                                  record)
    print(f"recorded {record['paper_id']}: {record['verdict']} in "
          f"{format_minutes(record['runtime_s'])} → {args.records}/{record['paper_id']}.json")
  return 0


def cmd_sweep(args, overrides: tuple[str, ...]) -> int:
  check_output_dir(args.out, "--out")
  if args.id in {p.id for p in registry.PAPERS}:
    check_config(started_paper(args.id), quick=args.quick, overrides=overrides)
  exp = load_experiment(args.id)  # an unknown id: UsageError with close matches
  from jaxrep.core import sweep
  summary = sweep.run_sweep(
      exp, args.out, sweep.parse_grid(args.grid), args.seeds,
      base_overrides=sweep.parse_overrides(overrides), quick=args.quick,
      base_seed=args.seed, seeds_in_one_program=args.seeds_in_one_program,
      data_dir=args.data_dir)
  return 1 if any(p["errors"] for p in summary["points"]) else 0


# --- parsing ------------------------------------------------------------------------------

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


def add_sweep_parser(sub) -> None:
  p_sweep = sub.add_parser("sweep", help="run configs × seeds and aggregate mean ± std")
  p_sweep.add_argument("id")
  p_sweep.add_argument("--out", required=True)
  p_sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a config key and its values (repeat for a product grid)")
  p_sweep.add_argument("--seeds", type=_positive_int, default=3, help="seeds per config")
  p_sweep.add_argument("--seeds_in_one_program", action="store_true",
                       help="run each config's seeds as one vmapped program")
  p_sweep.add_argument("--quick", action="store_true")
  p_sweep.add_argument("--seed", type=_non_negative_int, default=0,
                       help="base seed, hashed into every run seed")
  p_sweep.add_argument("--data_dir", default=None)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jaxrep", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p_list = sub.add_parser("list", help="the papers, family, status and recorded runtime")
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
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--mesh", default=None, help="device mesh, e.g. 'seeds=4,data=2'")
  p_board = sub.add_parser("scoreboard", help="rebuild a scoreboard from results on disk")
  p_board.add_argument("--out", required=True)
  p_record = sub.add_parser("record", help="copy default-config results into jaxrep/records")
  p_record.add_argument("runs_dir", metavar="RUNS_DIR")
  p_record.add_argument("ids", nargs="*", metavar="ID")
  p_record.add_argument("--records", default=registry.RECORDS_DIR,
                        help="records directory (default: the package's jaxrep/records)")
  p_record.add_argument("--machine", default=None,
                        help="a note on the machine the runs ran on (default: from results.json)")
  add_sweep_parser(sub)
  return parser


def _one_line(error: BaseException) -> str:
  return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _loaded(*names: tuple[str, str]) -> tuple[type, ...]:
  """The error classes ``(module, name)`` whose modules are already imported: an
  error can only come from a module that was loaded, so none is imported here."""
  return tuple(getattr(sys.modules[module], name) for module, name in names
               if module in sys.modules)


def _user_error_types() -> tuple[type, ...]:
  """Bad input: exit status 2."""
  return (UsageError,) + _loaded(("jaxrep.core.config", "ConfigError"))


def _run_error_types() -> tuple[type, ...]:
  """Errors of a run that end it with status 1."""
  return _loaded(("jaxrep.core.loop", "NonFiniteLossError"),
                 ("jaxrep.core.checkpoint", "CheckpointError"))


def main(argv: Sequence[str] | None = None) -> int:
  if hasattr(signal, "SIGPIPE") and argv is None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `jaxrep list | head` exits quietly
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = tuple(a.removeprefix("--") for a in argv if a.startswith("--config."))
  try:
    args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
    if overrides and args.command not in ("run", "sweep", "reproduce"):
      raise UsageError(f"{args.command} takes no --config overrides")
    if args.command == "list":
      return cmd_list(args)
    if args.command == "run":
      return cmd_run(args, overrides)
    if args.command == "scoreboard":
      return cmd_scoreboard(args)
    if args.command == "record":
      return cmd_record(args)
    if args.command == "sweep":
      return cmd_sweep(args, overrides)
    return cmd_reproduce(args, overrides)
  except Exception as error:
    if isinstance(error, _user_error_types()):
      print(f"jaxrep: error: {_one_line(error)}", file=sys.stderr)
      return 2
    if isinstance(error, _run_error_types()):
      print(f"jaxrep: error: {_one_line(error)}", file=sys.stderr)
      return 1
    raise


if __name__ == "__main__":
  sys.exit(main())
