r"""Moment probing: a linear classifier on first- and second-order token moments.

Gao, Wang, Ding, Wang, Hu, Li. "Tuning Pre-trained Model via Moment Probing",
ICCV 2023 (official code: mingzeG/Moment-Probing, ``models/representation/MP.py``).

A frozen backbone gives a first-order feature c (the CLS token, or the mean
token) and tokens X ∈ R^{N×D}. Moment probing (MP) predicts

    logits = ½ [ W₁ c + b₁ + W₂ vec(MHC³(X)) + b₂ ],

so with the second-order branch zeroed (W₂ = 0, b₂ = 0) it is exactly half a
linear probe on c. MHC³ (multi-head convolutional cross-covariance):

1. project the tokens, X P ∈ R^{N×D'}, and split the channels into h heads
   H_1 … H_h ∈ R^{N×D'/h}; LayerNorm each token of each head (one LayerNorm,
   shared by the heads);
2. for adjacent heads ("near"), subtract from each head its global scalar mean
   (over tokens and channels, as the official code does) and take the
   cross-covariance C_i = H_iᵀ H_{i+1} / N ∈ R^{D'/h × D'/h};
3. L2-normalise each column of C_i, stack the h − 1 maps as channels, and apply
   two 3×3 stride-2 convolutions (no bias, no padding) with a GELU between;
4. flatten.

Every step treats tokens as a set (per-token LayerNorm, means and sums over
tokens), so MP is invariant to permutations of the tokens.

**A covariance-only task** (a control of this library, not the paper's): tokens
x_t ~ N(0, Σ_y) i.i.d. with Σ_c = I + ρ(e_{2c} e_{2c+1}ᵀ + e_{2c+1} e_{2c}ᵀ), so
classes share means and per-channel variances and differ only in one
cross-channel covariance: a first-order (mean-token) probe is at chance, while
the second-order branch can read it. ``gaussian_oracle_accuracy`` is the Bayes
classifier with the true Σ_c.
"""
from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.core.evaluate import accuracy
from jaxrep.nn import Conv, l2_normalize


def global_centered(heads: jax.Array) -> jax.Array:
  """H − mean(H), one scalar mean per (sample, head); heads (n, h, N, d)."""
  return heads - heads.mean(axis=(-2, -1), keepdims=True)


def cross_covariance(a: jax.Array, b: jax.Array) -> jax.Array:
  """aᵀ b / N for token matrices a (…, N, d₁), b (…, N, d₂) → (…, d₁, d₂)."""
  chex.assert_equal_shape_prefix([a, b], a.ndim - 1)
  return jnp.einsum("...ni,...nj->...ij", a, b) / a.shape[-2]


class MHC3(nn.Module):
  """Multi-head convolutional cross-covariance: tokens (n, N, D) → (n, F)."""

  hidden_dim: int = 128
  num_heads: int = 4

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    chex.assert_rank(tokens, 3)
    if self.hidden_dim % self.num_heads or self.num_heads < 2:
      raise ValueError(f"hidden_dim={self.hidden_dim} must split into num_heads="
                       f"{self.num_heads} ≥ 2 equal heads")
    n, num_tokens, _ = tokens.shape
    head_dim = self.hidden_dim // self.num_heads
    x = nn.Dense(self.hidden_dim, name="proj")(tokens)
    heads = x.reshape(n, num_tokens, self.num_heads, head_dim).transpose(0, 2, 1, 3)
    heads = global_centered(nn.LayerNorm(name="head_norm")(heads))
    maps = l2_normalize(cross_covariance(heads[:, :-1], heads[:, 1:]), axis=-2)  # unit columns
    chex.assert_shape(maps, (n, self.num_heads - 1, head_dim, head_dim))
    h = maps.transpose(0, 2, 3, 1)
    channels = self.num_heads - 1
    h = Conv(channels, (3, 3), strides=2, padding="VALID", use_bias=False)(h)
    h = Conv(channels, (3, 3), strides=2, padding="VALID", use_bias=False)(nn.gelu(h))
    return h.transpose(0, 3, 1, 2).reshape(n, -1)


class MomentProbe(nn.Module):
  """logits = ½[first_order(c) + second_order(MHC³(X))]; c (n, D), X (n, N, D)."""

  num_classes: int
  hidden_dim: int = 128
  num_heads: int = 4

  @nn.compact
  def __call__(self, first_order: jax.Array, tokens: jax.Array) -> jax.Array:
    chex.assert_rank([first_order, tokens], [2, 3])
    linear = nn.Dense(self.num_classes, name="first_order")(first_order)
    moments = MHC3(self.hidden_dim, self.num_heads, name="mhc3")(tokens)
    return 0.5 * (linear + nn.Dense(self.num_classes, name="second_order")(moments))


class LinearProbe(nn.Module):
  """logits = W c + b on the first-order feature (the baseline MP extends)."""

  num_classes: int

  @nn.compact
  def __call__(self, first_order: jax.Array, tokens: jax.Array | None = None) -> jax.Array:
    del tokens
    return nn.Dense(self.num_classes, name="first_order")(first_order)


def split_cls(tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(CLS token (n, D), the other tokens (n, N, D)) from tokens (n, 1 + N, D)."""
  chex.assert_rank(tokens, 3)
  return tokens[:, 0], tokens[:, 1:]


def class_covariances(num_classes: int, channels: int, rho: float) -> jax.Array:
  """Σ_c = I + ρ(e_{2c} e_{2c+1}ᵀ + e_{2c+1} e_{2c}ᵀ): (K, d, d)."""
  eye = jnp.eye(channels)
  pairs = jnp.arange(num_classes)
  bump = (jax.nn.one_hot(2 * pairs, channels)[:, :, None]
          * jax.nn.one_hot(2 * pairs + 1, channels)[:, None, :])
  return eye + rho * (bump + bump.transpose(0, 2, 1))


def covariance_tokens(key: jax.Array, num: int, num_tokens: int, covariances: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Tokens (num, N, d) ~ N(0, Σ_y) i.i.d. with y uniform over classes; labels (num,)."""
  key_y, key_z = jax.random.split(key)
  num_classes, d, _ = covariances.shape
  y = jax.random.randint(key_y, (num,), 0, num_classes)
  roots = jnp.linalg.cholesky(covariances)
  z = jax.random.normal(key_z, (num, num_tokens, d))
  return jnp.einsum("nij,ntj->nti", roots[y], z), y


def gaussian_oracle_accuracy(tokens: jax.Array, y: jax.Array, covariances: jax.Array
                             ) -> jax.Array:
  """Accuracy of the Bayes classifier argmax_c Σ_t log N(x_t; 0, Σ_c) (uniform prior)."""
  inv = jnp.linalg.inv(covariances)
  _, logdet = jnp.linalg.slogdet(covariances)
  loglik = (-0.5 * jnp.einsum("nti,cij,ntj->nc", tokens, inv, tokens)
            - 0.5 * tokens.shape[1] * logdet[None, :])
  return accuracy(loglik, y)
