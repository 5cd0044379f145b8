r"""Centered kernel alignment (CKA) between two representations of the same inputs.

Kornblith, Norouzi, Lee, Hinton. "Similarity of Neural Network Representations
Revisited", ICML 2019. With Gram matrices K = k(X), L = k(Y) of n examples
(X: (n, d₁), Y: (n, d₂)) and the centering matrix H = I − 11ᵀ/n,

    HSIC(K, L) = tr(K H L H) / (n − 1)²                      (biased)
    CKA(K, L)  = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L)).

The unbiased HSIC estimator (Song et al., JMLR 2012), with K̃, L̃ the Gram
matrices with zeroed diagonals, is

    HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3)).

Linear CKA uses k(x, x') = ⟨x, x'⟩ and is invariant to orthogonal transforms
and isotropic scaling of either representation (not to arbitrary invertible
linear maps). RBF CKA uses k(x, x') = exp(−‖x − x'‖² / (2σ²)); with
``bandwidth=None`` σ² = threshold² · median of the squared pairwise distances
(diagonal included, as in the authors' notebook), which keeps it invariant to
isotropic scaling as well.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def linear_gram(x: jax.Array) -> jax.Array:
  """K = X Xᵀ; x (n, d) → (n, n)."""
  chex.assert_rank(x, 2)
  return x @ x.T


def squared_distances(x: jax.Array) -> jax.Array:
  """D_ij = ‖x_i − x_j‖², clipped at 0; x (n, d) → (n, n)."""
  chex.assert_rank(x, 2)
  sq = jnp.sum(x**2, axis=1)
  return jnp.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)


def median_bandwidth(x: jax.Array, threshold: float = 1.0) -> jax.Array:
  """σ = threshold · √median_ij ‖x_i − x_j‖² (the median heuristic)."""
  return threshold * jnp.sqrt(jnp.median(squared_distances(x)))


def rbf_gram(x: jax.Array, bandwidth: float | jax.Array | None = None,
             threshold: float = 1.0) -> jax.Array:
  """K_ij = exp(−‖x_i − x_j‖² / (2σ²)); σ from ``median_bandwidth`` when None."""
  sigma = median_bandwidth(x, threshold) if bandwidth is None else bandwidth
  return jnp.exp(-squared_distances(x) / (2 * sigma**2))


def center_gram(gram: jax.Array) -> jax.Array:
  """H K H with H = I − 11ᵀ/n."""
  chex.assert_rank(gram, 2)
  gram = gram - gram.mean(axis=0, keepdims=True)
  return gram - gram.mean(axis=1, keepdims=True)


def hsic(gram_x: jax.Array, gram_y: jax.Array, unbiased: bool = False) -> jax.Array:
  """HSIC of two (n, n) Gram matrices (biased, or Song et al.'s unbiased; n > 3)."""
  chex.assert_equal_shape([gram_x, gram_y])
  n = gram_x.shape[0]
  if not unbiased:
    return jnp.sum(center_gram(gram_x) * center_gram(gram_y)) / (n - 1) ** 2
  off = 1.0 - jnp.eye(n, dtype=gram_x.dtype)
  kx, ky = gram_x * off, gram_y * off
  trace = jnp.sum(kx * ky)
  sums = kx.sum() * ky.sum() / ((n - 1) * (n - 2))
  cross = 2.0 / (n - 2) * jnp.sum(kx.sum(0) * ky.sum(0))
  return (trace + sums - cross) / (n * (n - 3))


def cka_from_grams(gram_x: jax.Array, gram_y: jax.Array, unbiased: bool = False) -> jax.Array:
  """CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) HSIC(L, L))."""
  return hsic(gram_x, gram_y, unbiased) / jnp.sqrt(
      hsic(gram_x, gram_x, unbiased) * hsic(gram_y, gram_y, unbiased))


def linear_cka(x: jax.Array, y: jax.Array, unbiased: bool = False) -> jax.Array:
  """Linear CKA between x (n, d₁) and y (n, d₂) of the same n inputs."""
  chex.assert_equal_shape_prefix([x, y], 1)
  return cka_from_grams(linear_gram(x), linear_gram(y), unbiased)


def linear_cka_features(x: jax.Array, y: jax.Array) -> jax.Array:
  """Biased linear CKA in feature space, O(n d²):
  ‖Ỹᵀ X̃‖²_F / (‖X̃ᵀ X̃‖_F ‖Ỹᵀ Ỹ‖_F) with column-centred X̃, Ỹ."""
  chex.assert_equal_shape_prefix([x, y], 1)
  x = x - x.mean(0)
  y = y - y.mean(0)
  return jnp.sum((y.T @ x) ** 2) / (
      jnp.linalg.norm(x.T @ x) * jnp.linalg.norm(y.T @ y))


def rbf_cka(x: jax.Array, y: jax.Array, bandwidth_x: float | None = None,
            bandwidth_y: float | None = None, threshold: float = 1.0,
            unbiased: bool = False) -> jax.Array:
  """RBF-kernel CKA; each bandwidth defaults to its median heuristic."""
  chex.assert_equal_shape_prefix([x, y], 1)
  return cka_from_grams(rbf_gram(x, bandwidth_x, threshold),
                        rbf_gram(y, bandwidth_y, threshold), unbiased)
