r"""An exponential moving average of the parameters, carried in the optimizer state.

θ̄ ← β θ̄ + (1 − β) θ after every step (``optax.incremental_update`` with step size
1 − β), as DDPM (β = 0.9999) and DiT (β = 0.9999) sample with θ̄.
``with_params_ema(optimizer, decay)`` wraps an optax optimizer so that the
average lives in ``TrainState.opt_state``: ``tasks.minibatch_task`` and
``fit`` carry, shard and checkpoint it with no other change, and
``ema_params(state.opt_state)`` reads it back. (``optax.ema`` averages the
updates, not the parameters.)
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class ParamsEmaState(NamedTuple):
  """The wrapped optimizer's state and θ̄."""

  inner: optax.OptState
  ema: PyTree


def with_params_ema(optimizer: optax.GradientTransformation, decay: float = 0.999
                    ) -> optax.GradientTransformation:
  """``optimizer`` whose state also tracks θ̄ of the parameters after each update.

  θ̄ starts at θ₀; the update must be given ``params`` (``make_train_step`` does).
  """

  def init(params):
    # a copy, not an alias: a step that donates its state must not donate θ twice
    return ParamsEmaState(optimizer.init(params), jax.tree.map(jnp.array, params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("with_params_ema needs params in update()")
    updates, inner = optimizer.update(updates, state.inner, params)
    new_params = optax.apply_updates(params, updates)
    ema = optax.incremental_update(new_params, state.ema, 1.0 - decay)
    return updates, ParamsEmaState(inner, ema)

  return optax.GradientTransformation(init, update)


def ema_params(opt_state: ParamsEmaState) -> PyTree:
  """θ̄ from the state of a ``with_params_ema`` optimizer."""
  if not isinstance(opt_state, ParamsEmaState):
    raise TypeError(f"not a with_params_ema state: {type(opt_state).__name__}")
  return opt_state.ema
