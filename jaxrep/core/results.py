"""Measured values and the ``results.json`` every experiment writes.

Schema (a stable contract; the scoreboard and other tools read it)::

  {"paper_id", "claim", "passed": true | false | null (quick mode, or not comparable),
   "verdict": "PASS" | "FAIL" | "NOT COMPARABLE" | null (no checks, quick),
   "checks": [{"measure", "op", "threshold", "aggregate", "source", "role", "value",
               "holds", "margin", "mean", "std", "n", "seeds_holding", "missing"}],
   "seeds_holding": {"k", "n"} | null,
   "measured": {name: {"mean", "std", "n", "values"?}}, "seeds", "runtime_s",
   "config", "quick", "details", "headline", "date",
   "env": {"devices", "device_kind", "platform", "processes", "mesh", "fits",
           "git_sha", "git_dirty", "versions", "python", "system"}}

``env`` comes from ``experiment.Context.env`` (``provenance()`` for the code:
git SHA and dirty flag, null outside a git checkout, and package versions).
``measured[name]["values"]`` holds the per-seed values themselves (nested lists,
NaN/inf as strings) when the measure is a per-seed array, and is absent for a
scalar, so runs of one config (one run per seed, or one program) can be pooled
and their statistics and checks recomputed exactly (``jaxrep sweep``,
``jaxrep collect``). Results written before it have ``mean``/``std``/``n`` only.

``checks``, ``verdict`` and ``seeds_holding`` come from ``jaxrep.core.claims``
(the paper's checks in ``jaxrep/papers.toml``); in quick mode they are computed
too but ``passed`` stays null.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import re
import subprocess
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


def measured_stats(values: Any) -> dict[str, Any]:
  """``summarize(values)`` plus, for a per-seed array, the ``values`` themselves
  (as float64 nested lists), so pooled runs can recompute every statistic."""
  stats: dict[str, Any] = dict(summarize(values))
  array = np.asarray(values, dtype=np.float64)
  if array.ndim >= 1:
    stats["values"] = to_jsonable(array)
  return stats


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


VERSIONED_PACKAGES = ("jaxrep", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                      "numpy")


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except Exception:  # not installed, or broken metadata
    return None


def git_state(root: str) -> tuple[str | None, bool | None]:
  """``(commit SHA, dirty)`` of the git checkout whose top folder is ``root``.

  ``git rev-parse HEAD`` and ``git status --porcelain`` (untracked files count
  as dirty, ignored ones do not); ``(None, None)`` when ``root`` is not the top
  of a git checkout (e.g. a package installed into a virtual environment inside
  another repository) or git is missing or fails. Never raises.
  """
  env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock

  def git(*args: str) -> str:
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                          timeout=10, env=env, check=True).stdout.strip()

  try:
    if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(root):
      return None, None
    sha = git("rev-parse", "HEAD")
    if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", sha):
      return None, None
  except Exception:  # no git, not a checkout, no commit yet, timeout
    return None, None
  try:
    return sha, bool(git("status", "--porcelain"))
  except Exception:
    return sha, None


@functools.lru_cache(maxsize=1)
def package_git_state() -> tuple[str | None, bool | None]:
  """``git_state`` of the checkout the ``jaxrep`` package is in (once per process)."""
  package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return git_state(os.path.dirname(package_dir))


def provenance() -> dict[str, Any]:
  """What code ran: git SHA and dirty flag (None outside a git checkout),
  package versions, Python version and the operating system."""
  sha, dirty = package_git_state()
  return {"git_sha": sha, "git_dirty": dirty,
          "versions": {p: _version(p) for p in VERSIONED_PACKAGES},
          "python": platform.python_version(), "system": platform.platform()}


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
      "measured": {name: measured_stats(v) for name, v in measured.items()},
      "seeds": list(seeds),
      "runtime_s": float(runtime_s),
      "config": dict(config),
      "quick": bool(quick),
      "details": dict(details or {}),
      "headline": list(headline) or list(measured)[:4],
  }


def format_duration(seconds: float) -> str:
  """``75 -> '1m15s'``."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  minutes, seconds = divmod(seconds, 60)
  if minutes < 60:
    return f"{minutes}m{seconds:02d}s"
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m"
