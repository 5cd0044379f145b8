r"""BYOL: bootstrap your own latent, with the EMA target as a pure update.

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar,
Piot, Kavukcuoglu, Munos, Valko, "Bootstrap Your Own Latent: A New Approach to
Self-Supervised Learning", NeurIPS 2020, Eq. 2 and Sec. 3.2.

The online network (encoder + projector g_θ, then predictor q_θ) sees two views;
the target network ξ (encoder + projector) gives regression targets that receive no
gradient. With x̂ = x/‖x‖, p_v = q_θ(g_θ(view v)) and t_v = sg(g_ξ(view v)):

    ℓ(p, t) = ‖p̂ − t̂‖² = 2 − 2⟨p, t⟩/(‖p‖‖t‖),
    L = (1/N) Σ_i [ℓ(p_{1,i}, t_{2,i}) + ℓ(p_{2,i}, t_{1,i})]      (symmetrised, Eq. 2)

After each optimizer step on θ the target moves as ξ ← τ_k ξ + (1 − τ_k) θ
(``ema_update``, with θ the updated online parameters), τ_k rising from τ_base to 1:

    τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2.                      (Sec. 3.2)

``with_ema_target`` folds that update into an optax optimizer, so that a params
dict ``{"online", "predictor", "target"}`` trains on the core's one train step
(``make_train_step``, ``fit``) with no other change.

L is a mean over examples: with ``axis_name`` set the loss is this device's mean and
needs no collective (the mean over devices is L).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.nn import l2_normalize

PyTree = Any


def normalized_mse(p: jax.Array, t: jax.Array) -> jax.Array:
  """ℓ = ‖p̂ − t̂‖² per row, (n,) for p, t of shape (n, D)."""
  chex.assert_equal_shape((p, t))
  return jnp.sum((l2_normalize(p) - l2_normalize(t)) ** 2, axis=-1)


def byol_loss(p1: jax.Array, p2: jax.Array, t1: jax.Array, t2: jax.Array,
              axis_name: str | None = None) -> jax.Array:
  """Symmetrised BYOL loss L; the targets are stop-gradient-ed here.

  Args:
    p1, p2: (n, D) online predictions of views 1 and 2.
    t1, t2: (n, D) target projections of views 1 and 2.
    axis_name: unused (L is a per-example mean); accepted so that the loss runs
      on one device's shard, where it returns that shard's mean.

  Returns:
    A scalar: mean_i ℓ(p1_i, t2_i) + ℓ(p2_i, t1_i), in [0, 8].
  """
  del axis_name
  chex.assert_equal_shape((p1, p2, t1, t2))
  chex.assert_rank(p1, 2)
  t1, t2 = jax.lax.stop_gradient(t1), jax.lax.stop_gradient(t2)
  return jnp.mean(normalized_mse(p1, t2) + normalized_mse(p2, t1))


def byol_loss_fn(project: Callable[..., jax.Array], predict: Callable[..., jax.Array]):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for BYOL.

  Args:
    project: ``project(net_params, x) -> (n, D)``, encoder + projector, used with
      both ``params["online"]`` and ``params["target"]``.
    predict: ``predict(predictor_params, z) -> (n, D)``, the online predictor.

  Returns:
    ``loss_fn`` for params ``{"online", "predictor", "target"}`` and
    ``batch = {"view1": x1, "view2": x2}``, returning ``(L, {"byol": L})``; the
    gradient of ``params["target"]`` is zero. Train with ``with_ema_target``.
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del rng
    views = (batch["view1"], batch["view2"])
    p1, p2 = (predict(params["predictor"], project(params["online"], x)) for x in views)
    t1, t2 = (project(params["target"], x) for x in views)
    loss = byol_loss(p1, p2, t1, t2, axis_name)
    return loss, {"byol": loss}

  return loss_fn


def ema_update(target: PyTree, online: PyTree, decay: float | jax.Array) -> PyTree:
  """ξ ← τ ξ + (1 − τ) θ leafwise (``optax.incremental_update`` with step 1 − τ).

  ``target`` (ξ) and ``online`` (θ) are pytrees of one structure; ``decay`` is τ ∈ [0, 1]
  (τ = 1 keeps the target, τ = 0 copies the online parameters).
  """
  return optax.incremental_update(online, target, 1.0 - decay)


def target_decay_schedule(base_decay: float = 0.996, *, total_steps: int) -> optax.Schedule:
  """τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2, k clipped to [0, K]: τ_0 = τ_base, τ_K = 1.

  Args:
    base_decay: τ_base (BYOL: 0.996).
    total_steps: K, the number of training steps.

  Returns:
    An optax schedule ``count -> τ_count`` (float32).
  """
  if total_steps < 1:
    raise ValueError(f"total_steps must be positive, got {total_steps}")

  def schedule(count):
    k = jnp.clip(jnp.asarray(count, jnp.float32), 0, total_steps)
    return 1.0 - (1.0 - base_decay) * (jnp.cos(jnp.pi * k / total_steps) + 1.0) / 2.0

  return schedule


class EmaTargetState(NamedTuple):
  """The inner optimizer's state (over every key but the target) and the step k."""

  inner: PyTree
  count: jax.Array


def with_ema_target(optimizer: optax.GradientTransformation,
                    decay: float | optax.Schedule, *, online_key: str = "online",
                    target_key: str = "target") -> optax.GradientTransformation:
  """``optimizer`` on a params dict whose ``target_key`` entry follows an EMA.

  Every entry but ``params[target_key]`` is updated by ``optimizer``; then the
  target moves to ``ema_update(target, new_online, τ_k)`` with ``new_online`` the
  updated ``params[online_key]`` (BYOL's order) and τ_k = ``decay(k)`` (or a
  constant), k counting this optimizer's updates from 0. The gradient given for
  the target is ignored. The update needs ``params`` (``make_train_step`` gives it).
  """
  schedule = decay if callable(decay) else (lambda count: decay)

  def split(tree):
    return {k: v for k, v in tree.items() if k != target_key}

  def init(params):
    return EmaTargetState(optimizer.init(split(params)), jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("with_ema_target needs params in update()")
    student = split(params)
    student_updates, inner = optimizer.update(split(updates), state.inner, student)
    new_online = optax.apply_updates(student[online_key], student_updates[online_key])
    new_target = ema_update(params[target_key], new_online, schedule(state.count))
    target_updates = jax.tree.map(lambda new, old: new - old, new_target, params[target_key])
    return ({**student_updates, target_key: target_updates},
            EmaTargetState(inner, optax.safe_increment(state.count)))

  return optax.GradientTransformation(init, update)
