r"""Noise processes as data: x_t = α(t) x₀ + σ(t) ε, ε ~ N(0, I), t ∈ [t_min, t_max].

Every process is a small frozen (hashable) dataclass with ``alpha(t)`` and
``sigma(t)``, elementwise functions of a continuous time t; samplers, losses and
conversions only ever read (α, σ) and their time derivatives (α̇, σ̇), taken by
``jax.jvp`` so they are exact. The processes:

* ``VPLinear`` — DDPM's linear β (Ho, Jain, Abbeel 2020) in continuous time
  (Song et al. 2021, "Score-Based Generative Modeling through SDEs"):
  β(t) = β_min + t(β_max − β_min), α(t) = exp(−½∫₀ᵗβ), σ = √(1 − α²).
  ``VPLinear.from_ddpm(T, β_1, β_T)`` matches the discrete table
  ᾱ_n = Π_{i≤n}(1 − β_i) at t = n/T (``ddpm_alpha_bars``) to within 1e-3.
* ``VPCosine`` — improved DDPM (Nichol & Dhariwal 2021, eq. 17):
  ᾱ(t) = f(t)/f(0), f(t) = cos²(π/2 · (t + s)/(1 + s)), α = √ᾱ, σ = √(1 − ᾱ).
* ``EDM`` — Karras et al. 2022: α = 1, σ(t) = (σ_min^{1/ρ} + t(σ_max^{1/ρ} −
  σ_min^{1/ρ}))^ρ, so a uniform grid in t is EDM's time discretisation (eq. 5,
  ``edm_sigmas``).
* ``LinearInterpolant`` — rectified flow (Liu et al. 2023) / stochastic
  interpolants (Albergo & Vanden-Eijnden 2023), as in SiT (Ma et al. 2024):
  x_t = (1 − t) x₀ + t ε.

Shapes: t is a scalar or (batch,); ``coefficients(process, t, x)`` reshapes
(batch,) to (batch, 1, …, 1) so that it broadcasts against x of shape (batch, …).
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Protocol

import chex
import jax
import jax.numpy as jnp


class NoiseProcess(Protocol):
  """x_t = alpha(t) x₀ + sigma(t) ε on [t_min, t_max]; sampling starts at t_max."""

  t_min: float
  t_max: float

  def alpha(self, t: jax.Array) -> jax.Array: ...

  def sigma(self, t: jax.Array) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class VPLinear:
  """Variance-preserving, linear β(t) (DDPM). ``from_ddpm`` gives the discrete schedule."""

  beta_min: float = 0.1
  beta_max: float = 20.0
  t_min: float = 1e-3
  t_max: float = 1.0

  @classmethod
  def from_ddpm(cls, num_steps: int = 1000, beta_start: float = 1e-4,
                beta_end: float = 0.02) -> "VPLinear":
    """β_n linear from β_1 to β_T over T steps ↔ β(t) = T·β at t = n/T; t_min = 1/T."""
    return cls(beta_min=beta_start * num_steps, beta_max=beta_end * num_steps,
               t_min=1.0 / num_steps)

  def _log_alpha(self, t):
    return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

  def alpha(self, t):
    return jnp.exp(self._log_alpha(t))

  def sigma(self, t):
    return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))


@dataclasses.dataclass(frozen=True)
class VPCosine:
  """Variance-preserving cosine schedule (Nichol & Dhariwal 2021). ᾱ(1) = 0, so the
  default t_max stops just short of it (α(t_max) ≈ 1.6e-3)."""

  offset: float = 0.008
  t_min: float = 1e-3
  t_max: float = 0.999

  def _angle(self, t):
    return 0.5 * math.pi * (t + self.offset) / (1.0 + self.offset)

  def alpha(self, t):
    return jnp.cos(self._angle(t)) / math.cos(self._angle(0.0))

  def sigma(self, t):
    return jnp.sqrt(jnp.clip(1.0 - self.alpha(t)**2, 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class EDM:
  """Variance-exploding σ schedule of Karras et al. (2022): α = 1, σ(0) = σ_min,
  σ(1) = σ_max, uniform t ↔ EDM's ρ-spaced σ steps."""

  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  t_min: float = 0.0
  t_max: float = 1.0

  def alpha(self, t):
    return jnp.ones_like(jnp.asarray(t, jnp.result_type(float)))

  def sigma(self, t):
    lo, hi = self.sigma_min**(1 / self.rho), self.sigma_max**(1 / self.rho)
    return (lo + t * (hi - lo))**self.rho

  def time_of_sigma(self, sigma: jax.Array) -> jax.Array:
    """The inverse of σ(t)."""
    lo, hi = self.sigma_min**(1 / self.rho), self.sigma_max**(1 / self.rho)
    return (sigma**(1 / self.rho) - lo) / (hi - lo)


@dataclasses.dataclass(frozen=True)
class LinearInterpolant:
  """x_t = (1 − t) x₀ + t ε: rectified flow / the linear stochastic interpolant."""

  t_min: float = 0.0
  t_max: float = 1.0

  def alpha(self, t):
    return 1.0 - jnp.asarray(t, jnp.result_type(float))

  def sigma(self, t):
    return jnp.asarray(t, jnp.result_type(float))


class Coefficients(NamedTuple):
  """(α, σ, α̇, σ̇) at some t, each broadcastable against x."""

  alpha: jax.Array
  sigma: jax.Array
  alpha_dot: jax.Array
  sigma_dot: jax.Array


def expand_time(t: jax.Array, x: jax.Array) -> jax.Array:
  """t of shape () or (batch,) → shape broadcastable against x (batch, …)."""
  t = jnp.asarray(t)
  if t.ndim == 0:
    return t
  chex.assert_rank(t, 1)
  return jnp.reshape(t, t.shape + (1,) * (x.ndim - 1))


def coefficients(process: NoiseProcess, t: jax.Array, x: jax.Array | None = None
                 ) -> Coefficients:
  """(α(t), σ(t), α̇(t), σ̇(t)); derivatives by forward-mode autodiff (exact).
  With ``x`` (batch, …), each is reshaped to broadcast against x."""
  t = jnp.asarray(t, jnp.result_type(float))
  alpha, alpha_dot = jax.jvp(process.alpha, (t,), (jnp.ones_like(t),))
  sigma, sigma_dot = jax.jvp(process.sigma, (t,), (jnp.ones_like(t),))
  coeffs = Coefficients(alpha, sigma, alpha_dot, sigma_dot)
  if x is None:
    return coeffs
  return Coefficients(*(expand_time(c, x) for c in coeffs))


def log_snr(process: NoiseProcess, t: jax.Array) -> jax.Array:
  """λ(t) = log(α²/σ²), the log signal-to-noise ratio (Kingma et al. 2021)."""
  return 2.0 * (jnp.log(process.alpha(t)) - jnp.log(process.sigma(t)))


def _is_key(a: jax.Array) -> bool:
  a = jnp.asarray(a) if not isinstance(a, jax.Array) else a
  return jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) or (
      a.dtype == jnp.uint32 and a.shape == (2,))


def q_sample(process: NoiseProcess, key_or_noise: jax.Array, x0: jax.Array,
             t: jax.Array) -> jax.Array:
  """A draw of x_t ~ q(x_t | x₀) = N(α(t) x₀, σ(t)² I).

  Args:
    key_or_noise: a ``jax.random`` key, or the noise ε itself (shape of x0).
    x0: (batch, …) clean data. t: () or (batch,).
  Returns: x_t with the shape of x0.
  """
  noise = (jax.random.normal(key_or_noise, x0.shape, x0.dtype) if _is_key(key_or_noise)
           else key_or_noise)
  chex.assert_equal_shape((noise, x0))
  c = coefficients(process, t, x0)
  return (c.alpha * x0 + c.sigma * noise).astype(x0.dtype)


def time_grid(process: NoiseProcess, num_steps: int, t_max: float | None = None,
              t_min: float | None = None) -> jax.Array:
  """(num_steps + 1,) times from t_max down to t_min, uniform in t."""
  t_max = process.t_max if t_max is None else t_max
  t_min = process.t_min if t_min is None else t_min
  return jnp.linspace(t_max, t_min, num_steps + 1)


def uniform_time(process: NoiseProcess, key: jax.Array, shape: tuple[int, ...]
                 ) -> jax.Array:
  """Training times t ~ U[t_min, t_max]."""
  return jax.random.uniform(key, shape, minval=process.t_min, maxval=process.t_max)


def edm_lognormal_time(process: EDM, key: jax.Array, shape: tuple[int, ...],
                       p_mean: float = -1.2, p_std: float = 1.2) -> jax.Array:
  """EDM's training noise levels ln σ ~ N(P_mean, P_std²) (Karras et al. 2022,
  Table 1), as times t = σ⁻¹(σ) clipped to [0, 1] (the clip moves < 1e-5 of the mass)."""
  sigma = jnp.exp(p_mean + p_std * jax.random.normal(key, shape))
  return jnp.clip(process.time_of_sigma(sigma), 0.0, 1.0)


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
               rho: float = 7.0) -> jax.Array:
  """EDM's time steps (Karras et al. 2022, eq. 5): σ_i = (σ_max^{1/ρ} + i/(N−1)
  (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N, and σ_N = 0. Shape (N + 1,)."""
  i = jnp.arange(num_steps)
  lo, hi = sigma_min**(1 / rho), sigma_max**(1 / rho)
  sigmas = (hi + i / (num_steps - 1) * (lo - hi))**rho
  return jnp.concatenate([sigmas, jnp.zeros(1)])


def ddpm_alpha_bars(num_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> jax.Array:
  """The discrete DDPM table ᾱ_n = Π_{i≤n}(1 − β_i), β linear (Ho et al. 2020), (T,)."""
  betas = jnp.linspace(beta_start, beta_end, num_steps)
  return jnp.cumprod(1.0 - betas)


def sample_prior(process: NoiseProcess, key: jax.Array, shape: tuple[int, ...],
                 t_max: float | None = None) -> jax.Array:
  """x_{t_max} ≈ σ(t_max) z, z ~ N(0, I): the start of every sampler."""
  t_max = process.t_max if t_max is None else t_max
  return process.sigma(jnp.asarray(t_max)) * jax.random.normal(key, shape)
