r"""A small DiT / SiT: a transformer denoiser on patches with adaLN-zero conditioning.

Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023;
SiT (Ma et al. 2024) is the same network trained on the linear interpolant
with velocity prediction (``parameterization.denoising_loss_fn(…,
prediction="velocity")`` on ``schedules.LinearInterpolant``).

x (batch, *spatial, C) with spatial = (L,) or (H, W) is cut into patches of
side p, embedded linearly, plus a fixed sin-cos position embedding. The
condition c = MLP(sinusoid(t)) + E[label] (E has a null row for
classifier-free guidance) modulates every block by adaLN-zero:

    (β₁, γ₁, g₁, β₂, γ₂, g₂) = W silu(c) + b,        W = b = 0 at init,
    h ← h + g₁ · Attn(LN(h)(1 + γ₁) + β₁),
    h ← h + g₂ · MLP(LN(h)(1 + γ₂) + β₂),

so each block is the identity at init; the final layer (adaLN + linear) is
zero-init too. Each block's output is sown into "intermediates" as "block_i"
(REPA-style alignment or probes: ``apply(..., mutable=["intermediates"])``).
``dtype`` is the compute dtype (parameters stay float32; output is float32).
"""
from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.diffusion.embeddings import LabelEmbedding, TimeEmbedding, sincos_position_embedding


def patchify(x: jax.Array, patch: int) -> tuple[jax.Array, tuple[int, ...]]:
  """(batch, *spatial, C) → tokens (batch, N, patch^d · C) and the token grid."""
  batch, spatial, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
  if any(n % patch for n in spatial):
    raise ValueError(f"spatial sizes {spatial} must be divisible by the patch {patch}")
  grid = tuple(n // patch for n in spatial)
  d = len(spatial)
  split = x.reshape((batch,) + sum(((g, patch) for g in grid), ()) + (channels,))
  order = (0,) + tuple(1 + 2 * i for i in range(d)) + tuple(2 + 2 * i for i in range(d))
  tokens = split.transpose(order + (2 * d + 1,))
  return tokens.reshape(batch, math.prod(grid), patch**d * channels), grid


def unpatchify(tokens: jax.Array, grid: tuple[int, ...], patch: int) -> jax.Array:
  """Inverse of ``patchify``: (batch, N, patch^d · C) → (batch, *spatial, C)."""
  batch, d = tokens.shape[0], len(grid)
  channels = tokens.shape[-1] // patch**d
  split = tokens.reshape((batch,) + grid + (patch,) * d + (channels,))
  order = (0,) + sum(((1 + i, 1 + d + i) for i in range(d)), ()) + (2 * d + 1,)
  return split.transpose(order).reshape((batch,) + tuple(g * patch for g in grid)
                                        + (channels,))


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  """x (batch, N, D) · (1 + scale) + shift, with shift, scale (batch, D)."""
  return x * (1 + scale[:, None]) + shift[:, None]


def _norm(dtype: Any) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, dtype=dtype)


class DiTBlock(nn.Module):
  """Tokens (batch, N, D), condition (batch, D) → tokens, adaLN-zero modulated."""

  num_heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
    width = x.shape[-1]
    dense = lambda n, **kw: nn.Dense(n, kernel_init=nn.initializers.xavier_uniform(),
                                     dtype=self.dtype, **kw)
    mod = nn.Dense(6 * width, kernel_init=nn.initializers.zeros, dtype=self.dtype)(nn.silu(c))
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
    h = modulate(_norm(self.dtype)(x), shift1, scale1)
    h = nn.MultiHeadDotProductAttention(self.num_heads, dtype=self.dtype,
                                        kernel_init=nn.initializers.xavier_uniform())(h, h)
    x = x + gate1[:, None] * h
    h = modulate(_norm(self.dtype)(x), shift2, scale2)
    h = dense(width)(nn.gelu(dense(int(width * self.mlp_ratio))(h), approximate=True))
    return x + gate2[:, None] * h


class DiT(nn.Module):
  """``apply(params, x, t, label=None)`` → prediction with x's shape (``out_channels``
  defaults to C). x: (batch, L, C) or (batch, H, W, C); t: (batch,) in [0, 1];
  label: (batch,) ints in {0, …, num_classes} (num_classes = null; None = null)."""

  patch_size: int = 2
  hidden: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: float = 4.0
  num_classes: int | None = None
  out_channels: int | None = None
  time_scale: float = 1000.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, label: jax.Array | None = None
               ) -> jax.Array:
    chex.assert_rank(t, 1)
    batch, channels = x.shape[0], x.shape[-1]
    if x.ndim not in (3, 4):
      raise ValueError(f"DiT takes (batch, L, C) or (batch, H, W, C), got {x.shape}")
    if self.num_classes is None and label is not None:
      raise ValueError("a label was given to a DiT without num_classes")
    tokens, grid = patchify(x.astype(self.dtype), self.patch_size)
    h = nn.Dense(self.hidden, kernel_init=nn.initializers.xavier_uniform(),
                 dtype=self.dtype)(tokens)
    h = h + sincos_position_embedding(grid, self.hidden).astype(self.dtype)[None]
    c = TimeEmbedding(self.hidden, scale=self.time_scale, dtype=self.dtype)(t)
    if self.num_classes is not None:
      c = c + LabelEmbedding(self.num_classes, self.hidden, self.dtype)(label, batch)
    for i in range(self.depth):
      h = DiTBlock(self.num_heads, self.mlp_ratio, self.dtype)(h, c)
      self.sow("intermediates", f"block_{i}", h)
    shift, scale = jnp.split(nn.Dense(2 * self.hidden, kernel_init=nn.initializers.zeros,
                                      dtype=self.dtype)(nn.silu(c)), 2, axis=-1)
    h = modulate(_norm(self.dtype)(h), shift, scale)
    out_channels = self.out_channels or channels
    out = nn.Dense(self.patch_size**len(grid) * out_channels,
                   kernel_init=nn.initializers.zeros, dtype=self.dtype)(h)
    return unpatchify(out, grid, self.patch_size).astype(jnp.float32)
