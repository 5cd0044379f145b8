r"""Environment-labelled data: per-environment splits, minibatches and the training task.

An *environment stack* is a dict ``{"x": (E, N, ...), "y": (E, N), "size": (E,)}``:
environment e's ``size[e]`` rows come first along axis 1, the rest is padding
(copies of its own rows, so any value is finite) that no sampler or metric reads.

* ``split_environments`` splits a dataset with environment labels into a train
  and a held-out stack per environment, as DomainBed does (a fraction
  ``holdout_fraction`` of each environment, shuffled by a key per environment);
* ``environment_task`` trains a ``jaxrep.shift`` loss through ``jaxrep.core.fit``
  on one minibatch of ``batch_size`` rows from each environment per step
  (``{"x": (E, b, ...), "y": (E, b), "step"}``), with optional state (GroupDRO's
  weights) and DomainBed's optimizer reset at the penalty-annealing step;
* ``env_accuracy`` measures a classifier on each environment of a stack;
* ``colored_linear_envs`` is a small synthetic Colored-MNIST-like problem
  (Arjovsky et al. 2019) with a linear spurious feature.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrep.core.config import ConfigError
from jaxrep.core.parallel import DATA_AXIS
from jaxrep.core.tasks import Task
from jaxrep.core.train import LossFn, init_train_state, make_train_step

Stack = dict[str, Any]
Inputs = Mapping[str, Any]


# ---------------------------------------------------------------------------
# Splits and stacks (host side, numpy)


def stack_environments(parts: Sequence[Mapping[str, Any]]) -> Stack:
  """Per-environment dicts of arrays with leading sizes N_e → one environment
  stack (padded to max N_e by cycling each environment's own rows, plus "size")."""
  sizes = [len(np.asarray(part["y"])) for part in parts]
  if min(sizes) < 1:
    raise ConfigError(f"every environment needs ≥ 1 example, got sizes {sizes}")
  longest = max(sizes)
  stack = {name: np.stack([np.asarray(part[name])[np.arange(longest) % size]
                           for part, size in zip(parts, sizes)])
           for name in parts[0]}
  stack["size"] = np.asarray(sizes, np.int32)
  return stack


def split_environments(key: jax.Array, examples: Mapping[str, Any], env: Any,
                       num_envs: int | None = None, holdout_fraction: float = 0.2
                       ) -> tuple[Stack, Stack]:
  """DomainBed's per-environment split into (train, held-out) environment stacks.

  Environment e's rows (``env == e``) are shuffled by ``fold_in(key, e)``; the
  first ⌊holdout_fraction · N_e⌋ are held out (DomainBed's "out" split, used for
  model selection), the rest train ("in"). Deterministic from ``key``.

  Args:
    examples: dict of arrays with a shared leading size N (e.g. {"x", "y"}).
    env: (N,) integer environment labels in {0, …, num_envs − 1}.
  Returns:
    (train, held_out): stacks {"x": (E, N_max, ...), "y": (E, N_max), "size": (E,)}.
  """
  env = np.asarray(env)
  num_envs = int(env.max()) + 1 if num_envs is None else num_envs
  if not 0.0 < holdout_fraction < 1.0:
    raise ConfigError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
  train, held_out = [], []
  for e in range(num_envs):
    rows = np.flatnonzero(env == e)
    order = rows[np.asarray(jax.random.permutation(jax.random.fold_in(key, e), len(rows)))]
    num_out = int(len(rows) * holdout_fraction)
    if num_out < 1 or num_out == len(rows):
      raise ConfigError(f"environment {e} has {len(rows)} rows: too few to hold out "
                        f"{holdout_fraction:.0%}")
    held_out.append({k: np.asarray(v)[order[:num_out]] for k, v in examples.items()})
    train.append({k: np.asarray(v)[order[num_out:]] for k, v in examples.items()})
  return stack_environments(train), stack_environments(held_out)


def take_envs(stack: Stack, envs: Sequence[int]) -> Stack:
  """The environments ``envs`` of a stack (e.g. the training ones, leaving the test one)."""
  index = np.asarray(envs)
  return {k: v[index] for k, v in stack.items()}


# ---------------------------------------------------------------------------
# Minibatches and the training task


def env_minibatch_indices(key: jax.Array, step: jax.Array, sizes: jax.Array, batch_size: int,
                          *, replace: bool, num_rows: int | None = None) -> jax.Array:
  """Indices (E, batch_size) of step ``step``'s minibatch from each environment.

  Row e draws from {0, …, sizes[e] − 1} with ``fold_in(key, step)``: i.i.d.
  uniform (``replace=True``, DomainBed's infinite loaders) or a uniform random
  subset (``replace=False``: needs ``num_rows``, the stack's padded length, and
  batch_size ≤ min sizes — checked when the sizes are concrete).
  """
  chex.assert_rank(sizes, 1)
  step_key = jax.random.fold_in(key, step)
  num_envs = sizes.shape[0]
  if replace:
    return jax.random.randint(step_key, (num_envs, batch_size), 0, sizes[:, None])
  if num_rows is None:
    raise ConfigError("env_minibatch_indices(replace=False) needs num_rows")
  _check_subset_size(sizes, batch_size)
  scores = jax.random.uniform(step_key, (num_envs, num_rows))
  real = jnp.arange(num_rows)[None, :] < sizes[:, None]
  return jnp.argsort(jnp.where(real, scores, 2.0), axis=1)[:, :batch_size]


def _check_subset_size(sizes: Any, batch_size: int) -> None:
  try:
    smallest = int(np.min(np.asarray(sizes)))
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  if smallest < batch_size:
    raise ConfigError(f"batch_size {batch_size} without replacement exceeds the smallest "
                      f"environment ({smallest} rows)")


def take_env_rows(stack: Mapping[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
  """Rows ``indices`` (E, b) of every per-row leaf of a stack → {"x": (E, b, ...), ...}."""
  take = jax.vmap(lambda rows, index: rows[index])
  return {k: take(v, indices) for k, v in stack.items() if k != "size"}


def shard_env_batch(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Splits the per-environment example axis (axis 1) of a batch over the ambient
  mesh's ``data`` axis, keeping the environments together (a no-op without one)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.shape.get(DATA_AXIS, 1) == 1:
    return dict(batch)
  return {k: lax.with_sharding_constraint(v, P(None, DATA_AXIS)) for k, v in batch.items()}


def _resolve(value: Any, inputs: Inputs) -> Any:
  if value is None or isinstance(value, (int, np.integer, optax.GradientTransformation)):
    return value
  return value(inputs)


def environment_task(model_init: Callable[[jax.Array, jax.Array], Any], loss_fn: LossFn,
                     optimizer: optax.GradientTransformation | Callable[[Inputs], Any], *,
                     batch_size: int, replace: bool = True, examples: str = "envs",
                     model_state_init: Callable[[Inputs], Any] | None = None,
                     reset_optimizer_at: int | Callable[[Inputs], Any] | None = None) -> Task:
  """A ``jaxrep.core.fit`` task training ``loss_fn`` on one minibatch per environment.

  Each run's inputs hold ``key`` (split into the init key, also the state's rng,
  and the minibatch key) and ``inputs[examples]``, an environment stack. Step t's
  batch is ``{"x": (E, batch_size, ...), "y": (E, batch_size), "step": t}`` drawn
  by ``env_minibatch_indices`` (``replace=True`` as DomainBed's loaders), plus the
  run's ``inputs["hparams"]`` entries (per-run penalty weights by DomainBed name).

  Args:
    model_init: ``model_init(key, x (1, ...)) -> params`` (environment 0's first row).
    optimizer: an optax optimizer or a function of the inputs (per-run lr).
    model_state_init: ``model_state_init(inputs) -> state`` for a stateful loss
      ``loss_fn(params, batch, rng, state) -> (loss, (metrics, state))`` (e.g.
      GroupDRO's weights q); the state lives in ``TrainState.model_state``.
    reset_optimizer_at: a step (or a function of the inputs giving one) at which the
      optimizer state is re-initialised, as DomainBed resets Adam when IRM/VREx's
      penalty weight jumps: pass the ``*_penalty_anneal_iters``, or for a sweep
      ``lambda inputs: inputs["hparams"]["irm_penalty_anneal_iters"]``.
  """
  has_state = model_state_init is not None

  def split_keys(inputs):
    return jax.random.split(inputs["key"])

  def init(inputs):
    key_init, _ = split_keys(inputs)
    params = model_init(key_init, inputs[examples]["x"][0, :1])
    model_state = model_state_init(inputs) if has_state else None
    return init_train_state(params, _resolve(optimizer, inputs), key_init, model_state)

  def step(state, inputs):
    _, key_batches = split_keys(inputs)
    stack = inputs[examples]
    tx = _resolve(optimizer, inputs)
    reset_at = _resolve(reset_optimizer_at, inputs)
    if reset_at is not None:
      fresh = tx.init(state.params)
      state = state.replace(opt_state=jax.tree.map(
          lambda new, old: jnp.where(state.step == reset_at, new, old), fresh, state.opt_state))
    indices = env_minibatch_indices(key_batches, state.step, stack["size"], batch_size,
                                    replace=replace, num_rows=stack["y"].shape[1])
    batch = {**shard_env_batch(take_env_rows(stack, indices)), "step": state.step,
             **inputs.get("hparams", {})}
    return make_train_step(loss_fn, tx, has_model_state=has_state, jit=False)(state, batch)

  return Task(init, step)


# ---------------------------------------------------------------------------
# Evaluation and a synthetic problem


def env_accuracy(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any,
                 stack: Mapping[str, Any]) -> jax.Array:
  """Accuracy (E,) of ``apply_fn(params, x) -> logits`` on each environment of a
  stack, over its ``size[e]`` real rows only."""
  x = jnp.asarray(stack["x"])
  logits = apply_fn(params, x.reshape((-1,) + x.shape[2:])).reshape(x.shape[:2] + (-1,))
  correct = jnp.argmax(logits, axis=-1) == jnp.asarray(stack["y"])
  real = jnp.arange(x.shape[1])[None, :] < jnp.asarray(stack["size"])[:, None]
  return jnp.sum(correct & real, axis=1) / jnp.sum(real, axis=1)


def colored_linear_envs(key: jax.Array, num_per_env: int,
                        color_flip: Sequence[float] = (0.1, 0.2, 0.9),
                        label_flip: float = 0.25, noise: float = 0.1) -> dict[str, np.ndarray]:
  """A linear Colored-MNIST (Arjovsky et al. 2019, §5.2) with one environment per
  ``color_flip`` entry: a latent digit class d ~ Bernoulli(½), the label
  y = d xor Bernoulli(label_flip), the colour c = y xor Bernoulli(color_flip[e]),
  and x = (2d − 1 + noise·ε₁, 2c − 1 + noise·ε₂). The shape feature predicts y
  with accuracy 1 − label_flip in every environment; the colour with
  1 − color_flip[e] (0.9, 0.8 in the training environments, 0.1 in the test one).

  Returns {"x": (E·n, 2) float32, "y": (E·n,) int32, "env": (E·n,) int32}, a
  synthetic stand-in for Colored MNIST.
  """
  num_envs = len(color_flip)
  keys = jax.random.split(key, 4)
  shape = (num_envs, num_per_env)
  digit = jax.random.bernoulli(keys[0], 0.5, shape)
  label = digit ^ jax.random.bernoulli(keys[1], label_flip, shape)
  flips = jnp.asarray(color_flip, jnp.float32)[:, None]
  color = label ^ jax.random.bernoulli(keys[2], jnp.broadcast_to(flips, shape))
  signs = 2.0 * jnp.stack([digit, color], axis=-1) - 1.0
  x = signs + noise * jax.random.normal(keys[3], shape + (2,))
  env = jnp.broadcast_to(jnp.arange(num_envs)[:, None], shape)
  return {"x": np.asarray(x.reshape(-1, 2), np.float32),
          "y": np.asarray(label.reshape(-1), np.int32),
          "env": np.asarray(env.reshape(-1), np.int32)}
