r"""BECLR: a dynamic clustered memory (DyCE) for positives, and optimal-transport
alignment of few-shot prototypes (OpTA).

Poulakakis-Daktylidis & Jamali-Rad, "BECLR: Batch Enhanced Contrastive Few-Shot
Learning", ICLR 2024, Sec. 3–4 (Eqs. 1–4, Algorithms 1–2). Details from the official
code, stypoumic/BECLR: ``utils/optimal_transport.py`` and ``utils/sinkhorn.py`` (OpTA:
log-domain Sinkhorn, cost normalised by its maximum, uniform marginals, ε = 0.05,
≤ 1,000 iterations, tolerance 1e-4), ``memory.py`` (``add_memory_embdeddings_OT``:
equipartitioned assignment of the batch to the memory's cluster centres, FIFO insert,
centres recomputed as the means of their members, an empty cluster keeping its old
centre; ``distributed_sinkhorn``: SwAV's fixed-iteration Sinkhorn).

OpTA (inference). With support prototypes P (N, d) and unlabeled queries Q (M, d),
C_ij = ‖p_i − q_j‖² / max C, the entropic plan

    π = argmin_{π ∈ U(1/N, 1/M)} ⟨π, C⟩ − ε H(π)                     (Eq. 4)

(solved by ott-jax's Sinkhorn) moves each prototype to the barycentre of the queries
it is transported to: p̂_i = Σ_j π_ij q_j / Σ_j π_ij. ``opta`` repeats this
``num_passes`` times (the paper: several passes in the 1-shot case).

DyCE (pretraining). A memory of M embeddings with cluster labels and K centres
Γ_k. Each step the batch Z (B, d) is assigned to centres by the equipartitioned
transport of ``equipartition_assignments`` on the cosine similarities (every centre
gets B/K of the batch's mass), inserted FIFO, and Γ_k ← mean of the memory members
labelled k (``dyce_update``). ``dyce_positives`` enhances the batch: each embedding
draws its top-k nearest memory embeddings (cosine) from its nearest cluster only.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from jaxrep.nn import l2_normalize
from jaxrep.ssl.obow import update_vocabulary  # the same FIFO queue (pointer at the oldest rows)

# ---------------------------------------------------------------------------
# OpTA: optimal-transport prototype alignment


def normalized_sq_cost(x: jax.Array, y: jax.Array) -> jax.Array:
  """C_ij = ‖x_i − y_j‖² / max_ij ‖x_i − y_j‖²: (N, d), (M, d) → (N, M) in [0, 1]."""
  cost = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, -1)
  return cost / jnp.maximum(cost.max(), 1e-12)


def transport_plan(x: jax.Array, y: jax.Array, epsilon: float = 0.05,
                   threshold: float = 1e-4, max_iterations: int = 1000) -> jax.Array:
  """The entropic OT plan π (N, M) between uniform measures on x (N, d) and y (M, d)
  for the max-normalised squared-distance cost (ott-jax log-domain Sinkhorn); its row
  sums are 1/N and column sums 1/M up to ``threshold``."""
  geom = geometry.Geometry(cost_matrix=normalized_sq_cost(x, y), epsilon=epsilon)
  problem = linear_problem.LinearProblem(geom)
  solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
  return solver(problem).matrix


def transport_prototypes(prototypes: jax.Array, queries: jax.Array, epsilon: float = 0.05,
                         threshold: float = 1e-4, max_iterations: int = 1000) -> jax.Array:
  """One OpTA pass: p̂_i = Σ_j π_ij q_j / Σ_j π_ij. (N, d), (M, d) → (N, d)."""
  plan = transport_plan(prototypes, queries, epsilon, threshold, max_iterations)
  return (plan / plan.sum(1, keepdims=True)) @ queries


def opta(prototypes: jax.Array, queries: jax.Array, num_passes: int = 1,
         epsilon: float = 0.05, threshold: float = 1e-4,
         max_iterations: int = 1000) -> jax.Array:
  """``num_passes`` OpTA passes, each moving the current prototypes (N, d)."""
  for _ in range(num_passes):
    prototypes = transport_prototypes(prototypes, queries, epsilon, threshold,
                                      max_iterations)
  return prototypes


# ---------------------------------------------------------------------------
# DyCE: the dynamic clustered memory


def equipartition_assignments(scores: jax.Array, epsilon: float = 0.05,
                              num_iterations: int = 3) -> jax.Array:
  """SwAV's equipartitioned soft assignment of B items to K clusters.

  Q ∝ exp(scores / ε)ᵀ (K, B), then ``num_iterations`` times: rows (clusters)
  normalised to total 1/K, columns (items) to 1/B; returned as (B, K) scaled by B,
  so every row sums to 1 and (at convergence) every cluster receives B/K.
  """
  q = jnp.exp((scores - scores.max()) / epsilon).T
  q = q / q.sum()
  num_clusters, batch = q.shape

  def body(q, _):
    q = q / q.sum(1, keepdims=True) / num_clusters
    q = q / q.sum(0, keepdims=True) / batch
    return q, None

  q, _ = lax.scan(body, q, None, length=num_iterations)
  return (q * batch).T


class ClusteredMemory(NamedTuple):
  """DyCE's state: embeddings (M, d), their cluster labels (M,), the centres (K, d)
  and the FIFO pointer to the oldest row."""

  embeddings: jax.Array
  labels: jax.Array
  centers: jax.Array
  pointer: jax.Array


def cluster_means(embeddings: jax.Array, labels: jax.Array, previous: jax.Array
                  ) -> jax.Array:
  """Γ_k = mean of the rows labelled k; a cluster with no member keeps ``previous[k]``."""
  num_clusters = previous.shape[0]
  one_hot = jax.nn.one_hot(labels, num_clusters, dtype=embeddings.dtype)   # (M, K)
  counts = one_hot.sum(0)
  sums = one_hot.T @ embeddings
  return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], previous)


def dyce_update(memory: ClusteredMemory, batch: jax.Array, epsilon: float = 0.05,
                num_iterations: int = 3) -> ClusteredMemory:
  """Assigns ``batch`` (B, d) to the centres by ``equipartition_assignments`` of the
  cosine similarities, writes it FIFO at the pointer (``obow.update_vocabulary``,
  M a multiple of B) and recomputes the centres."""
  scores = l2_normalize(batch) @ l2_normalize(memory.centers).T
  labels = jnp.argmax(equipartition_assignments(scores, epsilon, num_iterations), -1)
  embeddings, pointer = update_vocabulary(memory.embeddings, memory.pointer, batch)
  all_labels = lax.dynamic_update_slice(memory.labels, labels.astype(memory.labels.dtype),
                                        (memory.pointer,))
  centers = cluster_means(embeddings, all_labels, memory.centers)
  return ClusteredMemory(embeddings, all_labels, centers, pointer)


def dyce_positives(batch: jax.Array, memory: ClusteredMemory, k: int = 5) -> jax.Array:
  """(B, k, d): for each embedding, its k nearest (cosine) memory embeddings among
  those of its nearest cluster (others are excluded; a cluster with fewer than k
  members falls back to the nearest other rows)."""
  z = l2_normalize(batch)
  nearest = jnp.argmax(z @ l2_normalize(memory.centers).T, -1)                 # (B,)
  sim = z @ l2_normalize(memory.embeddings).T                                    # (B, M)
  sim = jnp.where(memory.labels[None, :] == nearest[:, None], sim, sim - 4.0)
  _, index = lax.top_k(sim, k)
  return memory.embeddings[index]
