r"""GroupDRO: online group distributionally robust optimisation with carried weights.

Sagawa, Koh, Hashimoto & Liang, "Distributionally Robust Neural Networks for
Group Shifts", ICLR 2020, Algorithm 1, as DomainBed's ``GroupDRO`` runs it with
one group per training environment. The weights q ∈ Δ^{E−1} are state: at each
step, with this step's environment risks ℓ_e = R_e(θ_t),

    q_{t+1,e} ∝ q_{t,e} · exp(η ℓ_e)          (exponentiated gradient; Σ_e q_{t+1,e} = 1)
    L_t = Σ_e q_{t+1,e} ℓ_e(θ)                 (gradient only through ℓ, not through q)

with q_0 uniform (DomainBed starts from ones and normalises after the first
update, the same thing). ``groupdro_update`` is the pure weight update;
``groupdro_loss_fn`` is a stateful loss ``loss_fn(params, batch, rng, q) ->
(L, (metrics, q_new))`` for ``make_train_step(..., has_model_state=True)``, so q
lives in ``TrainState.model_state``; ``groupdro_task`` is
``jaxrep.shift.envs.environment_task`` with that state. Batches are laid out as
in ``jaxrep.shift.baselines`` ({"x": (E, n, ...), "y": (E, n)}).
"""
from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.core.tasks import Task
from jaxrep.core.train import LossFn
from jaxrep.shift.baselines import ApplyFn, env_logits, env_metrics, env_risks
from jaxrep.shift.envs import environment_task


def groupdro_init(num_envs: int, dtype: Any = jnp.float32) -> jax.Array:
  """q_0: uniform weights (E,)."""
  return jnp.full((num_envs,), 1.0 / num_envs, dtype)


def groupdro_update(q: jax.Array, env_losses: jax.Array, eta: jax.Array | float
                    ) -> jax.Array:
  """One exponentiated-gradient step q ← q · exp(η ℓ) / Σ_e q_e exp(η ℓ_e).

  Computed as softmax(log q + η ℓ) (the same numbers, without overflow for large
  η ℓ). The losses are treated as constants (``stop_gradient``).
  q, env_losses: (E,) → (E,) on the simplex.
  """
  chex.assert_rank(q, 1)
  chex.assert_equal_shape((q, env_losses))
  losses = jax.lax.stop_gradient(env_losses)
  return jax.nn.softmax(jnp.log(q) + eta * losses)


def groupdro_loss_fn(apply_fn: ApplyFn, *, groupdro_eta: float = 1e-2) -> LossFn:
  """GroupDRO (Sagawa et al. 2020) as DomainBed trains it: update q with this
  step's risks, then L = Σ_e q_e R_e.

  Args:
    apply_fn: ``apply_fn(params, x (m, ...)) -> logits (m, C)``.
    groupdro_eta: η, DomainBed's default; the batch may override it per run
      (``groupdro_eta``).
  Returns:
    ``loss_fn(params, {"x": (E, n, ...), "y": (E, n)}, rng, q (E,)) ->
    (L, (metrics, q_new))``; the metrics hold q_new under ``"q"``.
  """

  def loss_fn(params, batch, rng, q):
    del rng
    logits = env_logits(apply_fn, params, batch["x"])
    risks = env_risks(logits, batch["y"])
    q_new = groupdro_update(q, risks, batch.get("groupdro_eta", groupdro_eta))
    loss = jnp.dot(q_new, risks)
    metrics = env_metrics(logits, batch["y"], risks, q=q_new)
    return loss, (metrics, q_new)

  return loss_fn


def groupdro_task(model_init: Callable[[jax.Array, jax.Array], Any], apply_fn: ApplyFn,
                  optimizer: optax.GradientTransformation | Callable[[Any], Any], *,
                  batch_size: int, groupdro_eta: float = 1e-2, replace: bool = True,
                  examples: str = "envs") -> Task:
  """``environment_task`` for ``groupdro_loss_fn`` with q_0 = ``groupdro_init(E)``
  in ``TrainState.model_state`` (E read from ``inputs[examples]["size"]``)."""

  def q_init(inputs):
    return groupdro_init(inputs[examples]["size"].shape[0])

  return environment_task(model_init, groupdro_loss_fn(apply_fn, groupdro_eta=groupdro_eta),
                          optimizer, batch_size=batch_size, replace=replace,
                          examples=examples, model_state_init=q_init)
