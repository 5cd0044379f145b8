r"""SupCon: the supervised contrastive loss L^sup_out, negatives from the global batch.

Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan, "Supervised
Contrastive Learning", NeurIPS 2020, Eq. 2.

N examples with labels y and V views each give M = NV unit embeddings a_i
(u = z/‖z‖) with labels ỹ_i. With s_ij = ⟨a_i, a_j⟩/τ, A(i) = {j ≠ i} and the
positives P(i) = {p ∈ A(i) : ỹ_p = ỹ_i} (the anchor's other views and every
other view of its class),

    ℓ_i = −(1/|P(i)|) Σ_{p∈P(i)} log  exp(s_ip) / Σ_{a∈A(i)} exp(s_ia),
    L = (1/M) Σ_i ℓ_i.

Every view is an anchor (the official "all" contrast mode). An anchor with no
positive (V = 1 and a label seen once) adds 0 but still counts in the mean, as the
official code does since it guards |P(i)| = 0. The official factor τ/τ_base is 1
at its defaults and is left out. With V = 2 and distinct labels, L is InfoNCE.

Data-parallel: with ``axis_name`` set, each device holds n = N/D examples, gathers
all devices' embeddings and labels (``lax.all_gather``) as candidates and returns
the mean of ℓ over its own nV anchors; the mean over devices is L.
"""
from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
from jax import lax

from jaxrep.nn import l2_normalize


def supcon_loss(z: jax.Array, labels: jax.Array, temperature: float = 0.1,
                axis_name: str | None = None) -> jax.Array:
  """Mean SupCon loss L^sup_out of the local anchors against the global batch.

  Args:
    z: (n, V, D) embeddings, V views of each of n examples (this device's shard
      when ``axis_name`` names the data axis); normalized here.
    labels: (n,) integer class labels.
    temperature: τ.
    axis_name: the data axis to gather candidates over, or None (global batch).

  Returns:
    A scalar: the mean of ℓ_i over the nV local anchors.
  """
  chex.assert_rank(z, 3)
  chex.assert_shape(labels, (z.shape[0],))
  n, num_views, _ = z.shape
  u = l2_normalize(z)
  if axis_name is None:
    g, g_labels, offset = u, labels, 0
  else:
    g = lax.all_gather(u, axis_name, tiled=True)                 # (N, V, D)
    g_labels = lax.all_gather(labels, axis_name, tiled=True)     # (N,)
    offset = lax.axis_index(axis_name) * n
  num_global = g.shape[0]
  # view-major rows: anchor (v, i) is row v·n + i; candidate (v, j) is row v·N + j
  anchors = jnp.swapaxes(u, 0, 1).reshape(num_views * n, -1)
  candidates = jnp.swapaxes(g, 0, 1).reshape(num_views * num_global, -1)
  anchor_labels = jnp.tile(labels, num_views)
  candidate_labels = jnp.tile(g_labels, num_views)
  logits = anchors @ candidates.T / temperature                  # (nV, NV)
  self_index = (jnp.arange(num_views)[:, None] * num_global
                + offset + jnp.arange(n)[None, :]).reshape(-1)
  is_self = jax.nn.one_hot(self_index, num_views * num_global, dtype=bool)
  is_positive = (anchor_labels[:, None] == candidate_labels[None, :]) & ~is_self
  log_prob = jax.nn.log_softmax(jnp.where(is_self, -jnp.inf, logits), axis=-1)
  num_positive = is_positive.sum(axis=1)
  positive_log_prob = jnp.where(is_positive, log_prob, 0.0).sum(axis=1)
  per_anchor = -positive_log_prob / jnp.maximum(num_positive, 1)
  return jnp.mean(per_anchor)


def supcon_loss_fn(encode: Callable[..., jax.Array], temperature: float = 0.1):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for SupCon on two views.

  Args:
    encode: ``encode(params, x) -> (n, D)`` embeddings of a batch of one view.
    temperature: τ.

  Returns:
    ``loss_fn`` for ``batch = {"view1": x1, "view2": x2, "y": labels}`` (labels
    (n,) integers), returning ``(L, {"supcon": L})``; the negatives are the global
    batch under ``shard_map``/``pmap`` (it declares ``axis_name``).
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del rng
    z = jnp.stack([encode(params, batch["view1"]), encode(params, batch["view2"])], axis=1)
    loss = supcon_loss(z, batch["y"], temperature, axis_name)
    return loss, {"supcon": loss}

  return loss_fn
