r"""The exact denoiser of a Gaussian mixture: a reference for samplers and theory.

For x₀ ~ Σ_k π_k N(μ_k, Σ_k) in R^d and x_t = α x₀ + σ ε, the marginal is
p(x_t) = Σ_k π_k N(x_t; α μ_k, C_k) with C_k = α² Σ_k + σ² I, and the
posterior mean (the optimal x₀-prediction; Tweedie's formula) is

    E[x₀ | x_t] = Σ_k r_k(x_t) (μ_k + α Σ_k C_k⁻¹ (x_t − α μ_k)),
    r_k(x_t) ∝ π_k N(x_t; α μ_k, C_k).

Singular Σ_k (low-rank components, as in the MoLRG analysis of Wang et al.
2024) are fine for σ > 0. Used by the sampler tests: a sampler given this
denoiser must reproduce the mixture.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

from jaxrep.diffusion import schedules
from jaxrep.diffusion.schedules import NoiseProcess


def gaussian_mixture_denoiser(process: NoiseProcess, weights: jax.Array, means: jax.Array,
                              covariances: jax.Array):
  """``denoise_fn(x, t) -> E[x₀ | x_t]`` (an ``"x0"`` prediction) for the mixture.

  weights (K,) summing to one, means (K, d), covariances (K, d, d) PSD;
  x (batch, d), t (batch,). With Σ_k = U_k Λ_k U_kᵀ (one ``eigh`` up front),
  C_k = U_k (α² Λ_k + σ²) U_kᵀ, so every solve and log-determinant is diagonal.
  """
  chex.assert_rank([weights, means, covariances], [1, 2, 3])
  vals, vecs = jnp.linalg.eigh(covariances)                       # (K, d), (K, d, d)
  vals = jnp.clip(vals, 0.0)
  d = means.shape[-1]

  def denoise_fn(x, t):
    chex.assert_rank(x, 2)
    c = schedules.coefficients(process, t, x)
    a, s = c.alpha[:, :, None], c.sigma[:, :, None]                # (B, 1, 1)
    # Uᵀ(x − αμ) in each component's eigenbasis
    diff = jnp.einsum("kji,bkj->bki", vecs, x[:, None, :] - a * means[None])
    var_t = a**2 * vals[None] + s**2                               # (B, K, d)
    log_normal = -0.5 * (jnp.sum(diff**2 / var_t + jnp.log(var_t), -1)
                         + d * jnp.log(2 * jnp.pi))
    resp = jax.nn.softmax(jnp.log(weights) + log_normal, axis=1)   # (B, K)
    shift = jnp.einsum("kij,bkj->bki", vecs, a * vals[None] * diff / var_t)  # αΣC⁻¹(x − αμ)
    return jnp.einsum("bk,bkd->bd", resp, means[None] + shift)

  return denoise_fn


@functools.partial(jax.jit, static_argnums=1)
def sample_gaussian_mixture(key: jax.Array, num: int, weights: jax.Array, means: jax.Array,
                            covariances: jax.Array) -> jax.Array:
  """num i.i.d. draws (num, d) from Σ_k π_k N(μ_k, Σ_k) (Σ_k may be singular)."""
  key_k, key_z = jax.random.split(key)
  k = jax.random.choice(key_k, weights.shape[0], (num,), p=weights)
  vals, vecs = jnp.linalg.eigh(covariances)
  roots = vecs * jnp.sqrt(jnp.clip(vals, 0.0))[:, None, :]        # Σ = R Rᵀ
  z = jax.random.normal(key_z, (num, means.shape[1]))
  return means[k] + jnp.einsum("nij,nj->ni", roots[k], z)
