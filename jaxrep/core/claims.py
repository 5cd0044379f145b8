"""The verdict of a paper's claim, computed from its checks in one place.

A paper's checks (``jaxrep/papers.toml``, ``registry.Check``) are thresholds on
an experiment's measured values: ``aggregate(measured[measure]) op threshold``.
``evaluate`` reduces each measure's per-seed values (``mean``, ``median``, or
``all``: every seed must hold, and the reported value is the worst seed's),
and reports per check

* ``value``   the aggregate (for ``all``: the worst seed's value);
* ``holds``   whether ``value op threshold``;
* ``margin``  signed distance to the threshold, positive when it holds
  (``value - threshold`` for ``>=``/``>``, ``threshold - value`` for ``<=``/``<``);
* ``seeds_holding``  ``{"k", "n"}``: on how many of the n seeds the check holds
  alone (per-seed measures only; scalars give None);
* ``mean``, ``std``, ``n`` of the per-seed values.

The verdict: ``"NOT COMPARABLE"`` when a gate check fails or a claim/gate
measure is missing, else ``"PASS"`` when every claim check holds, else
``"FAIL"``; sanity checks are reported and never change it. ``passed`` is True
/ False for PASS / FAIL and None otherwise, and always None in quick mode
(quick runs compute everything but never claim). ``seeds_holding`` overall is
the number of seeds on which every per-seed claim check holds.

NaN values never hold (a failed measurement cannot pass a claim). This module
imports numpy only.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any, Iterable, Mapping

import numpy as np

PASS, FAIL, NOT_COMPARABLE = "PASS", "FAIL", "NOT COMPARABLE"
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_SYMBOLS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">"}
_FIELDS = ("measure", "op", "threshold", "aggregate", "source", "role")


def _as_check(check: Any) -> dict[str, Any]:
  """A ``registry.Check`` or a mapping with the same fields, as a plain dict."""
  if dataclasses.is_dataclass(check):
    check = dataclasses.asdict(check)
  out = {"aggregate": "mean", "source": "ours", "role": "claim"}
  out.update({k: check[k] for k in _FIELDS if k in check})
  out["threshold"] = float(out["threshold"])
  if out["op"] not in _OPS:
    raise ValueError(f"check {out['measure']}: unknown op {out['op']!r}")
  if out["aggregate"] not in ("mean", "median", "all"):
    raise ValueError(f"check {out['measure']}: unknown aggregate {out['aggregate']!r}")
  return out


def _margin(op: str, value: float, threshold: float) -> float:
  with np.errstate(invalid="ignore"):
    return float(value - threshold) if op in (">=", ">") else float(threshold - value)


def _holds(op: str, value: Any, threshold: float) -> Any:
  with np.errstate(invalid="ignore"):
    return _OPS[op](value, threshold)  # NaN compares False


def evaluate_check(check: Any, measured: Mapping[str, Any]) -> dict[str, Any]:
  """One check against ``measured`` (name → per-seed array or scalar).

  The returned dict also holds ``_seed_holds`` (per-seed booleans or None), which
  ``evaluate`` uses and removes.
  """
  result = _as_check(check)
  op, threshold = result["op"], result["threshold"]
  if result["measure"] not in measured:
    return {**result, "missing": True, "value": None, "holds": None, "margin": None,
            "mean": None, "std": None, "n": 0, "seeds_holding": None, "_seed_holds": None}
  raw = np.asarray(measured[result["measure"]], dtype=np.float64)
  values = raw.reshape(-1)
  per_seed = raw.ndim >= 1
  seed_holds = np.asarray(_holds(op, values, threshold), dtype=bool)
  with np.errstate(invalid="ignore"):
    if result["aggregate"] == "mean":
      value = float(np.mean(values)) if values.size else float("nan")
    elif result["aggregate"] == "median":
      value = float(np.median(values)) if values.size else float("nan")
    else:  # all: the worst seed
      worst = np.max if op in ("<=", "<") else np.min
      value = float(worst(values)) if values.size else float("nan")
    std = float(np.std(values)) if values.size else float("nan")
    mean = float(np.mean(values)) if values.size else float("nan")
  holds = bool(_holds(op, value, threshold))
  if result["aggregate"] == "all":
    holds = bool(values.size and seed_holds.all())
  return {**result, "missing": False, "value": value, "holds": holds,
          "margin": _margin(op, value, threshold), "mean": mean, "std": std,
          "n": int(values.size),
          "seeds_holding": ({"k": int(seed_holds.sum()), "n": int(values.size)}
                            if per_seed else None),
          "_seed_holds": seed_holds if per_seed else None}


def verdict_of(results: Iterable[Mapping[str, Any]]) -> str | None:
  """PASS / FAIL / NOT COMPARABLE from evaluated checks; None without claim checks."""
  results = list(results)
  deciding = [r for r in results if r["role"] in ("claim", "gate")]
  if any(r["missing"] for r in deciding):
    return NOT_COMPARABLE
  if any(r["role"] == "gate" and not r["holds"] for r in results):
    return NOT_COMPARABLE
  claims = [r for r in results if r["role"] == "claim"]
  if not claims:
    return None
  return PASS if all(r["holds"] for r in claims) else FAIL


def evaluate(checks: Iterable[Any], measured: Mapping[str, Any], *,
             quick: bool = False) -> dict[str, Any]:
  """Every check, the verdict, ``passed`` (None in quick mode) and overall k/n seeds.

  Returns ``{"checks": [...], "verdict", "passed", "seeds_holding"}``.
  """
  results = [evaluate_check(c, measured) for c in checks]
  verdict = verdict_of(results)
  per_seed = [r["_seed_holds"] for r in results
              if r["role"] == "claim" and r["_seed_holds"] is not None]
  seeds_holding = None
  if per_seed and len({len(h) for h in per_seed}) == 1:
    together = np.logical_and.reduce(per_seed)
    seeds_holding = {"k": int(together.sum()), "n": int(together.size)}
  for r in results:
    r.pop("_seed_holds")
  passed = None if quick else {PASS: True, FAIL: False}.get(verdict)
  return {"checks": results, "verdict": verdict, "passed": passed,
          "seeds_holding": seeds_holding}


def _num(value: Any) -> str:
  if value is None:
    return "—"
  value = float(value)
  return f"{value:+.3g}" if np.isfinite(value) else str(value)


def format_check(result: Mapping[str, Any]) -> str:
  """``'drop_tinvnn 0.4 ± 0.3 ≤ 1 (ours): holds, margin +0.6, 3/3 seeds'``."""
  threshold = f"{_SYMBOLS[result['op']]} {result['threshold']:g}"
  source = " (ours)" if result.get("source") == "ours" else " (paper)"
  role = "" if result.get("role", "claim") == "claim" else f"[{result['role']}] "
  name = result["measure"] + ("" if result.get("aggregate", "mean") == "mean"
                              else f" ({result['aggregate']})")
  if result.get("missing"):
    return f"{role}{name} {threshold}{source}: not measured"
  value = float(result["value"])
  shown = f"{value:.4g}"
  if result.get("n", 1) > 1 and result.get("aggregate", "mean") == "mean":
    shown += f" ± {float(result['std']):.2g}"
  seeds = result.get("seeds_holding")
  seeds = f", {seeds['k']}/{seeds['n']} seeds" if seeds else ""
  status = "holds" if result["holds"] else "fails"
  return f"{role}{name} {shown} {threshold}{source}: {status}, margin {_num(result['margin'])}{seeds}"
