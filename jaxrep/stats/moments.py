r"""Moment-matching tests against the standard Gaussian, via Hermite polynomials.

The moment-matching tester of testable learning (Rubinfeld & Vasilyan, STOC
2023; Gollakota, Klivans & Kothari, "A Moment-Matching Approach to Testable
Learning and a New Characterization of Rademacher Complexity", STOC 2023) checks
that every empirical moment of degree ≤ k is close to its value under N(0, I_d).
Here the moments are taken in the orthonormal Hermite basis, which makes the
null distribution of every statistic the same:

    h_j(t) = He_j(t) / √(j!),   He_{j+1}(t) = t He_j(t) − j He_{j−1}(t),
    H_α(x) = Π_c h_{α_c}(x_c)   for a multi-index α ∈ ℕ^d, |α| = Σ_c α_c,

and E_{N(0,I)}[H_α H_β] = 1[α = β], so E[H_α] = 0 for |α| ≥ 1 (every Gaussian
moment of degree ≤ k holds iff all these vanish).

Weighted statistics cover the conditional and label-aware tests of the
tester-learner for halfspaces: with weights w_i (a band indicator, or the
label times it), the moment and its standard error are

    m̂_α = Σ_i w_i H_α(x_i) / Σ_i |w_i|,   se = √(Σ_i w_i²) / Σ_i |w_i|,

exact under H0 when the x_i are i.i.d. N(0, I) and independent of the weights
(then z_α = m̂_α / se has mean 0 and variance 1, and the z_α are uncorrelated).
A test of accuracy τ rejects when some |m̂_α| > τ + c·se, with c the Šidák
critical value for M two-sided statistics at family-wise level a:
c = Φ⁻¹(1 − (1 − (1 − a)^{1/M}) / 2) (τ = 0 is the plain size-a test).

Sizes are static; vmap over trials.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats


class MomentTest(NamedTuple):
  """Per-statistic moments, standard errors, z-scores; the test's verdict."""

  moments: jax.Array      # (M,) m̂_α
  std_errors: jax.Array   # () or (M,) se
  z_scores: jax.Array     # (M,) m̂_α / se
  threshold: float        # c (Šidák critical value)
  reject: jax.Array       # () bool


def normalized_hermite(t: jax.Array, degree: int) -> jax.Array:
  """h_0(t), …, h_degree(t) with h_j = He_j/√(j!); shape t.shape + (degree + 1,)."""
  values = [jnp.ones_like(t), t]
  for j in range(1, degree):
    values.append(t * values[j] - j * values[j - 1])
  values = values[: degree + 1]
  scale = jnp.asarray([1.0 / math.sqrt(math.factorial(j)) for j in range(degree + 1)],
                      dtype=t.dtype)
  return jnp.stack(values, axis=-1) * scale


def hermite_multi_indices(dim: int, max_degree: int, min_degree: int = 1
                          ) -> tuple[np.ndarray, np.ndarray]:
  """All multi-indices α ∈ ℕ^dim with min_degree ≤ |α| ≤ max_degree, sparsely.

  Returns (coords, powers), each (M, max(max_degree, 1)) int: α_c = powers[i, j]
  at c = coords[i, j], padded with power 0 (h_0 = 1). Ordered by degree.
  """
  coords, powers = [], []
  width = max(max_degree, 1)
  for degree in range(min_degree, max_degree + 1):
    for combo in itertools.combinations_with_replacement(range(dim), degree):
      counts = {c: combo.count(c) for c in sorted(set(combo))}
      cs = list(counts) + [0] * (width - len(counts))
      ps = list(counts.values()) + [0] * (width - len(counts))
      coords.append(cs)
      powers.append(ps)
  return np.asarray(coords, np.int32).reshape(-1, width), np.asarray(powers, np.int32).reshape(-1, width)


def num_multi_indices(dim: int, max_degree: int, min_degree: int = 1) -> int:
  """M = #{α : min_degree ≤ |α| ≤ max_degree} = C(d+k, k) − C(d+k₀−1, k₀−1)."""
  below = math.comb(dim + min_degree - 1, min_degree - 1) if min_degree > 0 else 0
  return math.comb(dim + max_degree, max_degree) - below


def hermite_features(x: jax.Array, max_degree: int, min_degree: int = 1) -> jax.Array:
  """H_α(x_i) for every multi-index, shape (n, M); for small n·M only."""
  chex.assert_rank(x, 2)
  coords, powers = hermite_multi_indices(x.shape[1], max_degree, min_degree)
  table = normalized_hermite(x, max_degree)                      # (n, d, k+1)
  return jnp.prod(table[:, coords, powers], axis=-1)            # (n, M)


def weighted_hermite_sums(x: jax.Array, weights: jax.Array, max_degree: int,
                          min_degree: int = 1, chunk_size: int = 1024) -> jax.Array:
  """Σ_i w_i H_α(x_i) for every α, shape (M,), in chunks of rows (bounded memory)."""
  chex.assert_rank(x, 2)
  chex.assert_shape(weights, x.shape[:1])
  n, d = x.shape
  coords, powers = hermite_multi_indices(d, max_degree, min_degree)
  chunk = min(chunk_size, n)
  pad = (-n) % chunk
  xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, d)
  ws = jnp.pad(weights, (0, pad)).reshape(-1, chunk)

  def add(total, block):
    xb, wb = block
    table = normalized_hermite(xb, max_degree)
    feats = jnp.prod(table[:, coords, powers], axis=-1)
    return total + wb @ feats, None

  total, _ = jax.lax.scan(add, jnp.zeros(coords.shape[0], x.dtype), (xs, ws))
  return total


def sidak_threshold(num_statistics: int, level: float) -> float:
  """c with P(max_{j≤M} |Z_j| > c) = level for M independent N(0, 1)."""
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level}")
  per_test = -math.expm1(math.log1p(-level) / num_statistics)
  return float(scipy_stats.norm.isf(per_test / 2.0))


def moment_matching_test(x: jax.Array, max_degree: int, level: float, *,
                         weights: jax.Array | None = None, tolerance: float = 0.0,
                         min_degree: int = 1) -> MomentTest:
  """Tests E[w H_α(x)] / E|w| = 0 (within ``tolerance``) for min_degree ≤ |α| ≤ max_degree.

  ``x``: (n, d) samples; ``weights``: (n,) (default all ones: the global test).
  Rejects when max_α (|m̂_α| − tolerance) / se > c(level, M).
  """
  chex.assert_rank(x, 2)
  if weights is None:
    weights = jnp.ones(x.shape[0], x.dtype)
  sums = weighted_hermite_sums(x, weights, max_degree, min_degree)
  mass = jnp.maximum(jnp.sum(jnp.abs(weights)), 1e-12)
  moments = sums / mass
  std_error = jnp.sqrt(jnp.maximum(jnp.sum(weights ** 2), 1e-12)) / mass
  threshold = sidak_threshold(sums.shape[0], level)
  reject = jnp.any(jnp.abs(moments) > tolerance + threshold * std_error)
  return MomentTest(moments, std_error, moments / std_error, threshold, reject)

