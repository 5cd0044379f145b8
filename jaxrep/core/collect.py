"""Any ``results.json`` files gathered into one table (``jaxrep collect``).

One row per run, or per config with the runs' per-seed values pooled and the
paper's verdict recomputed (``jaxrep.core.pooling``), as markdown (mean ± std
cells) or CSV. Imports no jax.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

from jaxrep.core import pooling
from jaxrep.core.config import ConfigError
from jaxrep.core.run_state import RESULTS_FILE, read_json

_FIELDS = {"runtime_s": lambda p: p.get("runtime_s"), "date": lambda p: p.get("date"),
           "git_sha": lambda p: (p.get("env") or {}).get("git_sha"),
           "git_dirty": lambda p: (p.get("env") or {}).get("git_dirty")}


def find_results(paths: Sequence[str]) -> list[str]:
  """Every ``results.json`` under ``paths`` (folders, searched recursively, or
  the files themselves), sorted per path, each once."""
  found: list[str] = []
  for path in paths:
    if os.path.isfile(path):
      found.append(path)
    elif os.path.isdir(path):
      for root, dirs, files in os.walk(path):
        dirs.sort()
        if RESULTS_FILE in files:
          found.append(os.path.join(root, RESULTS_FILE))
    else:
      raise ConfigError(f"{path}: no such file or directory")
  return list(dict.fromkeys(os.path.normpath(p) for p in found))


def load_results(paths: Sequence[str]) -> list[dict[str, Any]]:
  """``[{"path": run folder, "payload": results.json}, ...]`` for ``find_results``."""
  runs = []
  for path in find_results(paths):
    payload = read_json(path)
    if not isinstance(payload, dict) or "measured" not in payload:
      raise ConfigError(f"{path} is not a jaxrep results.json")
    runs.append({"path": os.path.dirname(path) or ".", "payload": payload})
  return runs


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{'model': {'width': 8}}`` → ``{'model.width': 8}``."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      flat.update(flat_config(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _varying_keys(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
  """Per paper, the config keys (but ``num_seeds``) whose values differ between runs."""
  by_paper: dict[str, list[dict]] = {}
  for run in runs:
    by_paper.setdefault(run["payload"].get("paper_id"), []).append(
        flat_config(run["payload"].get("config", {})))
  varying = {}
  for paper_id, configs in by_paper.items():
    keys = dict.fromkeys(k for c in configs for k in c)
    varying[paper_id] = [k for k in keys if k != "num_seeds" and len(
        {json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
  return varying


def _run_verdict(payload: Mapping[str, Any]) -> str:
  verdict = payload.get("verdict") or {True: "PASS", False: "FAIL"}.get(payload.get("passed"))
  quick = bool(payload.get("quick"))
  if not verdict:
    return "n/a" + (" (quick)" if quick else "")
  return pooling.verdict_text(verdict, payload.get("seeds_holding"), quick)


def _column_value(payload: Mapping[str, Any], column: str) -> Any:
  """A measured value's stats dict, a ``config.KEY`` value or a run field."""
  if column in payload.get("measured", {}):
    return payload["measured"][column]
  if column.startswith("config."):
    return flat_config(payload.get("config", {})).get(column.removeprefix("config."))
  if column in _FIELDS:
    return _FIELDS[column](payload)
  return None


def _table_columns(runs: Sequence[Mapping[str, Any]],
                   columns: Sequence[str] | None) -> list[str]:
  """The given columns, checked, or the runs' headline measured values."""
  if columns is None:
    return list(dict.fromkeys(
        name for run in runs for name in (run["payload"].get("headline")
                                          or list(run["payload"]["measured"])[:4])))
  unknown = [c for c in columns if c not in _FIELDS and all(
      _column_value(r["payload"], c) is None for r in runs)]
  if unknown and runs:
    raise ConfigError(f"no collected run has a measured value or field '{unknown[0]}' "
                      f"(fields: config.KEY, {', '.join(_FIELDS)})")
  return list(columns)


def _config_groups(runs: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
  """Runs grouped by (paper, quick, config but ``num_seeds``), each group in seed
  order with runs of the same seeds counted once."""
  groups: dict[str, list[Mapping[str, Any]]] = {}
  for run in runs:
    payload = run["payload"]
    config = {k: v for k, v in flat_config(payload.get("config", {})).items()
              if k != "num_seeds"}
    key = json.dumps([payload.get("paper_id"), bool(payload.get("quick")), config],
                     sort_keys=True)
    groups.setdefault(key, []).append(run)
  unique_groups = []
  for members in groups.values():
    unique: dict[str, Mapping[str, Any]] = {}
    for run in sorted(members, key=lambda r: (r["payload"].get("seeds") or [], r["path"])):
      unique.setdefault(json.dumps(run["payload"].get("seeds")), run)
    unique_groups.append(list(unique.values()))
  return unique_groups


def collect_table(runs: Sequence[Mapping[str, Any]], *, by: str = "run",
                  columns: Sequence[str] | None = None,
                  checks_for: Callable[[str], Iterable[Any]] | None = None,
                  ) -> tuple[list[str], list[dict[str, Any]]]:
  """``(columns, rows)`` for ``load_results`` output.

  ``by="run"``: one row per run. ``by="config"``: one row per (paper, config but
  ``num_seeds``, quick), its runs' per-seed values pooled in seed order (runs
  with the same seeds counted once) and the verdict recomputed from the paper's
  checks (``checks_for(paper_id)``, default: ``papers.toml``). Each row has
  ``label`` (run folder, or run count), ``paper_id``, ``config`` (the keys that
  vary between the collected runs of that paper), ``verdict``, ``seeds`` and
  ``cells`` (column → stats dict or value); a config row also ``paths``.
  Default columns: the runs' headline measured values, in first-seen order.
  """
  if by not in ("run", "config"):
    raise ConfigError(f"--by must be 'run' or 'config', got {by!r}")
  checks_for = checks_for or pooling.paper_checks
  columns = _table_columns(runs, columns)
  varying = _varying_keys(runs)

  def config_label(payload: Mapping[str, Any]) -> str:
    flat = flat_config(payload.get("config", {}))
    keys = varying.get(payload.get("paper_id"), [])
    return ", ".join(f"{k}={json.dumps(flat.get(k))}" for k in keys) or "—"

  if by == "run":
    return columns, [
        {"label": run["path"], "paper_id": run["payload"].get("paper_id"),
         "config": config_label(run["payload"]), "verdict": _run_verdict(run["payload"]),
         "seeds": len(run["payload"].get("seeds") or []),
         "cells": {c: _column_value(run["payload"], c) for c in columns}} for run in runs]
  rows = []
  for group in _config_groups(runs):
    payloads = [r["payload"] for r in group]
    first = payloads[0]
    quick = bool(first.get("quick"))
    pooled = pooling.pool(payloads, tuple(checks_for(first.get("paper_id"))), quick)
    cells = {c: pooled["measured"].get(c) if any(c in p.get("measured", {}) for p in payloads)
             else _column_value(first, c) for c in columns}
    rows.append({"label": f"{len(payloads)} run(s)", "paper_id": first.get("paper_id"),
                 "config": config_label(first),
                 "verdict": pooling.pooled_verdict_text(
                     pooled, [p.get("passed") for p in payloads], quick),
                 "seeds": sum(len(p.get("seeds") or []) for p in payloads),
                 "cells": cells, "paths": [r["path"] for r in group]})
  return columns, rows


def _text(value: Any) -> str:
  if value is None:
    return "—"
  if isinstance(value, Mapping) and "mean" in value:
    return pooling.stats_text(value)
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def _leading(row: Mapping[str, Any]) -> list[Any]:
  return [row["label"], row["paper_id"], row["config"], row["verdict"], row["seeds"]]


def format_collect(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *,
                   fmt: str = "md", by: str = "run") -> str:
  """The collected table as markdown (mean ± std cells) or CSV (``NAME``,
  ``NAME_std``, ``NAME_n`` columns per measured value)."""
  if fmt not in ("md", "csv"):
    raise ConfigError(f"--format must be 'md' or 'csv', got {fmt!r}")
  header = ["runs" if by == "config" else "run", "paper", "config", "verdict", "seeds"]
  if fmt == "md":
    lines = ["| " + " | ".join([*header, *columns]) + " |", "|" + "---|" * (5 + len(columns))]
    for row in rows:
      cells = _leading(row) + [_text(row["cells"].get(c)) for c in columns]
      lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
  measured = [c for c in columns if any(isinstance(r["cells"].get(c), Mapping) for r in rows)]
  for c in columns:
    header += [c, f"{c}_std", f"{c}_n"] if c in measured else [c]
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    line = _leading(row)
    for c in columns:
      value = row["cells"].get(c)
      if c in measured:
        line += ([value["mean"], value["std"], value["n"]] if isinstance(value, Mapping)
                 else ["", "", ""])
      else:
        line.append("" if value is None else value)
    writer.writerow(line)
  return buffer.getvalue()


def write_text_atomic(path: str, text: str) -> None:
  """Writes ``text`` to a temporary file beside ``path`` and renames it (its
  folder created): readers never see half a table."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
