r"""Conditioning embeddings shared by the denoisers: time, position, class (with a null class).

* ``sinusoidal_embedding`` (Vaswani et al. 2017, as in DDPM and DiT): for
  frequencies ω_j = P^{−j/(D/2)}, j < D/2, e(τ) = [cos(ω τ), sin(ω τ)] with
  τ = ``scale``·t (t ∈ [0, 1] → τ ∈ [0, 1000], DDPM's step range).
* ``sincos_position_embedding``: fixed sin-cos embedding of each token's grid
  coordinate, D/d channels per spatial axis (DiT's 2-D embedding for d = 2).
* ``TimeEmbedding``: MLP(sinusoid(t)) (DiT's TimestepEmbedder).
* ``LabelEmbedding``: a table of num_classes + 1 rows; row ``num_classes`` is
  the null class ∅ used for classifier-free guidance, and ``label=None`` means ∅.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def sinusoidal_embedding(t: jax.Array, dim: int, scale: float = 1000.0,
                         max_period: float = 10000.0) -> jax.Array:
  """(batch,) times → (batch, dim) features [cos(ω·scale·t), sin(ω·scale·t)]."""
  chex.assert_rank(t, 1)
  half = dim // 2
  freqs = jnp.exp(-np.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = scale * t.astype(jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def sincos_position_embedding(grid: tuple[int, ...], dim: int) -> jax.Array:
  """(prod(grid), dim) fixed embedding of the tokens of a row-major grid; dim must be
  a multiple of 2·len(grid). Each axis gets dim/len(grid) sin-cos channels."""
  per_axis = dim // len(grid)
  if per_axis * len(grid) != dim or per_axis % 2:
    raise ValueError(f"dim {dim} must be a multiple of 2·{len(grid)}")
  coords = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in grid], indexing="ij")
  parts = [sinusoidal_embedding(c.reshape(-1), per_axis, scale=1.0) for c in coords]
  return jnp.concatenate(parts, axis=-1)


class TimeEmbedding(nn.Module):
  """t (batch,) → (batch, features): Dense-SiLU-Dense on the sinusoidal embedding."""

  features: int
  frequency_dim: int = 256
  scale: float = 1000.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    init = nn.initializers.normal(0.02)
    h = sinusoidal_embedding(t, self.frequency_dim, self.scale)
    h = nn.silu(nn.Dense(self.features, kernel_init=init, dtype=self.dtype)(h))
    return nn.Dense(self.features, kernel_init=init, dtype=self.dtype)(h)


class LabelEmbedding(nn.Module):
  """labels (batch,) in {0, …, num_classes} (num_classes = ∅) → (batch, features)."""

  num_classes: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, label: jax.Array | None, batch: int) -> jax.Array:
    if label is None:
      label = jnp.full((batch,), self.num_classes, jnp.int32)
    chex.assert_shape(label, (batch,))
    table = nn.Embed(self.num_classes + 1, self.features,
                     embedding_init=nn.initializers.normal(0.02), dtype=self.dtype)
    return table(label)
