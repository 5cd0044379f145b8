"""The DSD task (Lahoti et al., ICLR 2024, "Role of Locality and Weight Sharing in
Image-Based Tasks: A Sample Complexity Separation between CNNs, LCNs, and FCNs").

An input is k patches of dimension d. The label y ∈ {−1, +1} is carried by one
patch i ~ U[k]: x_i = y·w* + ξ_i, and every patch has noise ξ_j ~ N(0, σ²I_d).
All samplers are pure functions of a PRNG key, usable inside jit and vmap.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrep.nn import l2_normalize


def random_signal(key: jax.Array, d: int, norm: float) -> jax.Array:
  """w* uniform on the sphere of radius ``norm`` in R^d."""
  w = jax.random.normal(key, (d,))
  return norm * l2_normalize(w)


def dsd_sample(key: jax.Array, n: int, k: int, signal: jax.Array,
               noise_std: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """n DSD examples: x (n, k, d) float32 and y (n,) in {−1, +1}."""
  (d,) = signal.shape
  key_y, key_patch, key_noise = jax.random.split(key, 3)
  y = jnp.where(jax.random.bernoulli(key_y, 0.5, (n,)), 1.0, -1.0)
  patch = jax.random.randint(key_patch, (n,), 0, k)
  noise = noise_std * jax.random.normal(key_noise, (n, k, d))
  placed = jax.nn.one_hot(patch, k)[:, :, None] * signal[None, None, :]
  x = noise + y[:, None, None] * placed
  chex.assert_shape(x, (n, k, d))
  return x, y


def dsd_bayes_logit(x: jax.Array, signal: jax.Array, noise_std: float = 1.0) -> jax.Array:
  """log p(y=+1|x) − log p(y=−1|x) for the optimal classifier that knows w*.

  p(x|y) ∝ Σ_i exp(y·⟨w*, x_i⟩/σ²), so the logit is
  logsumexp_i(s_i) − logsumexp_i(−s_i) with s_i = ⟨w*, x_i⟩/σ².
  """
  s = x @ signal / noise_std**2
  return jax.nn.logsumexp(s, axis=-1) - jax.nn.logsumexp(-s, axis=-1)


def dsd_bayes_error(key: jax.Array, k: int, signal_norm: float, noise_std: float = 1.0,
                    num_samples: int = 2_000_000) -> jax.Array:
  """Error of the Bayes classifier, by Monte Carlo on the sufficient statistics.

  The Bayes logit depends on x only through the projections t_i = ⟨w*, x_i⟩/‖w*‖,
  which are N(y‖w*‖, σ²) on the signal patch and N(0, σ²) elsewhere, so sampling
  k scalars per example is exact in distribution (std error ≈ √(p/N)).
  """
  one_dim_signal = jnp.array([signal_norm], jnp.float32)
  x, y = dsd_sample(key, num_samples, k, one_dim_signal, noise_std)
  return jnp.mean(jnp.sign(dsd_bayes_logit(x, one_dim_signal, noise_std)) != y)
