r"""InfoNCE / NT-Xent: the contrastive loss with the global batch as negatives.

van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive
Coding" (CPC), 2018; Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for
Contrastive Learning of Visual Representations" (SimCLR), ICML 2020.

Two views of N examples give embeddings z¹, z² ∈ R^{N×D}; with u = z/‖z‖,
a = [u¹; u²] ∈ R^{2N×D} and s_ij = ⟨a_i, a_j⟩/τ, anchor i's positive is its
other view p(i) = (i + N) mod 2N and its negatives are the other 2N − 2 rows:

    ℓ_i = −log  exp(s_{i,p(i)}) / Σ_{j≠i} exp(s_ij),      L = (1/2N) Σ_i ℓ_i.

Data-parallel: with ``axis_name`` set, each device holds n = N/D rows of each
view, gathers every device's rows (``lax.all_gather``) as candidates, and returns
the mean of ℓ over its own 2n anchors; the mean of that over devices is L, the
same number as on one device (the gradient flows back through the gather).
"""
from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
from jax import lax

from jaxrep.nn import l2_normalize


def infonce_loss(z1: jax.Array, z2: jax.Array, temperature: float = 0.1,
                 axis_name: str | None = None) -> jax.Array:
  """Mean NT-Xent loss of the local anchors (both views) against the global batch.

  z1, z2: (n, D) embeddings of two views of the same n examples (this device's
  shard when ``axis_name`` names the data axis). Returns a scalar.
  """
  chex.assert_equal_shape((z1, z2))
  chex.assert_rank(z1, 2)
  u1, u2 = l2_normalize(z1), l2_normalize(z2)
  n = z1.shape[0]
  if axis_name is None:
    g1, g2, offset = u1, u2, 0
  else:
    g1 = lax.all_gather(u1, axis_name, tiled=True)
    g2 = lax.all_gather(u2, axis_name, tiled=True)
    offset = lax.axis_index(axis_name) * n
  num_global = g1.shape[0]
  candidates = jnp.concatenate([g1, g2])                         # (2N, D)
  anchors = jnp.concatenate([u1, u2])                            # (2n, D)
  logits = anchors @ candidates.T / temperature                  # (2n, 2N)
  rows = offset + jnp.arange(n)
  self_index = jnp.concatenate([rows, rows + num_global])
  positive_index = jnp.concatenate([rows + num_global, rows])
  is_self = jax.nn.one_hot(self_index, 2 * num_global, dtype=bool)
  logits = jnp.where(is_self, -jnp.inf, logits)
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_prob, positive_index[:, None], axis=1))


def infonce_loss_fn(encode: Callable[..., jax.Array], temperature: float = 0.1):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for InfoNCE on two views.

  Args:
    encode: ``encode(params, x) -> (n, D)`` embeddings of a batch of one view.
    temperature: τ in s_ij = ⟨a_i, a_j⟩/τ.

  Returns:
    ``loss_fn`` for ``batch = {"view1": x1, "view2": x2}`` (leaves share their
    leading size n), returning ``(L, {"infonce": L})``. It takes the data axis
    name, so ``jaxrep.core.parallel`` hands it the mesh axis in
    ``shard_map``/``pmap`` modes and the negatives are the global batch.
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del rng
    loss = infonce_loss(encode(params, batch["view1"]), encode(params, batch["view2"]),
                        temperature, axis_name)
    return loss, {"infonce": loss}

  return loss_fn
