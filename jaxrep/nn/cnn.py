"""A small VGG-style CNN for 32×32 images: the model of the CPU step benchmark.

Two stages of two 3×3 convolutions (ReLU) with 2×2 average pooling after each
stage, global average pooling and a linear classifier. ``conv`` picks the layer
class (``jaxrep.nn.Conv`` by default, or ``flax.linen.Conv``); both have the
same parameters.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.nn.conv import Conv


def average_pool_2x2(x: jax.Array) -> jax.Array:
  """(n, h, w, c) → (n, h/2, w/2, c), the mean of each 2×2 block.

  Written as four strided slices: an elementwise loop for XLA's CPU backend
  (a reduce over a reshape is handed to a library call that materialises
  broadcast operands, ~3× slower here).
  """
  return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


class SmallCNN(nn.Module):
  """(n, h, w, c) images → (n, num_classes) logits."""

  features: Sequence[int] = (32, 32, 64, 64)
  num_classes: int = 10
  conv: Any = Conv

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, features in enumerate(self.features):
      x = nn.relu(self.conv(features, (3, 3), padding="SAME")(x))
      if i % 2 == 1:
        x = average_pool_2x2(x)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def conv_flops_per_example(features: Sequence[int] = (32, 32, 64, 64), in_channels: int = 3,
                           size: int = 32) -> tuple[int, int]:
  """Multiply-add FLOPs (2 per MAC) of SmallCNN's convolutions and dense layer:
  (forward, forward + backward). The backward is 2× the forward per layer
  (input and kernel gradients) except the first layer, which needs no input
  gradient."""
  forward = backward = 0
  channels = in_channels
  for i, out in enumerate(features):
    flops = 2 * size * size * 9 * channels * out
    forward += flops
    backward += flops if i == 0 else 2 * flops
    channels = out
    if i % 2 == 1:
      size //= 2
  dense = 2 * channels * 10
  return forward + dense, forward + backward + 3 * dense
