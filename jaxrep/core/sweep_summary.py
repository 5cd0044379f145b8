"""A sweep's summary: ``sweep.json`` and the ``sweep.md`` table, one row per sweep point.

Each point holds mean ± std of every measured value and the paper's verdict,
recomputed from the per-seed values of all its finished runs pooled
(``jaxrep.core.pooling``), so one program and one run per seed give the same
table, plus how many of its runs finished or failed. Imports no jax.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

from jaxrep.core import pooling
from jaxrep.core import results as results_lib
from jaxrep.core.collect import write_text_atomic
from jaxrep.core.sweep_plan import SweepRun

SWEEP_JSON, SWEEP_MD = "sweep.json", "sweep.md"


def summarize_sweep(runs: Sequence[SweepRun], payloads: Mapping[str, Mapping[str, Any]],
                    errors: Mapping[str, str], *, num_seeds: int, grid: Mapping[str, Any],
                    seeds_in_one_program: bool, paired_seeds: bool = False,
                    checks: Iterable[Any] | None = None) -> dict[str, Any]:
  """The ``sweep.json`` payload: one entry per sweep point, in grid order.

  ``payloads`` and ``errors`` are keyed by workdir; ``checks`` default to the
  paper's (``papers.toml``). ``ended`` says every run finished or failed.
  """
  paper_id = runs[0].paper_id if runs else None
  quick = bool(runs and runs[0].quick)
  if checks is None:
    checks = pooling.paper_checks(paper_id) if paper_id else ()
  checks = tuple(checks)
  points = []
  for slug in dict.fromkeys(r.slug for r in runs):
    members = [r for r in runs if r.slug == slug]
    done = [payloads[r.workdir] for r in members if r.workdir in payloads]
    points.append({
        "slug": slug, "overrides": members[0].canonical, "seed": members[0].seed,
        "workdirs": [r.workdir for r in members],
        "runs": len(members), "finished": len(done), "complete": len(done) == len(members),
        "errors": [errors[r.workdir] for r in members if r.workdir in errors],
        "runs_passed": [p.get("passed") for p in done], **pooling.pool(done, checks, quick)})
  total = sum(p["runs"] for p in points)
  finished = sum(p["finished"] for p in points)
  failed = sum(len(p["errors"]) for p in points)
  return {"paper_id": paper_id, "num_seeds": num_seeds,
          "seeds_in_one_program": seeds_in_one_program, "paired_seeds": paired_seeds,
          "quick": quick, "grid": dict(grid), "runs": total, "finished": finished,
          "failed": failed, "ended": finished + failed == total, "points": points}


def _verdict_cell(point: Mapping[str, Any], quick: bool) -> str:
  if point["errors"]:
    return f"ERROR ({len(point['errors'])})"
  if not point["complete"]:
    return f"incomplete ({point['finished']}/{point['runs']} runs)"
  return pooling.pooled_verdict_text(point, point["runs_passed"], quick)


def format_markdown(summary: Mapping[str, Any]) -> str:
  """A table: one row per sweep point, one column per measured value (mean ± std
  over the pooled seeds) and the verdict of the paper's checks on them."""
  points = summary["points"]
  names = list(dict.fromkeys(k for p in points for k in p["measured"]))
  mode = "one program" if summary["seeds_in_one_program"] else "one run per seed"
  seeds = "paired seeds" if summary.get("paired_seeds") else "seeds hashed per config"
  lines = [f"# Sweep: {summary['paper_id']}",
           "",
           f"{summary['num_seeds']} seed(s) per config ({mode}, {seeds}); mean ± std over "
           "seeds" + (" — quick mode" if summary["quick"] else "") + f"; "
           f"{summary.get('finished', 0)}/{summary.get('runs', 0)} runs finished.",
           "",
           "| config | run seed | verdict | " + " | ".join(names) + " |",
           "|" + "---|" * (3 + len(names))]
  for p in points:
    config = ", ".join(f"{k}={v}" for k, v in p["overrides"].items()) or "(defaults)"
    cells = [pooling.stats_text(p["measured"].get(n)) for n in names]
    lines.append(f"| {config} | {p['seed']} | {_verdict_cell(p, summary['quick'])} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_summary(summary: Mapping[str, Any], out: str) -> str:
  """Writes ``sweep.json`` and ``sweep.md`` into ``out`` (each atomically); returns the table."""
  results_lib.write_json_atomic(os.path.join(out, SWEEP_JSON), summary)
  table = format_markdown(summary)
  write_text_atomic(os.path.join(out, SWEEP_MD), table)
  return table
