"""The reproduction scoreboard: one row per paper from its ``results.json``.

Writes ``SCOREBOARD.md`` (paper | claim | measured | PASS/FAIL | runtime | figure)
and ``scoreboard.json`` (the rows, machine-readable).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from jaxrep.core import results as results_lib
from jaxrep.core.logging import format_duration


def row_from_results(paper_id: str, title: str, payload: Mapping[str, Any] | None,
                     workdir: str, error: str | None = None) -> dict[str, Any]:
  """A scoreboard row; ``payload`` is None when the run failed with ``error``."""
  if payload is None:
    return {"paper_id": paper_id, "title": title, "claim": "", "measured": {},
            "verdict": "ERROR", "passed": None, "runtime_s": None,
            "figure": None, "error": error, "workdir": workdir}
  names = payload.get("headline") or list(payload["measured"])[:4]
  figure = os.path.join(workdir, "figure.png")
  verdict = {True: "PASS", False: "FAIL", None: "quick (no claim)"}[payload["passed"]]
  return {"paper_id": paper_id, "title": title, "claim": payload["claim"],
          "measured": {n: payload["measured"][n] for n in names if n in payload["measured"]},
          "verdict": verdict, "passed": payload["passed"], "runtime_s": payload["runtime_s"],
          "figure": figure if os.path.exists(figure) else None, "error": None,
          "workdir": workdir}


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[Mapping[str, Any]], out_dir: str) -> str:
  lines = ["# jaxrep reproduction scoreboard", "",
           "| paper | claim | measured (mean ± std over seeds) | result | runtime | figure |",
           "|---|---|---|---|---|---|"]
  for row in rows:
    measured = "; ".join(f"{name} = {results_lib.format_measured(stats)}"
                         for name, stats in row["measured"].items())
    if row["error"]:
      measured = f"error: {row['error']}"
    runtime = format_duration(row["runtime_s"]) if row["runtime_s"] is not None else "—"
    figure = (f"[png]({os.path.relpath(row['figure'], out_dir)})" if row["figure"] else "—")
    lines.append(f"| {_cell(row['title'])} (`{row['paper_id']}`) | {_cell(row['claim'])} | "
                 f"{_cell(measured)} | **{row['verdict']}** | {runtime} | {figure} |")
  passed = sum(r["verdict"] == "PASS" for r in rows)
  failed = sum(r["verdict"] == "FAIL" for r in rows)
  errors = sum(r["verdict"] == "ERROR" for r in rows)
  lines += ["", f"{passed} PASS, {failed} FAIL, {errors} ERROR of {len(rows)} run."]
  return "\n".join(lines) + "\n"


def write_scoreboard(rows: Sequence[Mapping[str, Any]], out_dir: str) -> str:
  """Writes both files; returns the markdown."""
  os.makedirs(out_dir, exist_ok=True)
  markdown = to_markdown(rows, out_dir)
  with open(os.path.join(out_dir, "SCOREBOARD.md"), "w") as f:
    f.write(markdown)
  results_lib.write_json_atomic(os.path.join(out_dir, "scoreboard.json"), list(rows))
  return markdown
