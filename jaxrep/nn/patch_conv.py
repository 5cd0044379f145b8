"""Small "same"-padded convolutions written as unfold + one matmul.

out[j] = W · [x_pad[s·j + o]]_{o ∈ kernel offsets} + b, with k//2 zeros of padding
on each side of every spatial axis and ⌈L/s⌉ outputs per axis. The same map as
``flax.linen.Conv(features, kernel, strides=s, padding=[(k//2, k//2), ...])``;
for the tiny shapes of the synthetic experiments (a few channels, vmapped over
seeds) XLA's CPU convolution is ~100× slower than this matmul.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def unfold_patches(h: jax.Array, kernel: Sequence[int], stride: int) -> jax.Array:
  """(n, *spatial, c) → (n, *⌈spatial/s⌉, c·∏kernel): the zero-padded k-neighbourhood of
  every output position, offsets in row-major order, channels fastest."""
  spatial = h.shape[1:-1]
  if len(kernel) != len(spatial):
    raise ValueError(f"kernel {tuple(kernel)} does not match the {len(spatial)} spatial "
                     f"axes of an input of shape {h.shape}")
  out = [-(-size // stride) for size in spatial]
  padded = jnp.pad(h, ((0, 0),) + tuple((k // 2, k // 2) for k in kernel) + ((0, 0),))
  patches = []
  for offset in itertools.product(*(range(k) for k in kernel)):
    index = tuple(slice(o, o + stride * m, stride) for o, m in zip(offset, out))
    patches.append(padded[(slice(None),) + index])
  return jnp.concatenate(patches, axis=-1)


class PatchConv1D(nn.Module):
  """(n, length, c) → (n, ⌈length/stride⌉, features)."""

  features: int
  kernel: int
  stride: int = 1

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    return nn.Dense(self.features)(unfold_patches(h, (self.kernel,), self.stride))


class PatchConv2D(nn.Module):
  """(n, rows, cols, c) → (n, ⌈rows/stride⌉, ⌈cols/stride⌉, features); a k×k kernel."""

  features: int
  stride: int = 1
  kernel: int = 3

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    return nn.Dense(self.features)(unfold_patches(h, (self.kernel, self.kernel), self.stride))
