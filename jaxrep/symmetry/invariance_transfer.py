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
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


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
