"""Tasks for ``jaxrep.core.fit``: minibatches, the supervised step, cross-entropy.

A task is ``Task(init, step)`` over a run's ``inputs`` dict (see ``fit``).
``minibatch_task`` trains ``loss_fn(params, batch, rng)`` with an optax optimizer
on minibatches drawn by ``minibatch_indices`` — with replacement (i.i.d. uniform
indices) or without (a uniform random subset) per step, as a paper's protocol
says — and ``classifier_task`` is that with ``cross_entropy_loss_fn``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrep.core.config import ConfigError
from jaxrep.core.evaluate import accuracy
from jaxrep.core.parallel import DATA_AXIS
from jaxrep.core.train import LossFn, TrainState, init_train_state, make_train_step

PyTree = Any
Inputs = Mapping[str, Any]
Metrics = dict[str, jax.Array]


class Task(NamedTuple):
  """``init(inputs) -> TrainState`` and ``step(state, inputs) -> (state, metrics)``."""

  init: Callable[[Inputs], TrainState]
  step: Callable[[TrainState, Inputs], tuple[TrainState, Metrics]]


# ---------------------------------------------------------------------------
# Batches


def minibatch_indices(key: jax.Array, step: jax.Array, num_examples: int, batch_size: int,
                      *, replace: bool) -> jax.Array:
  """Indices (batch_size,) of step ``step``'s minibatch, drawn with ``fold_in(key, step)``.

  ``replace=True``: i.i.d. uniform draws from {0, …, n−1} (the "random indices"
  protocol); ``replace=False``: a uniform random subset of size batch_size.
  Static under jit: ``num_examples``, ``batch_size``, ``replace``; ``step`` may be traced.
  """
  step_key = jax.random.fold_in(key, step)
  if replace:
    return jax.random.randint(step_key, (batch_size,), 0, num_examples)
  return jax.random.choice(step_key, num_examples, (batch_size,), replace=False)


def take_rows(examples: PyTree, indices: jax.Array) -> PyTree:
  """The rows ``indices`` of every leaf of ``examples`` (leaves share axis 0)."""
  return jax.tree.map(lambda a: a[indices], examples)


def num_rows(examples: PyTree) -> int:
  """The shared leading size of ``examples``' leaves (ConfigError if they differ)."""
  sizes = {int(np.shape(a)[0]) for a in jax.tree.leaves(examples)}
  if len(sizes) != 1:
    raise ConfigError(f"examples' leaves must share one leading size, got {sorted(sizes)}")
  return sizes.pop()


def shard_batch(batch: PyTree) -> PyTree:
  """Splits a batch's leading axis over the ambient mesh's ``data`` axis (a no-op
  without one). ``fit`` traces its steps under its mesh, so a task's step calls
  this on its batch and the runs' vmapped axis stays on ``seed``."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.shape.get(DATA_AXIS, 1) == 1:
    return batch
  return jax.tree.map(lambda a: lax.with_sharding_constraint(a, P(DATA_AXIS)), batch)


# ---------------------------------------------------------------------------
# Common tasks


def _resolve(optimizer, inputs: Inputs) -> optax.GradientTransformation:
  if isinstance(optimizer, optax.GradientTransformation):
    return optimizer
  return optimizer(inputs)


def minibatch_task(model_init: Callable[[jax.Array, PyTree], PyTree], loss_fn: LossFn,
                   optimizer: optax.GradientTransformation | Callable[[Inputs], Any], *,
                   batch_size: int | None, replace: bool = False,
                   examples: str = "examples") -> Task:
  """Trains ``loss_fn(params, batch, rng)`` with an optax optimizer on minibatches.

  Each run's inputs hold ``key`` (split into the init key and the minibatch key)
  and ``inputs[examples]``, a dict of arrays with a shared leading size n; step t's
  batch is ``batch_size`` rows drawn by ``minibatch_indices`` (``replace`` as the
  protocol says; ``batch_size=None`` = the full batch), plus the run's
  ``inputs["hparams"]`` entries if any (per-run loss weights). ``optimizer`` may
  be a function of the inputs (e.g. a per-run learning rate). ``model_init(key,
  first_row)`` gets the examples' first row (a batch of one).
  """

  def split_keys(inputs):
    return jax.random.split(inputs["key"])

  def init(inputs):
    key_init, _ = split_keys(inputs)
    first = take_rows(inputs[examples], jnp.arange(1))
    return init_train_state(model_init(key_init, first), _resolve(optimizer, inputs),
                            key_init)

  def step(state, inputs):
    _, key_batches = split_keys(inputs)
    rows = inputs[examples]
    if batch_size is None:
      batch = rows
    else:
      batch = take_rows(rows, minibatch_indices(key_batches, state.step, num_rows(rows),
                                                batch_size, replace=replace))
    batch = {**shard_batch(batch), **inputs.get("hparams", {})}
    train_step = make_train_step(loss_fn, _resolve(optimizer, inputs), jit=False)
    return train_step(state, batch)

  return Task(init, step)


def cross_entropy_loss_fn(apply_fn: Callable[..., jax.Array], *,
                          rng_collection: str | None = None) -> LossFn:
  """``loss_fn(params, batch, rng)`` = mean softmax cross-entropy of
  ``apply_fn(params, batch["x"])`` against integer labels ``batch["y"]``, with the
  batch accuracy in the metrics. With ``rng_collection`` (e.g. "dropout") the
  step's key is passed as ``apply_fn(params, x, rngs={rng_collection: rng})``.
  A mean over examples, so it is right on one device's shard too (it declares
  ``axis_name`` for the per-shard layouts and ignores it)."""

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    if rng_collection is None:
      logits = apply_fn(params, batch["x"])
    else:
      logits = apply_fn(params, batch["x"], rngs={rng_collection: rng})
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return ce, {"accuracy": accuracy(logits, batch["y"])}

  return loss_fn


def classifier_task(model_init: Callable[[jax.Array, jax.Array], PyTree],
                    apply_fn: Callable[..., jax.Array],
                    optimizer: optax.GradientTransformation | Callable[[Inputs], Any], *,
                    batch_size: int | None, replace: bool = False,
                    rng_collection: str | None = None) -> Task:
  """``minibatch_task`` for a classifier: ``model_init(key, x)``, ``apply_fn(params, x)``
  and examples ``{"x": (n, ...), "y": (n,) int}`` under ``inputs["examples"]``."""
  return minibatch_task(lambda key, rows: model_init(key, rows["x"]),
                        cross_entropy_loss_fn(apply_fn, rng_collection=rng_collection),
                        optimizer, batch_size=batch_size, replace=replace)
