r"""Kernels and kernel dependence measures: the library's one home for them.

For samples x_1..x_n (rows of X (n, d)) and H = I − 11ᵀ/n:

* Linear kernel K_ij = ⟨x_i, y_j⟩.
* Gaussian (RBF) kernel K_ij = exp(−‖x_i − y_j‖² / (2σ²)).
* Median heuristic for σ, two conventions (one name each):
      ``median_bandwidth``                σ = √ median_{i<j} ‖x_i − x_j‖²
        (the n(n−1)/2 distinct pairs; Gretton et al., NIPS 2008; equal to the
        median distance when the number of pairs is odd);
      ``median_bandwidth_with_diagonal``  σ = √ median_{i,j} ‖x_i − x_j‖²
        (all n² entries, the n zeros of the diagonal included; Kornblith et
        al.'s CKA notebook), smaller than the first.
* Centring: K̃ = H K H (idempotent: H is a projection).
* HSIC (Gretton et al., ALT 2005), biased V-statistic
      HSIC_b = tr(K̃ L̃) / n²,
  and the unbiased U-statistic (Song et al., JMLR 2012), with K, L of zero diagonal,
      HSIC_u = [tr(KL) + 1ᵀK1·1ᵀL1 / ((n−1)(n−2)) − 2·1ᵀKL1 / (n−2)] / (n(n−3)).
  Both estimate HSIC = ‖C_XY‖²_HS, zero iff X ⊥ Y for characteristic kernels;
  E[HSIC_u] = HSIC exactly, HSIC_b is biased upwards by O(1/n).
* MMR, the maximum moment restriction (Muandet et al., NeurIPS 2020) for the
  conditional moment E[r | A] = 0 with residuals r_i ∈ R^p:
      MMR_V = (1/n²) Σ_{i,j} r_iᵀ r_j k(a_i, a_j),
      MMR_U = (1/(n(n−1))) Σ_{i≠j} r_iᵀ r_j k(a_i, a_j).
  With an integrally strictly positive definite k, MMR = 0 iff E[r | A] = 0.

Every function is pure and shape-static, so it can be vmapped over
environments, seeds and trials.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def squared_distances(x: jax.Array, y: jax.Array | None = None) -> jax.Array:
  """D_ij = ‖x_i − y_j‖², shape (n, m), for x (n, d) and y (m, d) (y = x when None);
  clipped at 0."""
  y = x if y is None else y
  chex.assert_rank([x, y], 2)
  sq = (jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2.0 * x @ y.T)
  return jnp.maximum(sq, 0.0)


def median_bandwidth(x: jax.Array) -> jax.Array:
  """σ = √ median_{i<j} ‖x_i − x_j‖² over the distinct pairs of x (n, d); shape ()."""
  n = x.shape[0]
  iu = jnp.triu_indices(n, k=1)
  return jnp.sqrt(jnp.median(squared_distances(x)[iu]))


def median_bandwidth_with_diagonal(x: jax.Array) -> jax.Array:
  """σ = √ median_{i,j} ‖x_i − x_j‖² over all n² entries of x (n, d), the zero
  diagonal included (the CKA convention); shape ()."""
  return jnp.sqrt(jnp.median(squared_distances(x)))


def linear_kernel(x: jax.Array, y: jax.Array | None = None) -> jax.Array:
  """K = X Yᵀ, shape (n, m), for x (n, d) and y (m, d) (y = x when None)."""
  y = x if y is None else y
  chex.assert_rank([x, y], 2)
  return x @ y.T


def rbf_kernel(x: jax.Array, y: jax.Array | None = None,
               bandwidth: jax.Array | float | None = None) -> jax.Array:
  """K_ij = exp(−‖x_i − y_j‖² / (2σ²)), shape (n, m); σ = ``median_bandwidth(x)``
  when ``bandwidth`` is None. Equals scikit-learn's ``rbf_kernel(x, y, gamma=1/(2σ²))``."""
  sigma = median_bandwidth(x) if bandwidth is None else bandwidth
  return jnp.exp(-squared_distances(x, y) / (2.0 * sigma**2))


def center_kernel(k: jax.Array) -> jax.Array:
  """K̃ = H K H with H = I − 11ᵀ/n, i.e. K̃_ij = K_ij − K̄_i· − K̄_·j + K̄; K (n, n)."""
  chex.assert_rank(k, 2)
  row = k.mean(0, keepdims=True)
  col = k.mean(1, keepdims=True)
  return k - row - col + k.mean()


def hsic_biased(k: jax.Array, l: jax.Array) -> jax.Array:
  """HSIC_b = tr(K H L H) / n² (V-statistic) for kernel matrices K, L (n, n); shape ()."""
  chex.assert_equal_shape([k, l])
  n = k.shape[0]
  return jnp.sum(center_kernel(k) * center_kernel(l)) / n**2


def hsic_unbiased(k: jax.Array, l: jax.Array) -> jax.Array:
  """HSIC_u, Song et al. (2012)'s U-statistic (needs n ≥ 4), K, L (n, n); shape ()."""
  chex.assert_equal_shape([k, l])
  n = k.shape[0]
  k = k * (1.0 - jnp.eye(n, dtype=k.dtype))
  l = l * (1.0 - jnp.eye(n, dtype=l.dtype))
  kl_trace = jnp.sum(k * l)
  sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
  cross = 2.0 * jnp.sum(k.sum(0) * l.sum(0)) / (n - 2)
  return (kl_trace + sums - cross) / (n * (n - 3))


def mmr(residuals: jax.Array, k_a: jax.Array, unbiased: bool = False) -> jax.Array:
  """Maximum moment restriction of residuals r (n, p) under the kernel K_A (n, n):
  MMR_V (default) or MMR_U (``unbiased=True``); shape ()."""
  n = residuals.shape[0]
  chex.assert_shape(k_a, (n, n))
  gram = (residuals @ residuals.T) * k_a
  if unbiased:
    return (gram.sum() - jnp.trace(gram)) / (n * (n - 1))
  return gram.sum() / n**2
