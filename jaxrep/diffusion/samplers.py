r"""Samplers: DDPM ancestral, DDIM (η), Euler and Heun probability-flow ODE; guidance.

Every sampler is a pure function ``sampler(key, denoise_fn, shape, num_steps, *,
process, prediction, ...)`` of a ``jax.random`` key, jit-able (``shape`` and
``num_steps`` static) and vmap-able over keys. ``denoise_fn(x, t)`` takes x
(batch, …) and t (batch,) and returns a prediction of kind ``prediction``
(``parameterization.PREDICTIONS``), read as (x̂₀, ε̂) at x_t. Each sampler starts
from x = σ(t_max) z (or ``x_init``), steps over the uniform grid t_max = t_0 >
… > t_N = t_min (``schedules.time_grid``), and with ``denoise_last`` returns
x̂₀(x_{t_min}) instead of x_{t_min} (skipped when σ(t_min) = 0).

From t to s < t, with α_{t|s} = α_t/α_s and σ²_{t|s} = σ_t² − α²_{t|s} σ_s²:

* DDPM ancestral (Ho et al. 2020, eqs. 6–7), the posterior q(x_s | x_t, x̂₀):
  x_s = α_{t|s} σ_s²/σ_t² x_t + α_s σ²_{t|s}/σ_t² x̂₀ + (σ_s σ_{t|s}/σ_t) z.
* DDIM (Song, Meng, Ermon 2021, eq. 12): c = η σ_s σ_{t|s}/σ_t,
  x_s = α_s x̂₀ + √(σ_s² − c²) ε̂ + c z; η = 0 is deterministic, η = 1 is DDPM.
* Euler / Heun on the probability-flow ODE dx/dt = α̇ x̂₀ + σ̇ ε̂ (Song et al. 2021;
  Heun is Karras et al. 2022, Alg. 1 with S_churn = 0, Euler on the last step).

``ddim_invert`` runs the η = 0 update forward in time (x_t → x_s, s > t), so
``ddim_sample(…, x_init=ddim_invert(…, x))`` gives back x up to discretisation.
``guided`` is classifier-free guidance (Ho & Salimans 2022).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxrep.diffusion import parameterization, schedules
from jaxrep.diffusion.schedules import NoiseProcess

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def x0_eps_fn(denoise_fn: DenoiseFn, process: NoiseProcess, prediction: str
              ) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
  """(x, scalar t) → (x̂₀, ε̂): calls ``denoise_fn(x, t·1_batch)`` and converts."""

  def fn(x, t):
    t_batch = jnp.full((x.shape[0],), t, jnp.float32)
    c = schedules.coefficients(process, t_batch, x)
    out = denoise_fn(x, t_batch).astype(x.dtype)
    return parameterization.to_x0_eps(prediction, out, x, c)

  return fn


def _start(key, process, shape, x_init):
  if x_init is not None:
    return x_init
  return schedules.sample_prior(process, key, shape)


def _finish(x, predict, process, t_min, denoise_last):
  with jax.ensure_compile_time_eval():
    noiseless = float(process.sigma(jnp.asarray(t_min))) == 0.0
  if not denoise_last or noiseless:
    return x
  return predict(x, t_min)[0]


def _alpha_sigma(process, t):
  return process.alpha(t), process.sigma(t)


def _posterior_std(process, t, s):
  """σ_s σ_{t|s} / σ_t, the std of q(x_s | x_t, x₀)."""
  (a_t, s_t), (a_s, s_s) = _alpha_sigma(process, t), _alpha_sigma(process, s)
  var_ts = jnp.maximum(s_t**2 - (a_t / a_s)**2 * s_s**2, 0.0)
  return s_s * jnp.sqrt(var_ts) / s_t, var_ts


def _pairs(process, num_steps):
  ts = schedules.time_grid(process, num_steps)
  return ts[:-1], ts[1:]


def _steps(process, num_steps, key):
  return _pairs(process, num_steps) + (jax.random.split(key, num_steps),)


def ddpm_sample(key: jax.Array, denoise_fn: DenoiseFn, shape: tuple[int, ...],
                num_steps: int, *, process: NoiseProcess, prediction: str = "eps",
                x_init: jax.Array | None = None, denoise_last: bool = True) -> jax.Array:
  """Ancestral sampling with the DDPM posterior q(x_s | x_t, x̂₀); returns (shape)."""
  key_init, key_steps = jax.random.split(key)
  predict = x0_eps_fn(denoise_fn, process, prediction)

  def step(x, inputs):
    t, s, k = inputs
    x0, _ = predict(x, t)
    (a_t, s_t), (a_s, s_s) = _alpha_sigma(process, t), _alpha_sigma(process, s)
    std, var_ts = _posterior_std(process, t, s)
    mean = (a_t / a_s) * s_s**2 / s_t**2 * x + a_s * var_ts / s_t**2 * x0
    return mean + std * jax.random.normal(k, x.shape, x.dtype), None

  x, _ = lax.scan(step, _start(key_init, process, shape, x_init),
                  _steps(process, num_steps, key_steps))
  return _finish(x, predict, process, process.t_min, denoise_last)


def ddim_sample(key: jax.Array, denoise_fn: DenoiseFn, shape: tuple[int, ...],
                num_steps: int, *, process: NoiseProcess, prediction: str = "eps",
                eta: float = 0.0, x_init: jax.Array | None = None,
                denoise_last: bool = True) -> jax.Array:
  """DDIM with stochasticity η ∈ [0, 1]; returns (shape). A Python η = 0 draws no
  noise after the start (``key`` may then be None when ``x_init`` is given)."""
  deterministic = isinstance(eta, (int, float)) and eta == 0
  if deterministic and x_init is not None:
    key_init, key_steps = None, jax.random.PRNGKey(0)   # unused: no noise is drawn
  else:
    key_init, key_steps = jax.random.split(key)
  predict = x0_eps_fn(denoise_fn, process, prediction)

  def step(x, inputs):
    t, s, k = inputs
    x0, eps = predict(x, t)
    a_s, s_s = _alpha_sigma(process, s)
    if deterministic:
      return a_s * x0 + s_s * eps, None
    c = eta * _posterior_std(process, t, s)[0]
    x = a_s * x0 + jnp.sqrt(jnp.maximum(s_s**2 - c**2, 0.0)) * eps
    return x + c * jax.random.normal(k, x.shape, x.dtype), None

  x, _ = lax.scan(step, _start(key_init, process, shape, x_init),
                  _steps(process, num_steps, key_steps))
  return _finish(x, predict, process, process.t_min, denoise_last)


def ddim_invert(denoise_fn: DenoiseFn, x: jax.Array, num_steps: int, *,
                process: NoiseProcess, prediction: str = "eps") -> jax.Array:
  """Deterministic DDIM run from t_min up to t_max: x (≈ x_{t_min}) → x_{t_max}."""
  predict = x0_eps_fn(denoise_fn, process, prediction)
  ts = schedules.time_grid(process, num_steps)[::-1]

  def step(x, inputs):
    t, s = inputs
    x0, eps = predict(x, t)
    a_s, s_s = _alpha_sigma(process, s)
    return a_s * x0 + s_s * eps, None

  return lax.scan(step, x, (ts[:-1], ts[1:]))[0]


def _velocity(predict, process, x, t):
  x0, eps = predict(x, t)
  c = schedules.coefficients(process, t)
  return c.alpha_dot * x0 + c.sigma_dot * eps


def euler_sample(key: jax.Array, denoise_fn: DenoiseFn, shape: tuple[int, ...],
                 num_steps: int, *, process: NoiseProcess, prediction: str = "eps",
                 x_init: jax.Array | None = None, denoise_last: bool = True) -> jax.Array:
  """Euler on the probability-flow ODE: x_s = x_t + (s − t) u(x_t, t); N evaluations.
  ``key`` only draws the start (None with ``x_init``)."""
  predict = x0_eps_fn(denoise_fn, process, prediction)

  def step(x, inputs):
    t, s = inputs
    return x + (s - t) * _velocity(predict, process, x, t), None

  x, _ = lax.scan(step, _start(key, process, shape, x_init), _pairs(process, num_steps))
  return _finish(x, predict, process, process.t_min, denoise_last)


def heun_sample(key: jax.Array, denoise_fn: DenoiseFn, shape: tuple[int, ...],
                num_steps: int, *, process: NoiseProcess, prediction: str = "eps",
                x_init: jax.Array | None = None, denoise_last: bool = True) -> jax.Array:
  """Heun's 2nd-order method on the probability-flow ODE (EDM Alg. 1, no churn):
  x' = x + h u(x, t), x_s = x + h/2 (u(x, t) + u(x', s)); the last step is Euler
  when σ(t_min) = 0 (the ODE is singular there). 2N − 1 or 2N evaluations.
  ``key`` only draws the start (None with ``x_init``)."""
  predict = x0_eps_fn(denoise_fn, process, prediction)
  velocity = lambda x, t: _velocity(predict, process, x, t)

  def heun(x, t, s):
    u = velocity(x, t)
    x_euler = x + (s - t) * u
    return x + 0.5 * (s - t) * (u + velocity(x_euler, s))

  ts, ss = _pairs(process, num_steps)
  x = _start(key, process, shape, x_init)
  x, _ = lax.scan(lambda x, ts_: (heun(x, *ts_), None), x, (ts[:-1], ss[:-1]))
  with jax.ensure_compile_time_eval():
    noiseless = float(process.sigma(jnp.asarray(process.t_min))) == 0.0
  if noiseless:
    x = x + (ss[-1] - ts[-1]) * velocity(x, ts[-1])
  else:
    x = heun(x, ts[-1], ss[-1])
  return _finish(x, predict, process, process.t_min, denoise_last)


def guided(denoise_fn: Callable[[jax.Array, jax.Array, Any], jax.Array], scale: float,
           cond: Any, null_cond: Any) -> DenoiseFn:
  """Classifier-free guidance (Ho & Salimans 2022) as a ``denoise_fn(x, t)``:

      F̃(x, t) = F(x, t, ∅) + s · (F(x, t, c) − F(x, t, ∅)),

  so s = 0 is unconditional, s = 1 conditional, s > 1 guided (Ho & Salimans'
  w = s − 1). Valid for every prediction kind (each is affine in (x₀, ε) at fixed
  x_t). Both passes run as one batch of 2·batch.

  Args:
    denoise_fn: ``denoise_fn(x, t, cond)``, e.g. ``lambda x, t, y: model.apply(p, x, t, y)``.
    cond: (batch, …) labels or context; null_cond: the null condition, broadcast
      to cond's shape (e.g. ``num_classes`` for the null class).
  """
  cond = jnp.asarray(cond)
  null_cond = jnp.broadcast_to(jnp.asarray(null_cond, cond.dtype), cond.shape)

  def fn(x, t):
    both = denoise_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                      jnp.concatenate([cond, null_cond]))
    conditional, unconditional = jnp.split(both, 2)
    return unconditional + scale * (conditional - unconditional)

  return fn
