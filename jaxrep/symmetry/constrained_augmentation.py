r"""Data augmentation as invariance-constrained learning, solved primal–dual.

Hounie, Chamon, Ribeiro. "Automatic Data Augmentation via Invariance-Constrained
Learning", ICML 2023 (official code: ihounie/daug).

The learning problem is

    min_θ  E_{(x,y)} ℓ(f_θ(x), y)
    s.t.   E_{(x,y)} E_{g∼λ_c(·|x,y)} ℓ(f_θ(g·x), y) ≤ ε,

where the constraint's worst-case-like distribution over transformations is
λ_c(g | x, y) ∝ ℓ(f_θ(g·x), y). The Lagrangian
L(θ, γ) = E ℓ(f_θ(x), y) + γ (E_{g∼λ_c} ℓ(f_θ(g·x), y) − ε) is minimised over θ
and maximised over γ ≥ 0 by alternating steps:

    g_x ∼ λ_c(·|x, y)                                  (Metropolis–Hastings)
    θ ← θ − η_θ ∇_θ [ℓ(f_θ(x), y) + γ ℓ(f_θ(g_x·x), y)]  (primal step)
    γ ← [γ + η_γ (ℓ(f_θ(g_x·x), y) − ε)]₊              (dual step)

λ_c is sampled by *independent* Metropolis–Hastings: the proposal q is the
uniform distribution over transformations (an op and a level, as in
TrivialAugment), and a candidate g' replaces the current g with probability
min(1, ℓ(g'·x)/ℓ(g·x)), so the chain's stationary law is ∝ ℓ (the proposal
density cancels because it is uniform). The official code runs one such step
after the first proposal ("MH steps = 2"). With γ = 0 and no dual ascent the
primal step is exactly the ERM step.

Transformations of 1-D signals (last axis) are (op, level) pairs with
level ∈ {0, …, L−1} and magnitude m = (level + 1)/L:

    identity;  shift by ±round(m·max_shift) (cyclic);  scale by a^{±m};
    flip (reverse);  Gaussian noise of std m·noise_std;
    erase a window of round(m·max_erase) samples at a random position.

``augment_batch(key, x)`` draws a uniform (op, level) per example;
``primal_dual_loss`` is a ``loss_fn(params, batch, rng, dual) -> (loss,
(metrics, new_dual))`` over batches ``{"x", "y"}``; ``primal_dual_step`` is the
pure step (state, batch) -> (state, metrics) that applies it, the multiplier γ
being the train state's ``model_state``; ``primal_dual_task`` runs that step on
minibatches through ``jaxrep.core.fit``.
"""
from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep import groups
from jaxrep.core import tasks
from jaxrep.core.train import StepFn, init_train_state, make_train_step

PyTree = Any
OPS = ("identity", "shift", "scale", "flip", "noise", "erase")


def augment_sequence(key: jax.Array, x: jax.Array, op: jax.Array, level: jax.Array,
                     num_levels: int = 10, max_shift: int = 10, max_log_scale: float = 0.4,
                     noise_std: float = 1.0, max_erase: int = 16) -> jax.Array:
  """One transformation (OPS[op], level) of a signal x (length,); random signs,
  noise and erase positions come from ``key``."""
  chex.assert_rank(x, 1)
  length = x.shape[0]
  magnitude = (level + 1.0) / num_levels
  k_sign, k_noise, k_start = jax.random.split(key, 3)
  sign = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0)

  def erase(x):
    width = jnp.round(magnitude * max_erase).astype(jnp.int32)
    start = jax.random.randint(k_start, (), 0, length - width + 1)
    index = jnp.arange(length)
    return jnp.where((index >= start) & (index < start + width), 0.0, x)

  branches = (
      lambda x: x,
      lambda x: groups.shift_sequence(
          (sign * jnp.round(magnitude * max_shift)).astype(jnp.int32), x, "wrap"),
      lambda x: groups.scale_sequence(jnp.exp(sign * magnitude * max_log_scale), x),
      lambda x: x[::-1],
      lambda x: x + magnitude * noise_std * jax.random.normal(k_noise, x.shape, x.dtype),
      erase,
  )
  return jax.lax.switch(op, branches, x)


def sample_op_level(key: jax.Array, num: int, num_levels: int = 10
                    ) -> tuple[jax.Array, jax.Array]:
  """(op, level) uniform over OPS × {0..num_levels−1}, shapes (num,), (num,)."""
  k_op, k_level = jax.random.split(key)
  return (jax.random.randint(k_op, (num,), 0, len(OPS)),
          jax.random.randint(k_level, (num,), 0, num_levels))


def augment_batch(key: jax.Array, x: jax.Array, num_levels: int = 10, **magnitudes
                  ) -> tuple[jax.Array, jax.Array]:
  """A uniformly drawn transformation per example: x (n, length) → (x', op (n,))."""
  chex.assert_rank(x, 2)
  k_choice, k_apply = jax.random.split(key)
  op, level = sample_op_level(k_choice, x.shape[0], num_levels)
  keys = jax.random.split(k_apply, x.shape[0])
  augmented = jax.vmap(lambda k, xi, o, l: augment_sequence(k, xi, o, l, num_levels,
                                                            **magnitudes))(keys, x, op, level)
  return augmented, op


def independent_metropolis_hastings(key: jax.Array, propose: Callable[[jax.Array], PyTree],
                                    weight: Callable[[PyTree], jax.Array], num_steps: int
                                    ) -> tuple[PyTree, jax.Array, jax.Array]:
  """A batch of independent-proposal MH chains targeting π(s) ∝ weight(s)·q(s).

  ``propose(key)`` draws a batch of states from q (a pytree whose leaves have a
  leading chain axis (B, ...)); ``weight(states) -> (B,)`` is non-negative.
  Chain b starts at s₀ ∼ q and makes ``num_steps`` transitions: draw s' ∼ q and
  move with probability min(1, w(s')/w(s)). For uniform q the stationary law
  is ∝ w. Returns (final states, their weights (B,), acceptance rate (B,)).
  """
  key_init, key_steps = jax.random.split(key)
  state = propose(key_init)
  w = weight(state)
  chex.assert_rank(w, 1)

  def transition(carry, step_key):
    state, w, accepted = carry
    key_propose, key_accept = jax.random.split(step_key)
    candidate = propose(key_propose)
    w_candidate = weight(candidate)
    accept = jax.random.uniform(key_accept, w.shape, w.dtype) * w < w_candidate

    def choose(old, new):
      mask = accept.reshape(accept.shape + (1,) * (old.ndim - 1))
      return jnp.where(mask, new, old)

    state = jax.tree_util.tree_map(choose, state, candidate)
    return (state, jnp.where(accept, w_candidate, w), accepted + accept), None

  steps = jax.random.split(key_steps, num_steps)
  (state, w, accepted), _ = jax.lax.scan(transition, (state, w, jnp.zeros(w.shape)), steps)
  return state, w, accepted / max(num_steps, 1)


def dual_ascent(dual: jax.Array, constraint_value: jax.Array, margin: float,
                dual_lr: float) -> jax.Array:
  """γ ← [γ + η_γ (c − ε)]₊: projected gradient ascent on the Lagrangian."""
  return jax.nn.relu(dual + dual_lr * (constraint_value - margin))


def per_example_cross_entropy(apply_fn: Callable, params: PyTree, x: jax.Array,
                              y: jax.Array) -> jax.Array:
  """ℓ_i = CE(f_θ(x_i), y_i), shape (n,)."""
  return optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, x), y)


def primal_dual_loss(apply_fn: Callable, margin: float, dual_lr: float, num_mh_steps: int = 1,
                     num_levels: int = 10, **magnitudes) -> Callable:
  """The primal–dual objective as ``loss_fn(params, batch, rng, dual) -> (loss, (metrics, dual'))``
  for batches ``{"x": (n, length), "y": (n,)}``.

  loss = mean ℓ(f(x), y) + γ · mean ℓ(f(g_x·x), y) with g_x from
  ``num_mh_steps`` independent-MH transitions targeting ∝ ℓ (no gradient
  through the sampler), and dual' = [γ + η_γ(mean ℓ(f(g_x·x), y) − ε)]₊ from
  the pre-step parameters, as in the official code.
  """

  def loss_fn(params, batch, rng, dual):
    x, y = batch["x"], batch["y"]
    propose = lambda k: augment_batch(k, x, num_levels, **magnitudes)
    weight = lambda state: jax.lax.stop_gradient(
        per_example_cross_entropy(apply_fn, params, state[0], y))
    (x_mh, op), _, acceptance = independent_metropolis_hastings(rng, propose, weight,
                                                                num_mh_steps)
    clean = per_example_cross_entropy(apply_fn, params, x, y).mean()
    constraint = per_example_cross_entropy(apply_fn, params, x_mh, y).mean()
    loss = clean + dual * constraint
    new_dual = dual_ascent(dual, jax.lax.stop_gradient(constraint), margin, dual_lr)
    metrics = {"clean_loss": clean, "constraint_loss": constraint, "dual": dual,
               "acceptance": acceptance.mean(),
               "op_frequency": jnp.bincount(op, length=len(OPS)) / op.shape[0]}
    return loss, (metrics, new_dual)

  return loss_fn


def primal_dual_step(apply_fn: Callable, optimizer: optax.GradientTransformation,
                     margin: float, dual_lr: float, num_mh_steps: int = 1,
                     num_levels: int = 10, **magnitudes) -> StepFn:
  """The pure primal–dual step ``step(state, batch) -> (state, metrics)``: one
  optimizer step on θ for ``primal_dual_loss`` at key fold_in(state.rng,
  state.step), and the dual ascent γ ← [γ + η_γ(c − ε)]₊ on ``state.model_state``."""
  loss_fn = primal_dual_loss(apply_fn, margin, dual_lr, num_mh_steps, num_levels,
                             **magnitudes)
  return make_train_step(loss_fn, optimizer, has_model_state=True, jit=False)


def primal_dual_task(model_init: Callable, apply_fn: Callable,
                     optimizer: optax.GradientTransformation, *, batch_size: int,
                     replace: bool, margin: float, dual_lr: float, init_dual: float,
                     num_mh_steps: int = 1, num_levels: int = 10, **magnitudes) -> tasks.Task:
  """``primal_dual_step`` on minibatches, as a ``jaxrep.core.fit`` task.

  Keys, batches and init follow ``tasks.classifier_task`` (the run's ``key`` is
  split into the init key, also the state's rng, and the minibatch key;
  ``inputs["examples"] = {"x", "y"}``), so with γ₀ = 0 and η_γ = 0 it trains the
  very ERM run ``classifier_task`` trains. γ starts at ``init_dual``.
  """
  step_fn = primal_dual_step(apply_fn, optimizer, margin, dual_lr, num_mh_steps, num_levels,
                             **magnitudes)

  def init(inputs):
    key_init, _ = jax.random.split(inputs["key"])
    dual = jnp.asarray(init_dual, inputs["examples"]["x"].dtype)
    return init_train_state(model_init(key_init, inputs["examples"]["x"][:1]), optimizer,
                            key_init, model_state=dual)

  def step(state, inputs):
    _, key_batches = jax.random.split(inputs["key"])
    rows = inputs["examples"]
    index = tasks.minibatch_indices(key_batches, state.step, tasks.num_rows(rows), batch_size,
                                    replace=replace)
    return step_fn(state, tasks.shard_batch(tasks.take_rows(rows, index)))

  return tasks.Task(init, step)


def uniform_augmentation_loss(apply_fn: Callable, num_levels: int = 10, **magnitudes
                              ) -> Callable:
  """TrivialAugment-style baseline ``loss_fn(params, {"x", "y"}, rng)``: mean
  ℓ(f(g·x), y) with one uniformly drawn (op, level) per example and step."""

  def loss_fn(params, batch, rng):
    x, y = batch["x"], batch["y"]
    augmented, _ = augment_batch(rng, x, num_levels, **magnitudes)
    loss = per_example_cross_entropy(apply_fn, params, augmented, y).mean()
    return loss, {"augmented_loss": loss}

  return loss_fn
