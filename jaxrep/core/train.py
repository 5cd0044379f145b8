"""The train state and the one train step every experiment uses.

A loss is a pure function ``loss_fn(params, batch, rng) -> (loss, metrics)``.
``make_train_step`` turns it and an optax optimizer into
``step(state, batch) -> (state, metrics)`` with the per-step key
``fold_in(state.rng, state.step)``, as in big_vision's update function.
Several loss terms compose with ``weighted_sum``: L = Σ_j w_j L_j, each L_j
reported in the metrics. Models that carry state (batch statistics) use
``loss_fn(params, batch, rng, model_state) -> (loss, (metrics, model_state))``
with ``has_model_state=True``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import optax

from jaxrep.core.config import ConfigError

PyTree = Any
Metrics = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, Any]]
StepFn = Callable[["TrainState", PyTree], tuple["TrainState", Metrics]]


@flax.struct.dataclass
class TrainState:
  """Everything a training run needs to continue: a plain pytree."""

  params: PyTree
  opt_state: PyTree
  step: jax.Array
  rng: jax.Array
  model_state: PyTree = None


def init_train_state(params: PyTree, optimizer: optax.GradientTransformation,
                     rng: jax.Array, model_state: PyTree = None) -> TrainState:
  """A fresh state at step 0."""
  return TrainState(params=params, opt_state=optimizer.init(params),
                    step=jnp.zeros((), jnp.int32), rng=rng,
                    model_state=model_state)


def takes_axis_name(loss_fn: Callable) -> bool:
  """Whether ``loss_fn`` declares the keyword ``axis_name`` (the data axis it may
  reduce over with collectives; ``None`` when it sees the global batch)."""
  try:
    parameters = inspect.signature(loss_fn).parameters
  except (TypeError, ValueError):
    return False
  return "axis_name" in parameters or any(
      p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def check_axis_name(loss_fn: Callable, axis_name: str | None) -> None:
  """A loss that runs on one device's shard (``axis_name`` set) must declare
  ``axis_name``, or its cross-example terms would silently see one shard:
  raises a one-line ``ConfigError`` otherwise."""
  if axis_name is not None and not takes_axis_name(loss_fn):
    name = getattr(loss_fn, "__qualname__", repr(loss_fn))
    raise ConfigError(
        f"loss {name} does not declare the keyword 'axis_name', but it runs on one "
        f"device's shard (axis {axis_name!r}); add 'axis_name=None' to its signature "
        "(using it for any cross-example term) or use the 'jit' layout")


def call_with_axis(loss_fn: Callable, *args, axis_name: str | None):
  """``loss_fn(*args, axis_name=axis_name)``, or ``loss_fn(*args)`` for a loss
  without the keyword on the global batch (``check_axis_name``)."""
  if takes_axis_name(loss_fn):
    return loss_fn(*args, axis_name=axis_name)
  check_axis_name(loss_fn, axis_name)
  return loss_fn(*args)


def weighted_sum(terms: Mapping[str, tuple[float, LossFn]]) -> LossFn:
  """Composes loss terms as L = Σ_j w_j L_j(params, batch, rng_j).

  Each term gets its own key ``fold_in(rng, j)`` (j in sorted-name order);
  metrics hold every unweighted term under its name, the term's own metrics
  under ``name/key`` and the total under ``loss``. The sum declares
  ``axis_name`` and forwards it to every term (``call_with_axis``).
  """
  names = sorted(terms)

  def loss_fn(params, batch, rng, axis_name=None):
    total = jnp.zeros(())
    metrics = {}
    for j, name in enumerate(names):
      weight, term = terms[name]
      value, term_metrics = call_with_axis(term, params, batch, jax.random.fold_in(rng, j),
                                           axis_name=axis_name)
      metrics.update({f"{name}/{k}": v for k, v in term_metrics.items()})
      metrics[name] = value
      total = total + weight * value
    metrics["loss"] = total
    return total, metrics

  return loss_fn


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    *, has_model_state: bool = False, jit: bool = True,
                    grad_transform: Callable[[PyTree], PyTree] | None = None,
                    ) -> StepFn:
  """One optimizer step: grads of ``loss_fn`` at ``fold_in(rng, step)``.

  ``jit=False`` returns the pure step for vmapping (e.g. over seeds) or for a
  caller that compiles it with shardings. ``grad_transform`` maps gradients
  before the update (e.g. a cross-device mean).
  """

  def step(state: TrainState, batch: PyTree) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)
    if has_model_state:
      grad_fn = jax.value_and_grad(
          lambda p: loss_fn(p, batch, rng, state.model_state), has_aux=True)
      (loss, (metrics, model_state)), grads = grad_fn(state.params)
    else:
      grad_fn = jax.value_and_grad(
          lambda p: loss_fn(p, batch, rng), has_aux=True)
      (loss, metrics), grads = grad_fn(state.params)
      model_state = state.model_state
    if grad_transform is not None:
      grads = grad_transform(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "loss": loss}
    new_state = state.replace(params=params, opt_state=opt_state,
                              step=state.step + 1, model_state=model_state)
    return new_state, metrics

  return jax.jit(step) if jit else step


def scan_steps(step: StepFn, state: TrainState, batch_fn: Callable[[jax.Array], PyTree],
               num_steps: int) -> tuple[TrainState, Metrics]:
  """Runs ``num_steps`` pure steps inside one ``lax.scan``.

  ``batch_fn(step_index)`` gives each step's batch (return a closed-over array
  for full-batch training). The result is vmappable over states, so seeds and
  hyperparameter grids compile once. Metrics are stacked over steps.
  """

  def body(carry, i):
    return step(carry, batch_fn(i))

  return jax.lax.scan(body, state, jnp.arange(num_steps))
