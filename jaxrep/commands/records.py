"""``jaxrep list``, ``jaxrep scoreboard`` and ``jaxrep record``: the papers and their results.

``list`` prints the registry (never imports jax). ``scoreboard`` rebuilds
``OUT/SCOREBOARD.md`` from the ``OUT/<paper id>/results.json`` already there.
``record`` copies the ``results.json`` of default-config runs into the committed
records (``jaxrep/records/<id>.json``: the status and runtime ``list`` and
``reproduce`` show), refusing quick runs, other configs and runs without a verdict.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any, Mapping

from jaxrep import registry
from jaxrep.commands import papers
from jaxrep.commands.budget import format_minutes
from jaxrep.commands.usage import UsageError, check_output_dir


def cmd_list(args: argparse.Namespace) -> int:
  """One line per paper (id, family, status, recorded runtime, title), or ``--json``."""
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


def _results_path(runs_dir: str, paper_id: str) -> str:
  return os.path.join(runs_dir, paper_id, "results.json")


def cmd_scoreboard(args: argparse.Namespace) -> int:
  """Rebuilds the scoreboard from ``OUT/<paper id>/results.json``."""
  from jaxrep import scoreboard
  rows = []
  for paper in registry.PAPERS:
    path = _results_path(args.out, paper.id)
    if os.path.exists(path):
      with open(path) as f:
        rows.append(scoreboard.row_from_results(paper.id, paper.title, json.load(f),
                                                os.path.dirname(path)))
  if not rows:
    raise UsageError(f"no {args.out}/<paper id>/results.json found; run `jaxrep reproduce "
                     f"--out {args.out}` or `jaxrep run ID --workdir {args.out}/ID` first")
  print(scoreboard.write_scoreboard(rows, args.out))
  return 0


def _config_differences(paper: registry.Paper, ran: Mapping[str, Any]) -> list[str]:
  """Config keys where a run differs from the paper's default config."""
  from jaxrep.core.collect import flat_config
  from jaxrep.core.sweep_plan import json_roundtrip
  default = flat_config(json_roundtrip(papers.check_config(paper).to_dict()))
  ran = flat_config(json_roundtrip(dict(ran)))
  return sorted(k for k in set(default) | set(ran) if default.get(k) != ran.get(k))


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


def _record_or_refusal(paper: registry.Paper, path: str,
                       machine: str | None) -> tuple[dict | None, str | None]:
  """``(record, None)`` for a default-config run with a verdict, else ``(None, why not)``."""
  if not os.path.isfile(path):
    return None, f"{paper.id}: no {path}"
  with open(path) as f:
    payload = json.load(f)
  if payload.get("paper_id") != paper.id:
    return None, f"{paper.id}: {path} is a run of '{payload.get('paper_id')}'"
  if payload.get("quick"):
    return None, f"{paper.id}: a quick run (records hold default-config runs)"
  if differences := _config_differences(paper, payload.get("config", {})):
    return None, f"{paper.id}: not the default config ({', '.join(differences[:4])})"
  record = make_record(paper, payload, path, machine)
  if record["verdict"] is None:
    return None, f"{paper.id}: results.json has no verdict"
  return record, None


def cmd_record(args: argparse.Namespace) -> int:
  """Writes the records of the given papers' runs (or of every run found), or none."""
  if not os.path.isdir(args.runs_dir):
    raise UsageError(f"RUNS_DIR {args.runs_dir} is not a directory")
  check_output_dir(args.records, "--records")
  chosen = ([papers.started_paper(i) for i in args.ids] if args.ids else
            [p for p in registry.PAPERS
             if p.experiment and os.path.isfile(_results_path(args.runs_dir, p.id))])
  if not chosen:
    raise UsageError(f"no {args.runs_dir}/<paper id>/results.json found")
  answers = [_record_or_refusal(p, _results_path(args.runs_dir, p.id), args.machine)
             for p in chosen]
  refused = [why for _, why in answers if why is not None]
  if refused:
    raise UsageError("nothing recorded; refused " + "; ".join(refused))
  from jaxrep.core import results as results_lib
  for record, _ in answers:
    results_lib.write_json_atomic(os.path.join(args.records, f"{record['paper_id']}.json"),
                                  record)
    print(f"recorded {record['paper_id']}: {record['verdict']} in "
          f"{format_minutes(record['runtime_s'])} → {args.records}/{record['paper_id']}.json")
  return 0
