r"""What a denoiser predicts, exact conversions between the kinds, and the denoising loss.

Given x_t = α x₀ + σ ε (``schedules``) a network predicts one of

* ``"eps"``      ε                      (Ho et al. 2020),
* ``"x0"``       x₀                     (the denoiser D(x_t) of Karras et al. 2022),
* ``"v"``        v = α ε − σ x₀         (Salimans & Ho 2022; for VP processes
                                          v = ∂x_t/∂φ with α = cos φ, σ = sin φ),
* ``"velocity"`` u = α̇ x₀ + σ̇ ε = ∂x_t/∂t  (flow matching / rectified flow,
                                          Liu et al. 2023; SiT, Ma et al. 2024),
* ``"score"``    s = −ε/σ = ∇ log q(x_t | x₀) in expectation (Song et al. 2021).

Each is linear in (x₀, ε), so with x_t every kind determines (x₀, ε) exactly:
from v, [x₀; ε] = [[α, −σ], [σ, α]] [x_t; v] / (α² + σ²); from u,
x₀ = (σ̇ x_t − σ u)/(α σ̇ − σ α̇), ε = (α u − α̇ x_t)/(α σ̇ − σ α̇).
The maps are affine in the prediction with weights that sum to one over a mixture,
so classifier-free guidance mixes any kind the same way (``samplers.guided``).

``denoising_loss_fn`` builds the weighted denoising loss
L = E_{t, x₀, ε} w(t) ‖F(x_t, t) − F*‖² as a pure ``loss_fn(params, batch, rng)``.
"""
from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from jaxrep.diffusion import schedules
from jaxrep.diffusion.schedules import Coefficients, NoiseProcess

PREDICTIONS = ("eps", "x0", "v", "velocity", "score")
Weighting = Callable[[jax.Array, Coefficients], jax.Array]


def _check(kind: str) -> None:
  if kind not in PREDICTIONS:
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {kind!r}")


def from_x0_eps(kind: str, x0: jax.Array, eps: jax.Array, c: Coefficients) -> jax.Array:
  """The prediction of kind ``kind`` whose (x₀, ε) are given (c broadcasts against x)."""
  _check(kind)
  if kind == "eps":
    return eps
  if kind == "x0":
    return x0
  if kind == "v":
    return c.alpha * eps - c.sigma * x0
  if kind == "velocity":
    return c.alpha_dot * x0 + c.sigma_dot * eps
  return -eps / c.sigma


def to_x0_eps(kind: str, prediction: jax.Array, x_t: jax.Array, c: Coefficients
              ) -> tuple[jax.Array, jax.Array]:
  """(x₀, ε) implied by a prediction of kind ``kind`` at x_t (exact inverses)."""
  _check(kind)
  chex.assert_equal_shape((prediction, x_t))
  if kind == "eps":
    return (x_t - c.sigma * prediction) / c.alpha, prediction
  if kind == "x0":
    return prediction, (x_t - c.alpha * prediction) / c.sigma
  if kind == "v":
    norm = c.alpha**2 + c.sigma**2
    return ((c.alpha * x_t - c.sigma * prediction) / norm,
            (c.sigma * x_t + c.alpha * prediction) / norm)
  if kind == "velocity":
    det = c.alpha * c.sigma_dot - c.sigma * c.alpha_dot
    return ((c.sigma_dot * x_t - c.sigma * prediction) / det,
            (c.alpha * prediction - c.alpha_dot * x_t) / det)
  eps = -c.sigma * prediction
  return (x_t - c.sigma * eps) / c.alpha, eps


def convert(prediction: jax.Array, source: str, target: str, x_t: jax.Array,
            c: Coefficients) -> jax.Array:
  """A prediction of kind ``source`` rewritten as kind ``target`` at x_t."""
  if source == target:
    return prediction
  return from_x0_eps(target, *to_x0_eps(source, prediction, x_t, c), c)


# ---------------------------------------------------------------------------
# Loss weightings w(t): functions of (t, coefficients), shape (batch,)


def edm_weighting(sigma_data: float = 0.5) -> Weighting:
  """λ(σ) = (σ² + σ_d²)/(σ σ_d)² on the x₀ error (Karras et al. 2022, Table 1)."""
  return lambda t, c: (c.sigma**2 + sigma_data**2) / (c.sigma * sigma_data)**2


def min_snr_weighting(gamma: float = 5.0) -> Weighting:
  """min(SNR, γ) on the x₀ error (Hang et al. 2023), SNR = α²/σ²."""
  return lambda t, c: jnp.minimum(c.alpha**2 / c.sigma**2, gamma)


def edm_preconditioned(raw_fn: Callable[..., jax.Array], process: NoiseProcess,
                       sigma_data: float = 0.5) -> Callable[..., jax.Array]:
  """EDM's preconditioned denoiser as an ``"x0"`` prediction (Karras et al. 2022, Table 1):

      D(x; σ) = c_skip x + c_out F(c_in x, t),  c_skip = σ_d²/(σ² + σ_d²),
      c_out = σ σ_d/√(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²),

  for an α = 1 process (``schedules.EDM``). F gets the time t itself (a monotone
  function of σ) instead of EDM's c_noise = ln(σ)/4. Returns
  ``fn(params, x, t, *args) = D`` for ``raw_fn(params, x, t, *args)``.
  """

  def fn(params, x, t, *args):
    sigma = schedules.expand_time(process.sigma(t), x)
    norm = jnp.sqrt(sigma**2 + sigma_data**2)
    raw = raw_fn(params, x / norm, t, *args)
    return (sigma_data**2 / norm**2) * x + (sigma * sigma_data / norm) * raw

  return fn


# ---------------------------------------------------------------------------
# The loss


def drop_labels(key: jax.Array, labels: jax.Array, rate: float, null_label: int
                ) -> jax.Array:
  """Replaces each label by ``null_label`` with probability ``rate`` (the condition
  dropout that trains one network for classifier-free guidance, Ho & Salimans 2022)."""
  drop = jax.random.bernoulli(key, rate, labels.shape)
  return jnp.where(drop, null_label, labels)


def denoising_errors(prediction: jax.Array, kind: str, x_t: jax.Array, x0: jax.Array,
                     eps: jax.Array, c: Coefficients, target: str | None = None
                     ) -> jax.Array:
  """Per-example mean squared error (batch,) of a prediction of kind ``kind``,
  measured in the space of kind ``target`` (default: its own)."""
  target = kind if target is None else target
  predicted = convert(prediction.astype(jnp.float32), kind, target, x_t, c)
  error = jnp.square(predicted - from_x0_eps(target, x0, eps, c))
  return jnp.mean(error.reshape(error.shape[0], -1), axis=1)


def noisy_inputs(process: NoiseProcess, x0: jax.Array, rng: jax.Array,
                 time_sampler: Callable[[jax.Array, tuple[int, ...]], jax.Array] | None = None
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(t, ε, x_t, key) for a clean batch x0: t ~ ``time_sampler`` (default
  U[t_min, t_max]), ε ~ N(0, I), x_t = α(t) x₀ + σ(t) ε, and a spare key. These are
  the draws of ``denoising_loss_fn``, so losses built on it (REPA, DiTi) see the
  same (t, ε) for the same key."""
  key_t, key_eps, key_rest = jax.random.split(rng, 3)
  if time_sampler is None:
    t = schedules.uniform_time(process, key_t, (x0.shape[0],))
  else:
    t = time_sampler(key_t, (x0.shape[0],))
  eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
  return t, eps, schedules.q_sample(process, eps, x0, t), key_rest


def denoising_loss_fn(apply_fn: Callable[..., jax.Array], process: NoiseProcess, *,
                      prediction: str = "eps", target: str | None = None,
                      weighting: Weighting | None = None,
                      time_sampler: Callable[[jax.Array, tuple[int, ...]], jax.Array]
                      | None = None, label_dropout: float = 0.0,
                      null_label: int | None = None) -> Callable[..., Any]:
  """The weighted denoising loss as ``loss_fn(params, batch, rng)``.

      L = mean_i w(t_i) · mean_dims (F_target(x_t, t_i) − F*_target)²,
      x_t = α(t_i) x₀ + σ(t_i) ε,  t_i ~ time_sampler,  ε ~ N(0, I).

  With ``prediction="eps"`` and no weighting this is DDPM's L_simple (Ho et al.
  2020); ``"velocity"`` on ``LinearInterpolant`` is rectified flow / SiT;
  ``"v"`` is Salimans & Ho (2022); ``"x0"`` + ``edm_weighting`` is EDM's loss.

  Args:
    apply_fn: ``apply_fn(params, x_t, t)`` (unconditional) or, when the batch has
      "label", ``apply_fn(params, x_t, t, label)``; returns the prediction.
    prediction: the network output's kind (``PREDICTIONS``).
    target: the kind whose space the error is measured in (default: prediction).
    weighting: w(t, coefficients) → (batch,) per-example weights (default 1).
    time_sampler: (key, shape) → t (default U[t_min, t_max]).
    label_dropout, null_label: each label is replaced by ``null_label`` with
      probability ``label_dropout`` (classifier-free guidance training).
  Returns: loss_fn(params, batch, rng, axis_name=None) → (loss, {"denoise_mse"});
    batch = {"x": (batch, …), optional "label": (batch,) int}. A mean over
    examples, so it is right on one device's shard (``axis_name`` is unused).
  """
  _check(prediction)
  if label_dropout > 0 and null_label is None:
    raise ValueError("label_dropout needs null_label")

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    x0 = batch["x"]
    t, eps, x_t, key_drop = noisy_inputs(process, x0, rng, time_sampler)
    if "label" in batch:
      labels = batch["label"]
      if label_dropout > 0:
        labels = drop_labels(key_drop, labels, label_dropout, null_label)
      out = apply_fn(params, x_t, t, labels)
    else:
      out = apply_fn(params, x_t, t)
    chex.assert_equal_shape((out, x0))
    c = schedules.coefficients(process, t, x0)
    errors = denoising_errors(out, prediction, x_t, x0, eps, c, target)
    weights = 1.0 if weighting is None else jnp.reshape(weighting(t, c), (-1,))
    mse = jnp.mean(errors)
    return jnp.mean(weights * errors), {"denoise_mse": mse}

  return loss_fn
