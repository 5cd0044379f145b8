r"""Representational invariance, measured on pairs that differ only in a transformation.

Speicher, Nanda, Gummadi. "Understanding the Role of Invariance in Transfer
Learning", TMLR 2024 (code: tillspeicher/representation-invariance-transfer).

Given features φ(x) and φ(x') of pairs (x, x') that share everything (object,
background) except a draw of the transformations T, invariance to T is how
little φ moves between the two, relative to how much it moves between
unrelated inputs. Two scores:

    cosine_invariance   = E_i cos(φ(x_i), φ(x'_i))                       ∈ [−1, 1]
    invariance_score    = 1 − E_i ‖φ(x_i) − φ(x'_i)‖ / E_i ‖φ(x_i) − φ(x_{σ(i)})‖

with σ a random permutation of the pairs (the official code's normalisation:
the distance within pairs divided by the distance to shuffled partners). Both
are 1 for an exactly T-invariant φ; the normalised score is ≈ 0 when T moves
φ as much as changing the input altogether. Transfer is measured by a linear
probe on frozen features (``jaxrep.core.evaluate``).

The protocol pieces of the official ``transforms_vs_other`` experiment, scaled
down: ``draw_transform_sets`` draws the target set A and a disjoint set B, one
type per category each ("mixed"), and ``Classifier`` is a small CNN encoder
(``ConvEncoder``, instead of a ResNet-18) with a linear pretraining head.
"""
from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.data import transforms2d as t2d
from jaxrep.nn import PatchConv2D


def cosine_invariance(features_a: jax.Array, features_b: jax.Array, eps: float = 1e-12
                      ) -> jax.Array:
  """E_i cos(a_i, b_i) for paired features (n, d)."""
  chex.assert_equal_shape([features_a, features_b])
  chex.assert_rank(features_a, 2)
  dot = jnp.sum(features_a * features_b, axis=-1)
  norms = jnp.linalg.norm(features_a, axis=-1) * jnp.linalg.norm(features_b, axis=-1)
  return jnp.mean(dot / (norms + eps))


def invariance_score(features_a: jax.Array, features_b: jax.Array, key: jax.Array,
                     eps: float = 1e-12) -> jax.Array:
  """1 − E‖a_i − b_i‖ / E‖a_i − a_σ(i)‖ with σ a uniform random permutation."""
  chex.assert_equal_shape([features_a, features_b])
  chex.assert_rank(features_a, 2)
  within = jnp.mean(jnp.linalg.norm(features_a - features_b, axis=-1))
  shuffled = features_a[jax.random.permutation(key, features_a.shape[0])]
  between = jnp.mean(jnp.linalg.norm(features_a - shuffled, axis=-1))
  return 1.0 - within / (between + eps)


# ---------------------------------------------------------------- the transfer protocol

class ConvEncoder(nn.Module):
  """Images (n, S, S, 3) in [0, 1] → features (n, 4·width): four 3×3 ReLU conv
  layers (widths w, 2w, 4w, 4w; the middle two of stride 2) and global average
  pooling."""

  width: int = 16

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = 2.0 * x - 1.0
    for factor, stride in ((1, 1), (2, 2), (4, 2), (4, 1)):
      h = nn.relu(PatchConv2D(factor * self.width, stride)(h))
    return h.mean(axis=(1, 2))


class Classifier(nn.Module):
  """``ConvEncoder`` + a linear head over ``num_classes``; ``features`` gives the
  encoder's output (what transfer probes read)."""

  width: int
  num_classes: int

  def setup(self):
    self.encoder = ConvEncoder(self.width)
    self.head = nn.Dense(self.num_classes)

  def __call__(self, x):
    return self.head(self.encoder(x))

  def features(self, x):
    return self.encoder(x)


def draw_transform_sets(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """A (target) and B (disjoint): two different types from each category."""
  rng = np.random.default_rng(seed)
  target, disjoint = [], []
  for names in t2d.CATEGORIES.values():
    first, second = rng.choice(len(names), 2, replace=False)
    target.append(names[first])
    disjoint.append(names[second])
  return tuple(target), tuple(disjoint)
