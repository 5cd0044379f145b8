r"""Kernels and kernel dependence measures shared by the causal papers.

* Gaussian (RBF) kernel k(x, y) = exp(−‖x − y‖² / (2σ²)), with the median
  heuristic σ = median_{i<j} ‖x_i − x_j‖ (Gretton et al., 2008).
* Centring: K̃ = H K H, H = I − 11ᵀ/n.
* HSIC (Gretton et al., ALT 2005), biased V-statistic
      HSIC_b = tr(K̃ L̃) / n²,
  and the unbiased U-statistic (Song et al., JMLR 2012), with K, L of zero diagonal,
      HSIC_u = [tr(KL) + 1ᵀK1·1ᵀL1 / ((n−1)(n−2)) − 2·1ᵀKL1 / (n−2)] / (n(n−3)).
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
  """‖x_i − y_j‖², shape (n, m), for x (n, d) and y (m, d); clipped at 0."""
  y = x if y is None else y
  chex.assert_rank([x, y], 2)
  sq = (jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2.0 * x @ y.T)
  return jnp.maximum(sq, 0.0)


def median_bandwidth(x: jax.Array) -> jax.Array:
  """Median heuristic σ = median_{i<j} ‖x_i − x_j‖ of x (n, d)."""
  n = x.shape[0]
  iu = jnp.triu_indices(n, k=1)
  return jnp.sqrt(jnp.median(squared_distances(x)[iu]))


def rbf_kernel(x: jax.Array, y: jax.Array | None = None,
               bandwidth: jax.Array | float | None = None) -> jax.Array:
  """exp(−‖x_i − y_j‖² / (2σ²)); σ from the median heuristic on x when None."""
  sigma = median_bandwidth(x) if bandwidth is None else bandwidth
  return jnp.exp(-squared_distances(x, y) / (2.0 * sigma**2))


def center_kernel(k: jax.Array) -> jax.Array:
  """H K H with H = I − 11ᵀ/n (K square, shape (n, n))."""
  chex.assert_rank(k, 2)
  row = k.mean(0, keepdims=True)
  col = k.mean(1, keepdims=True)
  return k - row - col + k.mean()


def hsic_biased(k: jax.Array, l: jax.Array) -> jax.Array:
  """HSIC_b = tr(K H L H) / n² for kernel matrices K, L of shape (n, n)."""
  n = k.shape[0]
  return jnp.sum(center_kernel(k) * center_kernel(l)) / n**2


def hsic_unbiased(k: jax.Array, l: jax.Array) -> jax.Array:
  """Song et al. (2012) unbiased HSIC estimator (needs n ≥ 4)."""
  n = k.shape[0]
  k = k * (1.0 - jnp.eye(n, dtype=k.dtype))
  l = l * (1.0 - jnp.eye(n, dtype=l.dtype))
  kl_trace = jnp.sum(k * l)
  sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
  cross = 2.0 * jnp.sum(k.sum(0) * l.sum(0)) / (n - 2)
  return (kl_trace + sums - cross) / (n * (n - 3))


def mmr(residuals: jax.Array, k_a: jax.Array, unbiased: bool = False) -> jax.Array:
  """Maximum moment restriction of residuals r (n, p) under the kernel K_A (n, n)."""
  n = residuals.shape[0]
  chex.assert_shape(k_a, (n, n))
  gram = (residuals @ residuals.T) * k_a
  if unbiased:
    return (gram.sum() - jnp.trace(gram)) / (n * (n - 1))
  return gram.sum() / n**2
