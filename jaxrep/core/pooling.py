"""Runs of one config pooled: their per-seed values, statistics and verdict.

Each ``results.json`` stores a per-seed measure's values
(``measured[name]["values"]``); the runs of one config (one run per seed, or
one program over all seeds) are pooled by concatenating those values along the
seed axis, so both give the same mean ± std, and the paper's checks
(``jaxrep.core.claims``, from ``papers.toml``) are evaluated on the pooled
values. A scalar measure counts as one value per run. Also the text a table
shows for pooled statistics and verdicts. Imports no jax.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from jaxrep import registry
from jaxrep.core import claims as claims_lib
from jaxrep.core import results as results_lib

VERDICT_KEYS = ("verdict", "passed", "checks", "seeds_holding")


def paper_checks(paper_id: str) -> tuple:
  """The claim's checks from ``papers.toml`` (empty for an unknown paper)."""
  try:
    return tuple(registry.get(paper_id).checks)
  except KeyError:
    return ()


def pooled_values(payloads: Sequence[Mapping[str, Any]], name: str) -> Any:
  """The per-seed values of measure ``name`` over runs (replicate order),
  concatenated along the seed axis. A run without ``values`` (a scalar measure,
  or results written before values were stored) counts as one value, its mean;
  a run missing the measure as NaN. One run with a scalar stays a scalar."""
  parts = []
  for payload in payloads:
    stats = payload["measured"].get(name)
    if stats is None:
      parts.append(np.array([np.nan]))
      continue
    values = (np.asarray(stats["values"], dtype=np.float64)  # "nan"/"inf" strings parse
              if "values" in stats else None)
    if values is None or values.ndim == 0:
      if len(payloads) == 1:
        return float(stats["mean"])
      values = np.array([float(stats["mean"])])
    parts.append(values)
  try:
    return np.concatenate(parts, axis=0)
  except ValueError:  # per-seed shapes differ between runs
    return np.concatenate([p.reshape(-1) for p in parts])


def _without_values(payload: Mapping[str, Any]) -> bool:
  """A results.json from before per-seed values were stored (a per-seed measure
  with only mean/std/n)."""
  return any("values" not in stats and int(stats.get("n", 1)) > 1
             for stats in payload["measured"].values())


def pool(payloads: Sequence[Mapping[str, Any]], checks: Iterable[Any] = (),
         quick: bool = False) -> dict[str, Any]:
  """Statistics and verdict of runs of one config, from their pooled per-seed values.

  Returns ``{"measured": {name: {"mean", "std", "n", "values"?}}, "verdict",
  "passed", "checks", "seeds_holding"}``; without checks the verdict is None.
  One run written before per-seed values were stored keeps its own statistics
  and verdict; several such runs are pooled by their means.
  """
  if len(payloads) == 1 and _without_values(payloads[0]):
    only = payloads[0]  # nothing to recompute: its own statistics and verdict
    return {"measured": {k: dict(v) for k, v in only["measured"].items()},
            **{k: only.get(k) for k in VERDICT_KEYS},
            "checks": list(only.get("checks") or [])}
  names = dict.fromkeys(k for p in payloads for k in p["measured"])
  pooled = {name: pooled_values(payloads, name) for name in names}
  checks = tuple(checks)
  evaluation = (claims_lib.evaluate(checks, pooled, quick=quick) if checks and payloads
                else {"verdict": None, "passed": None, "checks": [], "seeds_holding": None})
  return {"measured": {n: results_lib.measured_stats(v) for n, v in pooled.items()},
          **{k: evaluation[k] for k in VERDICT_KEYS}}


def aggregate_point(payloads: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Mean ± std of each measured value over the pooled per-seed values of one point."""
  return pool(payloads)["measured"]


def stats_text(stats: Mapping[str, Any] | None) -> str:
  """``'0.75 ± 0.54 (n=3)'``, the mean alone for one value, ``'—'`` for none."""
  if not stats:
    return "—"
  mean, std = float(stats["mean"]), float(stats["std"])  # NaN/inf are stored as strings
  return f"{mean:.4g} ± {std:.2g} (n={stats['n']})" if stats["n"] > 1 else f"{mean:.4g}"


def verdict_text(verdict: str, seeds_holding: Mapping[str, int] | None, quick: bool) -> str:
  """``'FAIL (2/3 seeds) (quick)'``: the verdict, on how many seeds every claim
  check holds, and whether the runs were quick."""
  seeds = f" ({seeds_holding['k']}/{seeds_holding['n']} seeds)" if seeds_holding else ""
  return f"{verdict}{seeds}" + (" (quick)" if quick else "")


def pooled_verdict_text(pooled: Mapping[str, Any], runs_passed: Iterable[bool | None],
                        quick: bool) -> str:
  """The pooled verdict (``pool``) or, for a paper without checks, how many runs
  passed by their own ``passed`` (``'2/3 runs pass'``, ``'n/a'``)."""
  if pooled["verdict"]:
    return verdict_text(pooled["verdict"], pooled.get("seeds_holding"), quick)
  passes = [p for p in runs_passed if p is not None]
  return f"{sum(passes)}/{len(passes)} runs pass" if passes else "n/a"
