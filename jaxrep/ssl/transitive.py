r"""Transitive invariance: ranking on pairs from composing inter- and intra-instance edges.

Paper: Wang, He, Gupta, "Transitive Invariance for Self-supervised Visual
Representation Learning", ICCV 2017. The 2017 code was not found; the ranking
loss and its negative mining follow the authors' earlier release
xiaolonw/caffe-video_triplet (``src/caffe/layers/rank_hard_loss_layer.cpp`` and
the README's ``rank_param``: neg_num 4, hard_ratio 0.5, rand_ratio 0.5, margin 1,
on L2-normalised features).

**Graph.** Nodes are images; node i shows instance ι(i) (an object, or a video
track) from some viewpoint. Two edge types (boolean N×N adjacencies, no loops):

* intra-instance  A[i, j] = [ι(i) = ι(j)], i ≠ j: the same object seen differently;
* inter-instance  E[i, j] = j is among the k nearest neighbours of i (cosine, in a
  first-stage feature space) over the nodes of other instances.

**Transitive pairs** compose them, first inter then intra:
T[i, l] = ∃ j: E[i, j] ∧ A[j, l], i.e. i looks like instance ι(j) and l is that
instance from another viewpoint — a positive pair that differs in both instance
and viewpoint, which neither edge type gives alone.

**Ranking loss.** With u = z/‖z‖ and D(a, b) = −⟨u_a, u_b⟩ (cosine distance up to
the constant 1), each positive pair (a, p) and each of its selected negatives n
(items of other pairs in the batch) contribute

    max(0, D(a, p) − D(a, n) + m) + max(0, D(a, p) − D(p, n) + m),

and the loss is their sum over (pair, negative) divided by 2·K·P (P pairs, K = 4
negatives per pair, the caffe normalisation). Negatives (the caffe ``set_mask``):
among the candidates n with a positive first hinge, if at most K they are all
taken; otherwise ⌊K·h⌋ are drawn at random from the K hardest (smallest D(a, n))
and the remaining K − ⌊K·h⌋ at random from the other candidates (h = 0.5). The
selection is a discrete choice with no gradient.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import sparse

from jaxrep.nn import l2_normalize

MARGIN = 1.0
NUM_NEGATIVES = 4
HARD_FRACTION = 0.5


# ---------------------------------------------------------------------------
# Graph


def intra_instance_edges(instance: jax.Array) -> jax.Array:
  """A[i, j] = [instance[i] = instance[j]] ∧ i ≠ j; instance (N,) int → (N, N) bool."""
  same = instance[:, None] == instance[None, :]
  return same & ~jnp.eye(instance.shape[0], dtype=bool)


def inter_instance_edges(features: jax.Array, instance: jax.Array, k: int) -> jax.Array:
  """E[i, j] = j is one of the k most cosine-similar nodes to i among the nodes of
  other instances; features (N, d), instance (N,) → (N, N) bool (not symmetric)."""
  sim = l2_normalize(features) @ l2_normalize(features).T
  sim = jnp.where(instance[:, None] == instance[None, :], -jnp.inf, sim)
  _, idx = jax.lax.top_k(sim, k)
  return jnp.zeros(sim.shape, bool).at[jnp.arange(sim.shape[0])[:, None], idx].set(True)


def transitive_edges(inter: jax.Array, intra: jax.Array) -> jax.Array:
  """T[i, l] = ∃ j: inter[i, j] ∧ intra[j, l] (inter, then intra); (N, N) bool."""
  return (inter.astype(jnp.int32) @ intra.astype(jnp.int32)) > 0


def edge_list(edges) -> np.ndarray:
  """The True entries of a dense (N, N) adjacency (or a scipy sparse matrix) as
  (M, 2) int32 (i, j) rows, sorted."""
  if sparse.issparse(edges):
    rows, cols = sparse.coo_matrix(edges).nonzero()
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
  else:
    rows, cols = np.nonzero(np.asarray(edges))
  return np.stack([rows, cols], 1).astype(np.int32)


def transitive_pair_list(inter_pairs: np.ndarray, intra_pairs: np.ndarray,
                         num_nodes: int) -> np.ndarray:
  """``transitive_edges`` on edge lists (sparse; for graphs too large for a dense
  N×N matmul): (M₁, 2) inter rows and (M₂, 2) intra rows → the sorted unique
  (i, l) with inter (i, j) and intra (j, l) for some j."""
  def adjacency(pairs):
    ones = np.ones(len(pairs), np.int32)
    return sparse.csr_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(num_nodes, num_nodes))

  return edge_list(adjacency(inter_pairs) @ adjacency(intra_pairs))


def sample_pairs(key: jax.Array, pairs: np.ndarray, num: int) -> np.ndarray:
  """``num`` rows drawn uniformly with replacement from an edge list (M, 2) →
  (num, 2) int32."""
  pairs = np.asarray(pairs)
  if pairs.shape[0] == 0:
    raise ValueError("the edge set is empty")
  pick = np.asarray(jax.random.randint(key, (num,), 0, pairs.shape[0]))
  return pairs[pick].astype(np.int32)


# ---------------------------------------------------------------------------
# Ranking loss


def pair_distances(anchors: jax.Array, positives: jax.Array) -> tuple[jax.Array, ...]:
  """D = −⟨u, v⟩ on L2-normalised rows: (D(a_i, p_i) (P,), D(a_i, x_j) (P, 2P),
  D(p_i, x_j) (P, 2P)) with x = [anchors; positives] the batch's items."""
  ua, up = l2_normalize(anchors), l2_normalize(positives)
  items = jnp.concatenate([ua, up])
  return -jnp.sum(ua * up, -1), -ua @ items.T, -up @ items.T


def select_negatives(key: jax.Array, anchors: jax.Array, positives: jax.Array,
                     margin: float = MARGIN, num_negatives: int = NUM_NEGATIVES,
                     hard_fraction: float = HARD_FRACTION) -> jax.Array:
  """The caffe negative mask (P, 2P) bool: for pair i, candidates are the other pairs'
  items with max(0, D(a, p) − D(a, n) + m) > 0; all of them if ≤ K, else ⌊K·h⌋ at
  random from the K hardest plus K − ⌊K·h⌋ at random from the rest. No gradient."""
  anchors, positives = jax.lax.stop_gradient(anchors), jax.lax.stop_gradient(positives)
  d_ap, d_an, _ = pair_distances(anchors, positives)
  num = anchors.shape[0]
  own = jnp.tile(jnp.eye(num, dtype=bool), (1, 2))                 # pair i's own items
  candidate = ~own & (d_ap[:, None] - d_an + margin > 0)
  count = candidate.sum(1, keepdims=True)
  num_hard = int(num_negatives * hard_fraction)
  hard_key, rest_key = jax.random.split(key)
  # the K hardest candidates (ascending D), then ⌊K·h⌋ of them at random
  order = jnp.argsort(jnp.where(candidate, d_an, jnp.inf), axis=1)
  hardest = jnp.zeros_like(candidate).at[jnp.arange(num)[:, None],
                                         order[:, :num_negatives]].set(True) & candidate
  u_hard = jax.random.uniform(hard_key, candidate.shape)
  hard_rank = jnp.argsort(jnp.argsort(jnp.where(hardest, u_hard, 2.0), axis=1), axis=1)
  hard = hardest & (hard_rank < num_hard)
  rest = candidate & ~hard
  u_rest = jax.random.uniform(rest_key, candidate.shape)
  rest_rank = jnp.argsort(jnp.argsort(jnp.where(rest, u_rest, 2.0), axis=1), axis=1)
  chosen = hard | (rest & (rest_rank < num_negatives - num_hard))
  return jnp.where(count <= num_negatives, candidate, chosen)


def rank_loss(anchors: jax.Array, positives: jax.Array, negatives: jax.Array,
              margin: float = MARGIN, num_negatives: int = NUM_NEGATIVES) -> jax.Array:
  """Σ over pairs i and selected negatives n of [D(a,p) − D(a,n) + m]₊ + [D(a,p) −
  D(p,n) + m]₊, divided by 2·K·P. anchors, positives (P, d); negatives (P, 2P) bool
  over the items [anchors; positives]. Returns a scalar."""
  d_ap, d_an, d_pn = pair_distances(anchors, positives)
  hinge = (jax.nn.relu(d_ap[:, None] - d_an + margin) + jax.nn.relu(d_ap[:, None] - d_pn + margin))
  return jnp.sum(jnp.where(negatives, hinge, 0.0)) / (2 * num_negatives * anchors.shape[0])


def mined_rank_loss(key: jax.Array, anchors: jax.Array, positives: jax.Array,
                    margin: float = MARGIN, num_negatives: int = NUM_NEGATIVES,
                    hard_fraction: float = HARD_FRACTION) -> jax.Array:
  """``rank_loss`` with the negatives of ``select_negatives``."""
  mask = select_negatives(key, anchors, positives, margin, num_negatives, hard_fraction)
  return rank_loss(anchors, positives, mask, margin, num_negatives)


def rank_loss_fn(encode: Callable[..., jax.Array], margin: float = MARGIN,
                 num_negatives: int = NUM_NEGATIVES, hard_fraction: float = HARD_FRACTION,
                 groups: tuple[str, ...] = ("",)):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for the triplet ranking loss.

  Args:
    encode: ``encode(params, x) -> (n, d)`` embeddings.
    margin, num_negatives, hard_fraction: m, K and h of the caffe layer.
    groups: batch key prefixes; group g reads ``batch[g + "anchor"]`` and
      ``batch[g + "positive"]`` (n, ...) and mines negatives within itself. The
      loss is the mean over groups: two groups with intra- and inter-instance
      pairs give the paper's multi-task baseline (separate losses).

  Returns:
    ``loss_fn`` returning ``(L, {"rank_<g>": L_g, ...})``. The mining uses this
    device's rows only (no gather), so shard the run axis, not the batch.
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    terms = {}
    for j, group in enumerate(groups):
      a = encode(params, batch[group + "anchor"])
      p = encode(params, batch[group + "positive"])
      terms[f"rank_{group or 'pairs'}".rstrip("_")] = mined_rank_loss(
          jax.random.fold_in(rng, j), a, p, margin, num_negatives, hard_fraction)
    loss = sum(terms.values()) / len(groups)
    return loss, terms

  return loss_fn
