"""Representational dissimilarity matrices (RDMs) and their comparison.

Kriegeskorte, Mur & Bandettini, "Representational similarity analysis — connecting
the branches of systems neuroscience", Front. Syst. Neurosci. 2008; the rank
comparisons follow Nili et al., "A toolbox for representational similarity
analysis", PLoS Comput. Biol. 2014 (rsatoolbox).

For features X (n, d) of n stimuli from any encoder ``apply(params, x)``:

* ``rdm(X, metric)`` (n, n):  euclidean  D_ij = ‖x_i − x_j‖₂,
  correlation D_ij = 1 − r(x_i, x_j) (Pearson r across the d features),
  cosine D_ij = 1 − ⟨x_i, x_j⟩ / (‖x_i‖‖x_j‖);  equal to ``scipy.spatial.distance.pdist``.
* An RDM is compared through its upper triangle v = (D_ij)_{i<j} of length
  m = n(n−1)/2 (row-major, scipy's ``squareform`` order).
* ``compare_rdms(a, b, method)``:
  cosine  ⟨a, b⟩ / (‖a‖‖b‖);  pearson  cosine of the centred vectors;
  spearman  pearson of the average ranks (ties share their mean rank);
  kendall_tau_a  τ_a = Σ_{i<j} sgn(a_i − a_j) sgn(b_i − b_j) / (m(m−1)/2)
  (no tie correction in the denominator, as rsatoolbox recommends when models
  predict tied dissimilarities).

Every function is pure, works on one RDM and is vmappable over RDMs.
"""
from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.nn import l2_normalize

METRICS = ("euclidean", "correlation", "cosine")
COMPARISONS = ("cosine", "pearson", "spearman", "kendall_tau_a")


def rdm(features: jax.Array, metric: str = "euclidean") -> jax.Array:
  """The (n, n) dissimilarity matrix of features (n, d); zero diagonal."""
  chex.assert_rank(features, 2)
  if metric == "euclidean":
    sq_norms = jnp.sum(features**2, axis=1)
    squared = sq_norms[:, None] + sq_norms[None, :] - 2 * features @ features.T
    off_diagonal = 1.0 - jnp.eye(features.shape[0], dtype=features.dtype)
    return jnp.sqrt(jnp.maximum(squared, 0.0)) * off_diagonal
  if metric == "correlation":
    unit = l2_normalize(features - features.mean(axis=1, keepdims=True))
  elif metric == "cosine":
    unit = l2_normalize(features)
  else:
    raise ValueError(f"unknown RDM metric {metric!r}; use one of {METRICS}")
  dissimilarity = 1.0 - unit @ unit.T
  return dissimilarity * (1.0 - jnp.eye(features.shape[0], dtype=features.dtype))


def num_stimuli(num_pairs: int) -> int:
  """n such that n(n−1)/2 = num_pairs."""
  n = int(round((1 + math.sqrt(1 + 8 * num_pairs)) / 2))
  if n * (n - 1) // 2 != num_pairs:
    raise ValueError(f"{num_pairs} is not n(n−1)/2 for an integer n")
  return n


def upper_triangle(matrix: jax.Array) -> jax.Array:
  """(n, n) → (n(n−1)/2,): entries i < j in row-major order."""
  chex.assert_rank(matrix, 2)
  rows, cols = np.triu_indices(matrix.shape[0], k=1)
  return matrix[rows, cols]


def square_form(vector: jax.Array) -> jax.Array:
  """(n(n−1)/2,) → the symmetric (n, n) matrix with a zero diagonal."""
  chex.assert_rank(vector, 1)
  n = num_stimuli(vector.shape[0])
  rows, cols = np.triu_indices(n, k=1)
  matrix = jnp.zeros((n, n), vector.dtype).at[rows, cols].set(vector)
  return matrix + matrix.T


def rdm_vector(features: jax.Array, metric: str = "euclidean") -> jax.Array:
  """The upper triangle of ``rdm(features, metric)``: (n(n−1)/2,)."""
  return upper_triangle(rdm(features, metric))


def average_ranks(values: jax.Array) -> jax.Array:
  """1-based ranks of a vector, ties sharing their mean rank (scipy ``rankdata``)."""
  chex.assert_rank(values, 1)
  ordered = jnp.sort(values)
  below = jnp.searchsorted(ordered, values, side="left")
  at_or_below = jnp.searchsorted(ordered, values, side="right")
  return (below + at_or_below + 1).astype(jnp.result_type(values, jnp.float32)) / 2


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def pearson_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
  return cosine_similarity(a - a.mean(), b - b.mean())


def spearman_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
  return pearson_correlation(average_ranks(a), average_ranks(b))


def kendall_tau_a(a: jax.Array, b: jax.Array) -> jax.Array:
  """τ_a over all m(m−1)/2 pairs; O(m²) time, O(m) memory (one row at a time)."""
  m = a.shape[0]

  def row(ab):
    ai, bi = ab
    return jnp.sum(jnp.sign(ai - a) * jnp.sign(bi - b))

  concordance = jnp.sum(jax.lax.map(row, (a, b)))
  return concordance / (m * (m - 1))


def compare_rdms(a: jax.Array, b: jax.Array, method: str = "spearman") -> jax.Array:
  """Similarity of two RDM vectors (m,) by ``method`` (see the module docstring)."""
  chex.assert_rank([a, b], 1)
  chex.assert_equal_shape([a, b])
  functions = {"cosine": cosine_similarity, "pearson": pearson_correlation,
               "spearman": spearman_correlation, "kendall_tau_a": kendall_tau_a}
  if method not in functions:
    raise ValueError(f"unknown RDM comparison {method!r}; use one of {COMPARISONS}")
  return functions[method](a, b)


def compare_rdm_sets(a: jax.Array, b: jax.Array, method: str = "spearman") -> jax.Array:
  """All pairwise similarities of RDM vectors a (k, m) and b (l, m): (k, l)."""
  chex.assert_rank([a, b], 2)
  one_to_all = jax.vmap(lambda u, vs: jax.vmap(lambda v: compare_rdms(u, v, method))(vs),
                        in_axes=(0, None))
  return one_to_all(a, b)
