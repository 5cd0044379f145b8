r"""Likelihood fits of a singular distribution with a deep generative model and instance noise.

Paper: Chae, Kim, Kim, Lin, "A likelihood approach to nonparametric estimation
of a singular distribution using deep generative models" (JMLR 2023). No
official code was found; the protocol follows the paper's text.

* Model: z ~ p(z) = N(0, I_q), x | z ~ N(g(z), σ² I_D), i.e.
  p_{g,σ}(x) = ∫ N(x; g(z), σ² I) p(z) dz, with a network generator g and a
  learned scalar σ. The estimate of the data distribution is the push-forward
  g#p(z) (samples g(z), no observation noise).
* Singularity: data on a d-dim manifold (d < D) have no density in R^D; the
  maximum-likelihood fit can drive σ → 0 with an exploding likelihood and need
  not estimate g#p(z) consistently. The paper's remedy is to perturb the data
  with instance noise, X̃ = X + σ_n ε (``perturb``), and fit the likelihood to
  X̃; the fitted g#p(z) then estimates the law of X consistently.
* Likelihood: log p_{g,σ}(x) is intractable; we maximise the importance-weighted
  bound (IWAE; Burda, Grosse, Salakhutdinov 2016) with an amortised Gaussian
  proposal q_φ(z | x):

      L_K(x) = E_{z_1..K ~ q} log (1/K) Σ_k p(z_k) p_{g,σ}(x | z_k) / q(z_k | x),

  L_1 = ELBO ≤ L_K ≤ L_{K+1} ≤ log p(x), and L_K → log p(x) as K → ∞
  (``iwae_bound``; property tests on a linear-Gaussian model with known
  likelihood).
* Evaluation: the Wasserstein-1 distance between g#p(z) and the true
  (unperturbed) law, W1 = min_π E_π ‖X − Y‖, estimated between samples by
  entropic OT (ott-jax Sinkhorn with the Euclidean cost; ``wasserstein1``).
* Data: circle, spiral and flat-torus manifolds embedded in R^D by a random
  linear isometry (``manifold_sample``, ``random_isometry``).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from ott.geometry import costs, pointcloud
from ott.solvers import linear

from jaxrep.generative import cvae

MANIFOLDS = ("circle", "spiral", "torus")


# ---------------------------------------------------------------------------
# Data: low-dimensional manifolds in R^D


def manifold_coordinates(key: jax.Array, name: str, num: int) -> jax.Array:
  """num points on a manifold in its own low-dim ambient space:
  circle — (cos θ, sin θ), θ ~ U[0, 2π) (1-dim, in R²);
  spiral — r(s)(cos 3πs, sin 3πs) with r(s) = 0.3 + s, s ~ U[0, 1] (1-dim, in R²);
  torus — (cos θ, sin θ, cos φ, sin φ)/√2, θ, φ ~ U[0, 2π) (the flat 2-torus, in R⁴)."""
  if name == "circle":
    theta = jax.random.uniform(key, (num,), maxval=2 * math.pi)
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], -1)
  if name == "spiral":
    s = jax.random.uniform(key, (num,))
    r, angle = 0.3 + s, 3 * math.pi * s
    return jnp.stack([r * jnp.cos(angle), r * jnp.sin(angle)], -1)
  if name == "torus":
    angles = jax.random.uniform(key, (num, 2), maxval=2 * math.pi)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], -1)[:, (0, 2, 1, 3)] / math.sqrt(2)
  raise ValueError(f"manifold must be one of {MANIFOLDS}, got {name!r}")


def random_isometry(key: jax.Array, low_dim: int, ambient_dim: int) -> jax.Array:
  """(low_dim, ambient_dim) with orthonormal rows: y = x @ M embeds R^low isometrically."""
  return jax.random.orthogonal(key, ambient_dim)[:low_dim]


def manifold_sample(key: jax.Array, name: str, num: int, embedding: jax.Array) -> jax.Array:
  """num points of the manifold ``name`` embedded in R^D by ``embedding`` (low, D)."""
  return manifold_coordinates(key, name, num) @ embedding


def perturb(key: jax.Array, x: jax.Array, noise_std: float | jax.Array) -> jax.Array:
  """Instance noise: X̃ = X + σ_n ε, ε ~ N(0, I)."""
  return x + noise_std * jax.random.normal(key, x.shape, x.dtype)


# ---------------------------------------------------------------------------
# The model and the importance-weighted likelihood


class MLP(nn.Module):
  """Dense layers with tanh between them; last layer linear."""

  features: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.features[:-1]:
      x = jnp.tanh(nn.Dense(width)(x))
    return nn.Dense(self.features[-1])(x)


class LatentVariableModel(nn.Module):
  """Generator g (z → x), a learned scalar σ, and the Gaussian proposal q(z | x).

  ``decode(z)`` → g(z); ``encode(x)`` → (mean, log std) of q; ``log_sigma()``
  → log σ (σ = softplus(s) + ``min_sigma``)."""

  data_dim: int
  latent_dim: int
  hidden: Sequence[int] = (64, 64)
  min_sigma: float = 1e-4

  def setup(self):
    self.generator = MLP((*self.hidden, self.data_dim))
    self.encoder = MLP((*self.hidden, 2 * self.latent_dim))
    self.raw_sigma = self.param("raw_sigma", lambda _: jnp.asarray(0.0))

  def decode(self, z):
    return self.generator(z)

  def encode(self, x):
    mean, log_std = jnp.split(self.encoder(x), 2, axis=-1)
    return mean, jnp.clip(log_std, -12.0, 5.0)

  def log_sigma(self):
    return jnp.log(jax.nn.softplus(self.raw_sigma) + self.min_sigma)

  def __call__(self, x):
    mean, _ = self.encode(x)
    return self.decode(mean), self.log_sigma()


def gaussian_log_density(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """Σ over the last axis of log N(x_i; mean_i, exp(log_std)²) (``cvae.gaussian_log_prob``
  with log-variance 2 log_std)."""
  shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(mean), jnp.shape(log_std))
  return cvae.gaussian_log_prob(x, mean, 2.0 * jnp.broadcast_to(log_std, shape))


def iwae_bound(key: jax.Array, x: jax.Array, num_samples: int,
               encode: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
               log_likelihood: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """L_K(x) per example, (batch,): log (1/K) Σ_k p(z_k) p(x | z_k) / q(z_k | x),
  z_k = μ(x) + s(x) ⊙ ε_k (reparameterised), p(z) = N(0, I).

  encode(x) → (μ, log s) of q(z | x), each (batch, q); log_likelihood(x, z) →
  log p(x | z) with z (K, batch, q) and x broadcast, returning (K, batch).
  K = 1 is the ELBO (one-sample estimate)."""
  chex.assert_rank(x, 2)
  mean, log_std = encode(x)
  eps = jax.random.normal(key, (num_samples,) + mean.shape, mean.dtype)
  z = mean + jnp.exp(log_std) * eps
  log_prior = gaussian_log_density(z, 0.0, jnp.zeros_like(z))
  log_q = gaussian_log_density(z, mean, log_std)
  log_weights = log_prior + log_likelihood(x, z) - log_q           # (K, batch)
  return jax.nn.logsumexp(log_weights, axis=0) - math.log(num_samples)


def model_log_likelihood(model: LatentVariableModel, params) -> Callable:
  """log p(x | z) = log N(x; g(z), σ² I) for ``iwae_bound``."""

  def log_likelihood(x, z):
    g = model.apply(params, z, method=model.decode)
    log_sigma = model.apply(params, method=model.log_sigma)
    return gaussian_log_density(x, g, jnp.broadcast_to(log_sigma, g.shape))

  return log_likelihood


def iwae_loss_fn(model: LatentVariableModel, num_samples: int):
  """``loss_fn(params, batch, rng)`` = −mean_i L_K(x_i) on batch {"x": (batch, D)};
  metrics: the bound per dimension and log σ."""

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    encode = lambda x: model.apply(params, x, method=model.encode)
    bound = iwae_bound(rng, batch["x"], num_samples, encode,
                       model_log_likelihood(model, params))
    log_sigma = model.apply(params, method=model.log_sigma)
    return -jnp.mean(bound), {"log_sigma": log_sigma}

  return loss_fn


def generate(model: LatentVariableModel, params, key: jax.Array, num: int) -> jax.Array:
  """num samples of the push-forward g#p(z) (no observation noise)."""
  z = jax.random.normal(key, (num, model.latent_dim))
  return model.apply(params, z, method=model.decode)


# ---------------------------------------------------------------------------
# Evaluation: Wasserstein-1 by entropic OT


def wasserstein1(x: jax.Array, y: jax.Array, epsilon: float = 1e-3,
                 max_iterations: int = 2000) -> jax.Array:
  """W1 between the empirical laws of x (n, D) and y (m, D), uniform weights,
  Euclidean cost ‖x − y‖: ⟨P, C⟩ for the Sinkhorn plan P (ott-jax) with
  regularisation ``epsilon`` (absolute, in the cost's units)."""
  geom = pointcloud.PointCloud(x, y, cost_fn=costs.Euclidean(), epsilon=epsilon)
  out = linear.solve(geom, max_iterations=max_iterations)
  return jnp.sum(out.matrix * geom.cost_matrix)
