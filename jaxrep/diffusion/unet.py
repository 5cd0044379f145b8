r"""A small U-Net denoiser for 1-D (batch, L, C) and 2-D (batch, H, W, C) inputs.

Ronneberger et al. 2015 as used by DDPM (Ho et al. 2020) and improved DDPM
(Nichol & Dhariwal 2021): a convolutional encoder–decoder with skip
connections. Every ResBlock is GroupNorm → SiLU → Conv, then the conditioning
embedding e = MLP(sinusoid(t)) [+ label embedding] enters as a FiLM
h ← GN(h)(1 + γ(e)) + β(e) ("scale-shift norm"), then SiLU → Conv (zero-init),
so each block is the identity at init. Attention blocks (self-attention, and
cross-attention to a ``context`` sequence (batch, S, D) when given, as in latent
diffusion, Rombach et al. 2022) run at ``attention_levels`` and in the middle.

Levels halve the spatial size, so each spatial size must be divisible by
2^(len(features) − 1). Intermediate activations are sown into the
"intermediates" collection ("down_i", "mid", "up_i") for feature probes:
``model.apply(params, x, t, mutable=["intermediates"])``.
Mixed precision: ``dtype`` is the compute dtype (e.g. bfloat16), parameters
stay float32 and the output is float32.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.diffusion.embeddings import LabelEmbedding, TimeEmbedding


def group_norm(channels: int, dtype: Any) -> nn.GroupNorm:
  """GroupNorm with up to 8 groups (a divisor of ``channels``)."""
  return nn.GroupNorm(num_groups=math.gcd(8, channels), dtype=dtype)


class ResBlock(nn.Module):
  """x (batch, *spatial, C) and e (batch, E) → (batch, *spatial, features)."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
    kernel = (3,) * (x.ndim - 2)
    h = nn.silu(group_norm(x.shape[-1], self.dtype)(x))
    h = nn.Conv(self.features, kernel, dtype=self.dtype)(h)
    film = nn.Dense(2 * self.features, dtype=self.dtype)(nn.silu(emb))
    scale, shift = jnp.split(film.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (-1,)), 2, -1)
    h = group_norm(self.features, self.dtype)(h) * (1 + scale) + shift
    h = nn.Conv(self.features, kernel, kernel_init=nn.initializers.zeros,
                dtype=self.dtype)(nn.silu(h))
    if x.shape[-1] != self.features:
      x = nn.Dense(self.features, dtype=self.dtype)(x)
    return x + h


class AttentionBlock(nn.Module):
  """Residual self-attention over all positions, then cross-attention to ``context``
  (batch, S, D) when given; output projections zero-init (identity at init)."""

  num_heads: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
    shape, channels = x.shape, x.shape[-1]
    h = group_norm(channels, self.dtype)(x).reshape(shape[0], -1, channels)
    tokens = x.reshape(shape[0], -1, channels)
    attend = lambda: nn.MultiHeadDotProductAttention(
        self.num_heads, dtype=self.dtype, out_kernel_init=nn.initializers.zeros)
    tokens = tokens + attend()(h, h)
    if context is not None:
      chex.assert_rank(context, 3)
      q = nn.LayerNorm(dtype=self.dtype)(tokens)
      tokens = tokens + attend()(q, context.astype(self.dtype))
    return tokens.reshape(shape)


def downsample(x: jax.Array, features: int, dtype: Any) -> jax.Array:
  """Strided 3-conv: each spatial size halves."""
  ndim = x.ndim - 2
  return nn.Conv(features, (3,) * ndim, strides=(2,) * ndim, dtype=dtype)(x)


def upsample(x: jax.Array, features: int, dtype: Any) -> jax.Array:
  """Nearest-neighbour ×2 on each spatial axis, then a 3-conv."""
  for axis in range(1, x.ndim - 1):
    x = jnp.repeat(x, 2, axis=axis)
  return nn.Conv(features, (3,) * (x.ndim - 2), dtype=dtype)(x)


class UNet(nn.Module):
  """``apply(params, x, t, label=None, context=None)`` → prediction with x's shape.

  x: (batch, L, C) or (batch, H, W, C); t: (batch,) in [0, 1]; label: (batch,)
  ints in {0, …, num_classes} (num_classes = the null class; None = null);
  context: (batch, S, D) for cross-attention.
  """

  features: Sequence[int] = (32, 64)
  num_res_blocks: int = 1
  attention_levels: Sequence[int] = ()
  num_classes: int | None = None
  out_channels: int | None = None
  num_heads: int = 4
  time_scale: float = 1000.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, label: jax.Array | None = None,
               context: jax.Array | None = None) -> jax.Array:
    chex.assert_rank(t, 1)
    batch, spatial, in_channels = x.shape[0], x.shape[1:-1], x.shape[-1]
    factor = 2**(len(self.features) - 1)
    if len(spatial) not in (1, 2) or any(n % factor for n in spatial):
      raise ValueError(f"UNet takes 1-D or 2-D inputs with sizes divisible by {factor}, "
                       f"got {x.shape}")
    if self.num_classes is None and label is not None:
      raise ValueError("a label was given to a UNet without num_classes")
    dtype, width = self.dtype, self.features[0]
    emb = TimeEmbedding(4 * width, scale=self.time_scale, dtype=dtype)(t)
    if self.num_classes is not None:
      emb = emb + LabelEmbedding(self.num_classes, 4 * width, dtype)(label, batch)
    attention = lambda h: AttentionBlock(self.num_heads, dtype)(h, context)

    h = nn.Conv(width, (3,) * len(spatial), dtype=dtype)(x.astype(dtype))
    skips = []
    for i, features in enumerate(self.features):
      for _ in range(self.num_res_blocks):
        h = ResBlock(features, dtype)(h, emb)
        h = attention(h) if i in self.attention_levels else h
      self.sow("intermediates", f"down_{i}", h)
      skips.append(h)
      if i < len(self.features) - 1:
        h = downsample(h, features, dtype)
    h = ResBlock(self.features[-1], dtype)(h, emb)
    h = attention(h)
    h = ResBlock(self.features[-1], dtype)(h, emb)
    self.sow("intermediates", "mid", h)
    for i in reversed(range(len(self.features))):
      h = jnp.concatenate([h, skips.pop()], axis=-1)
      for _ in range(self.num_res_blocks):
        h = ResBlock(self.features[i], dtype)(h, emb)
        h = attention(h) if i in self.attention_levels else h
      self.sow("intermediates", f"up_{i}", h)
      if i > 0:
        h = upsample(h, self.features[i - 1], dtype)
    h = nn.silu(group_norm(h.shape[-1], dtype)(h))
    out = nn.Conv(self.out_channels or in_channels, (3,) * len(spatial),
                  kernel_init=nn.initializers.zeros, dtype=dtype)(h)
    return out.astype(jnp.float32)
