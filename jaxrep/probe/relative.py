r"""Relative representations: a sample described by its similarities to anchors.

Moschella, Maiorca, Fumero, Norelli, Locatello, Rodolà. "Relative
representations enable zero-shot latent space communication", ICLR 2023.

With an encoder E, anchors A = {a_1, …, a_k} (training inputs) and an input x,

    r(x) = ( cos(E(x), E(a_1)), …, cos(E(x), E(a_k)) ) ∈ [−1, 1]^k.

r is unchanged when every latent is mapped by z ↦ s·Q z with Q orthogonal and
s > 0 (angles are preserved), so two encoders whose latent spaces differ by such
a map give the same r. A head trained on r(·) from one encoder therefore
accepts r(·) from another: zero-shot stitching, encoder_A ∘ head_B. The
official code normalises r before the head (here: LayerNorm inside
``MLPHead``); anchors are sampled stratified by class.

Any encoder ``apply(params, x) -> (n, d)`` plugs in: ``relative_representation``
takes the encoder's apply function.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.core.evaluate import accuracy
from jaxrep.nn import l2_normalize

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]


def relative_projection(latents: jax.Array, anchor_latents: jax.Array,
                        eps: float = 1e-8) -> jax.Array:
  """r_ij = cos(z_i, a_j); latents (n, d), anchor_latents (k, d) → (n, k)."""
  chex.assert_rank([latents, anchor_latents], 2)
  chex.assert_equal_shape_suffix([latents, anchor_latents], 1)
  return l2_normalize(latents, eps=eps) @ l2_normalize(anchor_latents, eps=eps).T


def relative_representation(encode: ApplyFn, params: PyTree, x: jax.Array,
                            anchors_x: jax.Array) -> jax.Array:
  """r(x) for encoder ``encode(params, ·)`` and anchor inputs ``anchors_x``."""
  return relative_projection(encode(params, x), encode(params, anchors_x))


def stratified_anchor_indices(key: jax.Array, labels: jax.Array, num_classes: int,
                              per_class: int) -> jax.Array:
  """``per_class`` distinct random indices of every class, class-major: (K·per_class,).

  Every class needs at least ``per_class`` members (otherwise indices of other
  classes would fill in).
  """
  scores = jax.random.uniform(key, labels.shape)

  def pick(c):
    return jax.lax.top_k(jnp.where(labels == c, scores, -1.0), per_class)[1]

  return jax.vmap(pick)(jnp.arange(num_classes)).reshape(-1)


class MLPHead(nn.Module):
  """LayerNorm → Dense(hidden) → ReLU → Dense(num_classes); the same head reads
  absolute latents or relative representations."""

  num_classes: int = 10
  hidden: int = 128

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = nn.relu(nn.Dense(self.hidden)(nn.LayerNorm()(z)))
    return nn.Dense(self.num_classes)(h)


def head_inputs(encode: ApplyFn, encoder_params: PyTree, x: jax.Array,
                anchors_x: jax.Array | None) -> jax.Array:
  """What a head reads: E(x) (absolute, ``anchors_x=None``) or r(x) (relative)."""
  if anchors_x is None:
    return encode(encoder_params, x)
  return relative_representation(encode, encoder_params, x, anchors_x)


def stitched_logits(encode: ApplyFn, encoder_params: PyTree, head: ApplyFn,
                    head_params: PyTree, x: jax.Array,
                    anchors_x: jax.Array | None) -> jax.Array:
  """head_B(·) ∘ encoder_A: logits of encoder (A) read by another model's head (B).

  With A = B this is the model's own (unstitched) prediction. Relative
  stitching passes the shared anchor inputs, absolute stitching ``None``.
  """
  return head(head_params, head_inputs(encode, encoder_params, x, anchors_x))


def mean_cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean over rows of cos(a_i, b_i); a, b (n, k)."""
  chex.assert_equal_shape([a, b])
  return jnp.mean(jnp.sum(l2_normalize(a, eps=1e-8) * l2_normalize(b, eps=1e-8), axis=-1))


def pairwise_stitching_matrix(encoders: Sequence[tuple[ApplyFn, PyTree]],
                              heads: Sequence[tuple[ApplyFn, PyTree]], x: jax.Array,
                              labels: jax.Array, anchors_x: jax.Array | None) -> jax.Array:
  """S_ab = accuracy of head_b ∘ encoder_a; the diagonal is unstitched. (m, m)."""
  rows = []
  for encode, encoder_params in encoders:
    inputs = head_inputs(encode, encoder_params, x, anchors_x)
    rows.append(jnp.stack([accuracy(head(hp, inputs), labels) for head, hp in heads]))
  return jnp.stack(rows)
