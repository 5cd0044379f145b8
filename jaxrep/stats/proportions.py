r"""Exact one-sided confidence bounds for a binomial proportion (Clopper–Pearson, 1934).

For k successes in n trials, the one-sided (1 − α) bounds invert the binomial tail:

  lower = B⁻¹(α; k, n − k + 1)       (0 when k = 0),
  upper = B⁻¹(1 − α; k + 1, n − k)   (1 when k = n),

with B⁻¹ the Beta quantile. P(p ≥ lower) ≥ 1 − α for every true p (and likewise for
upper), so "lower ≥ p₀" is a level-α test of p < p₀. Host-side (NumPy/SciPy): these
decide claims after a run, they are not traced.
"""
from __future__ import annotations

from scipy import stats as sps


def _check(successes: int, trials: int, confidence: float) -> None:
  if trials <= 0 or not 0 <= successes <= trials:
    raise ValueError(f"need 0 <= successes <= trials, trials > 0; got {successes}/{trials}")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def clopper_pearson_lower(successes: int, trials: int, confidence: float = 0.95) -> float:
  """One-sided lower (``confidence``) bound on p from ``successes`` of ``trials``."""
  _check(successes, trials, confidence)
  if successes == 0:
    return 0.0
  return float(sps.beta.ppf(1 - confidence, successes, trials - successes + 1))


def clopper_pearson_upper(successes: int, trials: int, confidence: float = 0.95) -> float:
  """One-sided upper (``confidence``) bound on p from ``successes`` of ``trials``."""
  _check(successes, trials, confidence)
  if successes == trials:
    return 1.0
  return float(sps.beta.ppf(confidence, successes + 1, trials - successes))
