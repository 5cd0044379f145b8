"""Topological RSA: geo-topological transforms of RDMs and layer identification.

Paper: Lin & Kriegeskorte, "The Topology and Geometry of Neural
Representations", PNAS 2024 (arXiv:2309.11028). Reference implementations:
rsatoolbox ``rdm.transform.geotopological_transform`` / ``geodesic_transform``
and the authors' ``utils_transform.py`` (doerlbh/TopologicalRSA).

For an RDM vector d (m,) (upper triangle, see ``jaxrep.probe.rdm``):

* geo-topological transform, with q_l, q_u the l- and u-quantiles of d
  (linear interpolation, as ``np.quantile``)::

      GT_{l,u}(d) = 0                          if d < q_l
                    (d − q_l) / (q_u − q_l)    if q_l ≤ d ≤ q_u
                    1                          if d > q_u

  GT_{0,1} is the min–max normalised RDM (pure geometry); GT_{q,q} is the
  binary graph "d > q" (pure topology), invariant to every strictly increasing
  map of the dissimilarities. For l = u we define the middle case as 0.
* ``rank_normalize(d)`` = minmax(rank(d)); the authors apply GT to it
  (``gt_transform``), which makes every GT statistic depend on ranks only.
* geodesic transform (the "twostep" RGDM when applied to GT output): min–max
  normalise, delete the edges of weight 1 (the longest dissimilarities, which
  GT saturates), and take all-pairs shortest path lengths (Floyd–Warshall).
  Pairs left unconnected get +inf. rsatoolbox builds its graph with networkx,
  which drops zero-weight entries as non-edges; ``zero_weight_edges=False``
  reproduces that, the default keeps them as edges of length 0.
* layer identification: a noisy "data" RDM is assigned the layer whose
  candidate RDMs (other model instances) it matches best; the accuracy is the
  fraction assigned to their true layer. ``statistic_accuracies`` scores many
  statistics (GT_{l,u}, geodesic GT) at once, each data network's own model
  left out of the vote (``leave_one_out_layer_accuracy``).
* the authors' protocol (``centroid_statistic_accuracies``): every instance's
  RDMs get noise on their entries, d̃ = max(d + λ·std(d)·ε, 0) (``noisy_rdms``),
  each statistic transforms every noisy RDM, and instance r's RDM of layer ℓ
  is assigned to the nearest layer centroid c_{ℓ'} = mean_{r' ≠ r} T(d̃_{r',ℓ'})
  (leave one instance out; ``centroid_identification_accuracy``).
"""
from __future__ import annotations

import functools
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.nn import l2_normalize
from jaxrep.probe import rdm as rdm_lib


def minmax_normalize(values: jax.Array) -> jax.Array:
  """(v − min v) / (max v − min v)."""
  return (values - values.min()) / (values.max() - values.min())


def rank_normalize(values: jax.Array) -> jax.Array:
  """minmax(rank(v)): average ranks mapped to [0, 1]."""
  return minmax_normalize(rdm_lib.average_ranks(values))


def geotopological_map(values: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
  """0 below ``low``, 1 above ``high``, linear in between (thresholds in value units)."""
  span = high - low
  ramp = jnp.where(span > 0, (values - low) / jnp.where(span > 0, span, 1.0), 0.0)
  return jnp.where(values < low, 0.0, jnp.where(values > high, 1.0, ramp)).astype(values.dtype)


def geotopological_transform(rdm_vector: jax.Array, lower: float | jax.Array,
                             upper: float | jax.Array) -> jax.Array:
  """GT_{l,u}(d) with thresholds at the l- and u-quantiles of d; 0 ≤ l ≤ u ≤ 1."""
  chex.assert_rank(rdm_vector, 1)
  low, high = jnp.quantile(rdm_vector, jnp.stack([jnp.asarray(lower), jnp.asarray(upper)]))
  return geotopological_map(rdm_vector, low, high)


def shortest_path_lengths(weights: jax.Array, edges: jax.Array) -> jax.Array:
  """All-pairs shortest paths (Floyd–Warshall) on an undirected weighted graph.

  ``weights`` (n, n) symmetric, ``edges`` (n, n) bool; non-edges cost +inf.
  D ← min(D, D[:, k] + D[k, :]) for k = 1..n.
  """
  chex.assert_rank([weights, edges], 2)
  n = weights.shape[0]
  dist = jnp.where(edges, weights, jnp.inf)
  dist = jnp.where(jnp.eye(n, dtype=bool), 0.0, dist).astype(weights.dtype)

  def relax(k, d):
    return jnp.minimum(d, d[:, k][:, None] + d[k, :][None, :])

  return jax.lax.fori_loop(0, n, relax, dist)


def geodesic_transform(rdm_vector: jax.Array, *, zero_weight_edges: bool = True) -> jax.Array:
  """Shortest-path lengths after min–max normalising and deleting weight-1 edges."""
  chex.assert_rank(rdm_vector, 1)
  weights = rdm_lib.square_form(minmax_normalize(rdm_vector))
  keep = rdm_vector < rdm_vector.max()  # compared unnormalised: exact under rounding
  if not zero_weight_edges:
    keep = keep & (rdm_vector > rdm_vector.min())
  edges = rdm_lib.square_form(keep.astype(weights.dtype)) > 0
  return rdm_lib.upper_triangle(shortest_path_lengths(weights, edges))


def fill_unreachable(values: jax.Array) -> jax.Array:
  """Replaces +inf (unconnected pairs) with the largest finite value."""
  finite = jnp.isfinite(values)
  return jnp.where(finite, values, jnp.max(jnp.where(finite, values, -jnp.inf)))


def identify_layers(data_rdms: jax.Array, candidate_rdms: jax.Array,
                    method: str = "pearson") -> jax.Array:
  """Predicted layer of each data RDM.

  data_rdms (k, m); candidate_rdms (num_models, num_layers, m) from other model
  instances. The score of layer ℓ is the mean over models of
  ``compare_rdms(data, candidate[model, ℓ])``; the prediction is its argmax (k,).
  """
  chex.assert_rank([data_rdms, candidate_rdms], [2, 3])
  num_models, num_layers, m = candidate_rdms.shape
  scores = rdm_lib.compare_rdm_sets(data_rdms, candidate_rdms.reshape(-1, m), method)
  scores = scores.reshape(data_rdms.shape[0], num_models, num_layers).mean(axis=1)
  return jnp.argmax(scores, axis=-1)


def layer_identification_accuracy(predicted_layers: jax.Array,
                                  true_layers: jax.Array) -> jax.Array:
  """Fraction of data RDMs assigned to their true layer."""
  chex.assert_equal_shape([predicted_layers, true_layers])
  return jnp.mean(predicted_layers == true_layers)


def _standardize(v: jax.Array) -> jax.Array:
  return l2_normalize(v - v.mean(-1, keepdims=True))


def leave_one_out_layer_accuracy(data_rdms: jax.Array, candidate_rdms: jax.Array,
                                 replicate: jax.Array, method: str = "pearson") -> jax.Array:
  """Layer-identification accuracy of one data network, its own model left out.

  Args:
    data_rdms: (..., layers, m) RDM vectors of the data network's layers (leading
      axes e.g. SNRs × noise draws).
    candidate_rdms: (models, layers, m); model ``replicate`` (the data network
      itself) gets no vote.
    method: an ``rdm.COMPARISONS`` entry ("pearson" takes a fast matmul path).

  Returns:
    (...,) the fraction of layers whose data RDM ``identify_layers`` assigns to
    the right layer.
  """
  *lead, num_layers, m = data_rdms.shape
  num_models = candidate_rdms.shape[0]
  others = jnp.arange(num_models) != replicate
  if method == "pearson":
    scores = _standardize(data_rdms.reshape(-1, m)) @ _standardize(
        candidate_rdms.reshape(-1, m)).T
  else:
    scores = rdm_lib.compare_rdm_sets(data_rdms.reshape(-1, m), candidate_rdms.reshape(-1, m),
                                      method)
  scores = scores.reshape(-1, num_models, num_layers)
  scores = jnp.sum(scores * others[None, :, None], axis=1) / others.sum()
  predicted = jnp.argmax(scores, axis=-1).reshape(*lead, num_layers)
  return jnp.mean(predicted == jnp.arange(num_layers), axis=-1)


@jax.jit
def _quantiles(rdms: jax.Array, levels: jax.Array) -> jax.Array:
  """Quantiles of every RDM vector at ``levels``: (..., len(levels))."""
  flat = rdms.reshape(-1, rdms.shape[-1])
  return jax.vmap(lambda v: jnp.quantile(v, levels))(flat).reshape(*rdms.shape[:-1], -1)


@functools.partial(jax.jit, static_argnames=("method",))
def _gt_accuracy(data_rdms, data_q, candidate_rdms, cand_q, li, ui, method):
  def transform(rdms, q):
    return geotopological_map(rdms, q[..., li][..., None], q[..., ui][..., None])
  cand = transform(candidate_rdms, cand_q)
  return jax.vmap(lambda d, r: leave_one_out_layer_accuracy(d, cand, r, method))(
      transform(data_rdms, data_q), jnp.arange(data_rdms.shape[0]))


@functools.partial(jax.jit, static_argnames=("method",))
def _geodesic_accuracy(data_rdms, candidate_rdms, lower, upper, method):
  def transform(v):
    return fill_unreachable(geodesic_transform(geotopological_transform(v, lower, upper)))
  flat = data_rdms.reshape(-1, data_rdms.shape[-1])
  data_t = jax.lax.map(transform, flat, batch_size=64).reshape(data_rdms.shape)
  cand = jax.vmap(jax.vmap(transform))(candidate_rdms)
  return jax.vmap(lambda d, r: leave_one_out_layer_accuracy(d, cand, r, method))(
      data_t, jnp.arange(data_rdms.shape[0]))


def noisy_rdms(key: jax.Array, rdms: jax.Array, level: float | jax.Array) -> jax.Array:
  """d̃ = max(d + level · std(d) · ε, 0), ε ~ N(0, I), the std taken over each RDM
  vector's own entries: rdms (..., m) → (..., m)."""
  scale = level * jnp.std(rdms, axis=-1, keepdims=True)
  return jnp.maximum(rdms + scale * jax.random.normal(key, rdms.shape, rdms.dtype), 0.0)


def centroid_identification_accuracy(rdms: jax.Array, method: str = "pearson") -> jax.Array:
  """Leave-one-instance-out nearest-centroid layer identification.

  Args:
    rdms: (..., instances, layers, m) RDM vectors (already transformed).
    method: the RDM comparison (similarity; the nearest centroid is the most similar).

  Returns:
    (..., instances): for instance r, the fraction of its layers ℓ whose RDM is most
    similar to the centroid of layer ℓ over the other instances.
  """
  *lead, num_instances, num_layers, m = rdms.shape
  if num_instances < 2:
    raise ValueError("leave-one-instance-out needs at least 2 instances")
  centroids = (rdms.sum(axis=-3, keepdims=True) - rdms) / (num_instances - 1)
  if method == "pearson":
    scores = jnp.einsum("...im,...jm->...ij", _standardize(rdms), _standardize(centroids)) / m
  else:
    compare = lambda a, b: rdm_lib.compare_rdm_sets(a, b, method)
    flat = lambda x: x.reshape(-1, num_layers, m)
    scores = jax.vmap(compare)(flat(rdms), flat(centroids)).reshape(
        *lead, num_instances, num_layers, num_layers)
  return jnp.mean(jnp.argmax(scores, axis=-1) == jnp.arange(num_layers), axis=-1)


def _transform_all(rdms: jax.Array, kind: str, lower: float, upper: float) -> jax.Array:
  flat = rdms.reshape(-1, rdms.shape[-1])
  if kind == "gt":
    q = jax.vmap(lambda v: jnp.quantile(v, jnp.asarray([lower, upper])))(flat)
    out = geotopological_map(flat, q[:, :1], q[:, 1:])
  elif kind == "geodesic":
    out = jax.lax.map(lambda v: fill_unreachable(geodesic_transform(
        geotopological_transform(v, lower, upper))), flat, batch_size=64)
  else:
    raise ValueError(f"unknown statistic {kind!r}; use 'gt' or 'geodesic'")
  return out.reshape(rdms.shape)


@functools.partial(jax.jit, static_argnames=("kind", "method"))
def _centroid_accuracy(rdms, lower, upper, kind, method):
  return centroid_identification_accuracy(_transform_all(rdms, kind, lower, upper), method)


def centroid_statistic_accuracies(rdms: jax.Array, stats: Sequence[tuple[str, float, float]],
                                  method: str = "pearson") -> np.ndarray:
  """Nearest-centroid accuracy of every statistic: rdms (..., instances, layers, m)
  (e.g. noise levels × draws leading) → (stats, ..., instances). ``stats`` as in
  ``statistic_accuracies``; every RDM is transformed before the centroids are taken."""
  return np.asarray(jnp.stack([_centroid_accuracy(rdms, l, u, kind, method)
                               for kind, l, u in stats]))


def statistic_accuracies(data_rdms: jax.Array, candidate_rdms: jax.Array,
                         stats: Sequence[tuple[str, float, float]],
                         method: str = "pearson") -> np.ndarray:
  """Layer-identification accuracy of every statistic, data network r's own model
  (candidate r) left out.

  Args:
    data_rdms: (replicates, ..., layers, m) RDM vectors, replicate r made from
      network r (e.g. noisy activations; leading axes such as SNRs × draws).
    candidate_rdms: (models, layers, m), models = replicates.
    stats: ("gt", l, u) for GT_{l,u} (thresholds at the l-, u-quantiles of each
      vector) or ("geodesic", l, u) for its geodesic RDM (``fill_unreachable``).
    method: the RDM comparison.

  Returns:
    (stats, replicates, ...) accuracies, averaged over layers.
  """
  level_list = sorted({q for _, l, u in stats for q in (l, u)})
  index = {q: i for i, q in enumerate(level_list)}
  levels = jnp.asarray(level_list)
  data_q, cand_q = _quantiles(data_rdms, levels), _quantiles(candidate_rdms, levels)
  results = []
  for kind, l, u in stats:
    if kind == "gt":
      results.append(_gt_accuracy(data_rdms, data_q, candidate_rdms, cand_q,
                                  index[l], index[u], method))
    elif kind == "geodesic":
      results.append(_geodesic_accuracy(data_rdms, candidate_rdms, l, u, method))
    else:
      raise ValueError(f"unknown statistic {kind!r}; use 'gt' or 'geodesic'")
  return np.asarray(jnp.stack(results))
