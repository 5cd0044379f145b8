"""Small encoders for 1-D signals (MNIST-1D) shared by the probe experiments.

Every module maps x (n, length) to features with ``apply(params, x)``:

* ``MLPEncoder``: Dense-ReLU stack then a linear latent layer → (n, latent_dim);
* ``CNNEncoder1D``: strided 1-D convolutions (the MNIST-1D authors' ConvBase
  geometry, kernels 5, 3, 3, stride 2) then a linear latent layer → (n, latent_dim);
* ``TinyTransformer``: patch tokens + a CLS token through pre-LayerNorm
  transformer blocks; ``__call__`` gives class logits from the CLS token and
  ``method=TinyTransformer.tokens`` gives all final tokens (n, 1 + T, dim),
  CLS first.

``standardized_mnist1d`` loads MNIST-1D as these encoders are trained on it.

The latent layers are linear (no final non-linearity), so latents are not
confined to the positive orthant and cosine similarities between them span
[−1, 1].
"""
from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep import data


class MLPEncoder(nn.Module):
  """x (n, L) → (n, latent_dim)."""

  latent_dim: int = 64
  hidden: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 2)
    h = x
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    return nn.Dense(self.latent_dim)(h)


class CNNEncoder1D(nn.Module):
  """x (n, L) → (n, latent_dim) through strided convolutions."""

  latent_dim: int = 64
  channels: int = 32
  kernels: Sequence[int] = (5, 3, 3)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 2)
    h = x[..., None]
    for kernel in self.kernels:
      h = nn.relu(nn.Conv(self.channels, (kernel,), strides=2, padding=1)(h))
    return nn.Dense(self.latent_dim)(h.reshape(h.shape[0], -1))


class TransformerBlock(nn.Module):
  """Pre-LN block: t + MHA(LN(t)), then t + MLP(LN(t)); t (n, T, dim)."""

  num_heads: int = 4
  mlp_ratio: int = 2

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    dim = t.shape[-1]
    h = nn.LayerNorm()(t)
    t = t + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, h)
    h = nn.LayerNorm()(t)
    h = nn.Dense(dim)(nn.gelu(nn.Dense(self.mlp_ratio * dim)(h)))
    return t + h


class TinyTransformer(nn.Module):
  """Patch tokens (a Conv1D with kernel ``patch_size`` and stride ``patch_stride``,
  'SAME' padding) plus a CLS token and learned positions, ``depth`` blocks and a
  final LayerNorm; logits from the CLS token. Learned positions for up to
  ``max_tokens`` tokens (CLS included)."""

  num_classes: int = 10
  dim: int = 64
  depth: int = 2
  num_heads: int = 4
  patch_size: int = 4
  patch_stride: int = 2
  max_tokens: int = 64

  def setup(self):
    self.embed = nn.Conv(self.dim, (self.patch_size,), strides=self.patch_stride,
                         padding="SAME")
    self.cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.dim))
    self.positions = self.param("positions", nn.initializers.normal(0.02),
                                (1, self.max_tokens, self.dim))
    self.blocks = [TransformerBlock(self.num_heads) for _ in range(self.depth)]
    self.norm = nn.LayerNorm()
    self.head = nn.Dense(self.num_classes)

  def tokens(self, x: jax.Array) -> jax.Array:
    """Final tokens (n, 1 + T, dim) with the CLS token at index 0."""
    chex.assert_rank(x, 2)
    patches = self.embed(x[..., None])
    n, num_patches, _ = patches.shape
    if num_patches + 1 > self.max_tokens:
      raise ValueError(f"{num_patches} patches + CLS exceed max_tokens={self.max_tokens}")
    t = jnp.concatenate([jnp.broadcast_to(self.cls, (n, 1, self.dim)), patches], 1)
    t = t + self.positions[:, :num_patches + 1]
    for block in self.blocks:
      t = block(t)
    return self.norm(t)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.tokens(x)[:, 0])


def standardized_mnist1d(data_dir: str | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(x_train, y_train, x_test, y_test), signals (n, 40) z-scored by the training
  set's global mean and std."""
  train_set = data.load("mnist1d", "train", data_dir)
  test_set = data.load("mnist1d", "test", data_dir)
  mean, std = train_set.x.mean(), train_set.x.std()
  return ((train_set.x - mean) / std, train_set.y, (test_set.x - mean) / std, test_set.y)
