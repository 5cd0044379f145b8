"""The reproduction scoreboard: one row per paper from its ``results.json``.

Writes ``SCOREBOARD.md`` (paper | claim | checks | other measured | result |
runtime | figure) and ``scoreboard.json`` (the rows, machine-readable). Each
check shows its threshold (marked "ours" when the number is ours, not the
paper's), the measured value with mean ± std over seeds, the signed margin
(positive = holds) and on how many seeds it holds alone; the result shows the
verdict and on how many seeds every claim check holds. Papers that
``reproduce`` skipped have a row saying why. Imports no jax.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from jaxrep.core import claims as claims_lib
from jaxrep.core import results as results_lib
from jaxrep.core.results import format_duration


def _verdict(payload: Mapping[str, Any]) -> str:
  if payload.get("quick"):
    return "quick (no claim)"
  if payload.get("verdict"):
    return payload["verdict"]
  return {True: "PASS", False: "FAIL", None: "no verdict"}[payload.get("passed")]


def row_from_results(paper_id: str, title: str, payload: Mapping[str, Any] | None,
                     workdir: str, error: str | None = None, *,
                     verdict: str = "ERROR", note: str | None = None) -> dict[str, Any]:
  """A scoreboard row; ``payload`` is None when the run failed with ``error`` (or
  was skipped: ``verdict="SKIPPED"`` and a ``note``)."""
  if payload is None:
    return {"paper_id": paper_id, "title": title, "claim": "", "measured": {},
            "checks": [], "seeds_holding": None, "verdict": verdict, "passed": None,
            "runtime_s": None, "figure": None, "error": error, "note": note,
            "workdir": workdir}
  checked = {c["measure"] for c in payload.get("checks", ())}
  names = [n for n in payload.get("headline") or list(payload["measured"])[:4]
           if n not in checked]
  figure = os.path.join(workdir, "figure.png")
  return {"paper_id": paper_id, "title": title, "claim": payload["claim"],
          "measured": {n: payload["measured"][n] for n in names if n in payload["measured"]},
          "checks": list(payload.get("checks", ())),
          "seeds_holding": payload.get("seeds_holding"),
          "verdict": _verdict(payload), "passed": payload["passed"],
          "runtime_s": payload["runtime_s"],
          "figure": figure if os.path.exists(figure) else None, "error": None,
          "note": note, "workdir": workdir}


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _result_cell(row: Mapping[str, Any]) -> str:
  seeds = row.get("seeds_holding")
  seeds = f" ({seeds['k']}/{seeds['n']} seeds)" if seeds else ""
  return f"**{row['verdict']}**{seeds}"


def to_markdown(rows: Sequence[Mapping[str, Any]], out_dir: str,
                notes: Sequence[str] = ()) -> str:
  lines = ["# jaxrep reproduction scoreboard", "",
           "Checks: measured value (mean ± std over seeds) vs threshold, \"ours\" when the "
           "threshold is ours rather than the paper's; margin > 0 means it holds; k/n = seeds "
           "on which it holds alone.", "",
           "| paper | claim | checks | other measured (mean ± std over seeds) | result | "
           "runtime | figure |",
           "|---|---|---|---|---|---|---|"]
  for row in rows:
    checks = "<br>".join(_cell(claims_lib.format_check(c)) for c in row.get("checks", ()))
    measured = "; ".join(f"{name} = {results_lib.format_measured(stats)}"
                         for name, stats in row["measured"].items())
    if row.get("error"):
      measured = f"error: {row['error']}"
    if row.get("note"):
      measured = row["note"]
    runtime = format_duration(row["runtime_s"]) if row.get("runtime_s") is not None else "—"
    figure = (f"[png]({os.path.relpath(row['figure'], out_dir)})" if row.get("figure")
              else "—")
    lines.append(f"| {_cell(row['title'])} (`{row['paper_id']}`) | {_cell(row['claim'])} | "
                 f"{checks or '—'} | {_cell(measured) or '—'} | {_result_cell(row)} | "
                 f"{runtime} | {figure} |")
  counts = {v: sum(r["verdict"] == v for r in rows)
            for v in ("PASS", "FAIL", "NOT COMPARABLE", "ERROR", "SKIPPED")}
  ran = len(rows) - counts["SKIPPED"]
  summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n or v in ("PASS", "FAIL"))
  lines += ["", f"{summary}; {ran} run."]
  for row in rows:
    if row["verdict"] == "SKIPPED" and row.get("note"):
      lines.append(f"- `{row['paper_id']}` {row['note']}")
  lines += [f"- {note}" for note in notes]
  return "\n".join(lines) + "\n"


def write_scoreboard(rows: Sequence[Mapping[str, Any]], out_dir: str,
                     notes: Sequence[str] = ()) -> str:
  """Writes both files; returns the markdown."""
  os.makedirs(out_dir, exist_ok=True)
  markdown = to_markdown(rows, out_dir, notes)
  with open(os.path.join(out_dir, "SCOREBOARD.md"), "w") as f:
    f.write(markdown)
  results_lib.write_json_atomic(os.path.join(out_dir, "scoreboard.json"), list(rows))
  return markdown
