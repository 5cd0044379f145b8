"""Measured values and the ``results.json`` every experiment writes.

Schema (a stable contract; the scoreboard and other tools read it)::

  {"paper_id", "claim", "passed": true | false | null (quick mode, or not comparable),
   "verdict": "PASS" | "FAIL" | "NOT COMPARABLE" | null (no checks, quick),
   "checks": [{"measure", "op", "threshold", "aggregate", "source", "role", "value",
               "holds", "margin", "mean", "std", "n", "seeds_holding", "missing"}],
   "seeds_holding": {"k", "n"} | null,
   "measured": {name: {"mean", "std", "n"}}, "seeds", "runtime_s",
   "config", "quick", "details", "headline"}

``checks``, ``verdict`` and ``seeds_holding`` come from ``jaxrep.core.claims``
(the paper's checks in ``jaxrep/papers.toml``); in quick mode they are computed
too but ``passed`` stays null.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np


def summarize(values: Any) -> dict[str, float | int]:
  """Mean ± std (ddof=0) over seeds of a scalar or per-seed array.

  NaNs (failed measurements) are dropped; ±inf (e.g. a sample complexity
  beyond the grid) propagates to the mean.
  """
  array = np.asarray(values, dtype=np.float64).reshape(-1)
  kept = array[~np.isnan(array)]
  if kept.size == 0:
    return {"mean": float("nan"), "std": float("nan"), "n": int(array.size)}
  std = float(kept.std()) if np.all(np.isfinite(kept)) else float("nan")
  return {"mean": float(kept.mean()), "std": std, "n": int(array.size)}


def format_measured(stats: Mapping[str, float]) -> str:
  """``{'mean': .91, 'std': .02, 'n': 3} -> '0.91 ± 0.02 (n=3)'``."""
  mean, std, n = stats["mean"], stats["std"], stats["n"]
  if n <= 1:
    return f"{mean:.4g}"
  return f"{mean:.4g} ± {std:.2g} (n={n})"


def to_jsonable(value: Any) -> Any:
  """Numpy/JAX arrays and scalars to plain JSON values (NaN/inf as strings)."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (str, bool)) or value is None:
    return value
  array = np.asarray(value)
  if array.dtype.kind in "biuf" and array.ndim == 0:
    item = array.item()
    if isinstance(item, float) and not np.isfinite(item):
      return str(item)
    return item
  if array.dtype.kind in "biuf":
    return [to_jsonable(v) for v in array.tolist()]
  return str(value)


def write_json_atomic(path: str, payload: Any) -> None:
  """Writes JSON to a temporary file and renames it: readers never see half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
  with os.fdopen(fd, "w") as f:
    json.dump(to_jsonable(payload), f, indent=2, sort_keys=False)
    f.write("\n")
  os.replace(tmp, path)


def results_payload(*, paper_id: str, claim: str, passed: bool | None = None,
                    measured: Mapping[str, Any], seeds: Sequence[int],
                    runtime_s: float, config: Mapping[str, Any], quick: bool,
                    details: Mapping[str, Any] | None = None,
                    headline: Sequence[str] = (),
                    evaluation: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The ``results.json`` dict; ``measured`` values are per-seed arrays or scalars.

  ``headline`` names the measured values a scoreboard shows (default: first four).
  ``evaluation`` is ``claims.evaluate(...)`` of the paper's checks; when given, it
  decides ``passed`` (the experiment's own ``passed`` is ignored).
  """
  if evaluation is not None:
    passed = evaluation["passed"]
  passed = None if quick else (None if passed is None else bool(passed))
  if evaluation is not None:
    verdict = evaluation["verdict"]
  else:
    verdict = {True: "PASS", False: "FAIL", None: None}[passed]
  return {
      "paper_id": paper_id,
      "claim": claim,
      "passed": passed,
      "verdict": verdict,
      "checks": list(evaluation["checks"]) if evaluation is not None else [],
      "seeds_holding": evaluation["seeds_holding"] if evaluation is not None else None,
      "measured": {name: summarize(v) for name, v in measured.items()},
      "seeds": list(seeds),
      "runtime_s": float(runtime_s),
      "config": dict(config),
      "quick": bool(quick),
      "details": dict(details or {}),
      "headline": list(headline) or list(measured)[:4],
  }
