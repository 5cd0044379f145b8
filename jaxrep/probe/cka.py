r"""Centered kernel alignment (CKA) between two representations of the same inputs.

Kornblith, Norouzi, Lee, Hinton. "Similarity of Neural Network Representations
Revisited", ICML 2019. With Gram matrices K = k(X), L = k(Y) of n examples
(X: (n, d₁), Y: (n, d₂)),

    CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L)),

with HSIC the biased estimator tr(K H L H)/n² (H = I − 11ᵀ/n) or Song et al.'s
unbiased one (``unbiased=True``); both live in ``jaxrep.stats.kernels``. The
paper writes the biased HSIC with 1/(n − 1)²; the normalisation cancels in the
ratio.

Linear CKA uses k(x, x') = ⟨x, x'⟩ and is invariant to orthogonal transforms
and isotropic scaling of either representation (not to arbitrary invertible
linear maps). RBF CKA uses k(x, x') = exp(−‖x − x'‖² / (2σ²)); with
``bandwidth=None`` σ = threshold · ``median_bandwidth_with_diagonal`` (σ² =
threshold² · median of the n² squared pairwise distances, diagonal included, as
in the authors' notebook), which keeps it invariant to isotropic scaling as well.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrep.stats.kernels import (hsic_biased, hsic_unbiased, linear_kernel,
                                  median_bandwidth_with_diagonal, rbf_kernel)


def cka_from_grams(gram_x: jax.Array, gram_y: jax.Array, unbiased: bool = False) -> jax.Array:
  """CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) HSIC(L, L)) for (n, n) Gram matrices."""
  hsic = hsic_unbiased if unbiased else hsic_biased
  return hsic(gram_x, gram_y) / jnp.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))


def linear_cka(x: jax.Array, y: jax.Array, unbiased: bool = False) -> jax.Array:
  """Linear CKA between x (n, d₁) and y (n, d₂) of the same n inputs."""
  chex.assert_equal_shape_prefix([x, y], 1)
  return cka_from_grams(linear_kernel(x), linear_kernel(y), unbiased)


def linear_cka_features(x: jax.Array, y: jax.Array) -> jax.Array:
  """Biased linear CKA in feature space, O(n d²):
  ‖Ỹᵀ X̃‖²_F / (‖X̃ᵀ X̃‖_F ‖Ỹᵀ Ỹ‖_F) with column-centred X̃, Ỹ."""
  chex.assert_equal_shape_prefix([x, y], 1)
  x = x - x.mean(0)
  y = y - y.mean(0)
  return jnp.sum((y.T @ x) ** 2) / (
      jnp.linalg.norm(x.T @ x) * jnp.linalg.norm(y.T @ y))


def _rbf_gram(x: jax.Array, bandwidth: float | jax.Array | None, threshold: float) -> jax.Array:
  sigma = threshold * median_bandwidth_with_diagonal(x) if bandwidth is None else bandwidth
  return rbf_kernel(x, bandwidth=sigma)


def rbf_cka(x: jax.Array, y: jax.Array, bandwidth_x: float | None = None,
            bandwidth_y: float | None = None, threshold: float = 1.0,
            unbiased: bool = False) -> jax.Array:
  """RBF-kernel CKA; each bandwidth defaults to threshold · its median heuristic
  (``median_bandwidth_with_diagonal``)."""
  chex.assert_equal_shape_prefix([x, y], 1)
  return cka_from_grams(_rbf_gram(x, bandwidth_x, threshold),
                        _rbf_gram(y, bandwidth_y, threshold), unbiased)
