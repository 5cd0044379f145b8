r"""Random linear structural equation models (SEMs) with soft interventions.

A linear SEM over d nodes in topological order is X = B X + D^{1/2} ε with B
strictly lower-triangular (B_ij ≠ 0 iff j → i) and ε ~ N(0, I), so
    X = A D^{1/2} ε,   A = (I − B)⁻¹,   Σ = A D Aᵀ.
A soft intervention on sites S replaces the rows B_S (new weights on the same
parents) and the noise variances D_S. Because only |S| rows of I − B change,
Woodbury gives the new total effects in O(|S| d²):
    A_e = A + A E_S (I − Δ A E_S)⁻¹ Δ A,   Δ = (B_e − B)_{S,:}.
All functions are pure and shape-static (vmap over SEMs and environments).
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class LinearSEM(NamedTuple):
  weights: jax.Array  # (d, d) B, strictly lower-triangular
  noise_var: jax.Array  # (d,) diagonal of D


def random_dag_mask(key: jax.Array, d: int, max_in_degree: int = 2) -> jax.Array:
  """Boolean (d, d) parent mask: node i ≥ 1 gets 1..max_in_degree parents among 0..i−1."""
  k_deg, k_pick = jax.random.split(key)
  earlier = jnp.tril(jnp.ones((d, d), bool), k=-1)
  degree = jax.random.randint(k_deg, (d,), 1, max_in_degree + 1)
  scores = jnp.where(earlier, jax.random.uniform(k_pick, (d, d)), -1.0)
  rank = jnp.argsort(jnp.argsort(-scores, axis=1), axis=1)
  return earlier & (rank < degree[:, None])


def random_weights(key: jax.Array, mask: jax.Array, low: float = 0.5,
                   high: float = 2.0) -> jax.Array:
  """±U[low, high] weights on the edges of ``mask`` (random signs)."""
  k_mag, k_sign = jax.random.split(key)
  magnitude = jax.random.uniform(k_mag, mask.shape, minval=low, maxval=high)
  sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, mask.shape), 1.0, -1.0)
  return jnp.where(mask, sign * magnitude, 0.0)


def random_linear_sem(key: jax.Array, d: int, max_in_degree: int = 2, low: float = 0.5,
                      high: float = 2.0) -> LinearSEM:
  """A random DAG SEM: edge weights ±U[low, high], noise std U[low, high]."""
  k_mask, k_w, k_noise = jax.random.split(key, 3)
  mask = random_dag_mask(k_mask, d, max_in_degree)
  noise_std = jax.random.uniform(k_noise, (d,), minval=low, maxval=high)
  return LinearSEM(random_weights(k_w, mask, low, high), noise_std**2)


def total_effects(weights: jax.Array) -> jax.Array:
  """A = (I − B)⁻¹ for a strictly lower-triangular B."""
  d = weights.shape[0]
  eye = jnp.eye(d, dtype=weights.dtype)
  return jax.scipy.linalg.solve_triangular(eye - weights, eye, lower=True)


def ancestor_matrix(weights: jax.Array) -> jax.Array:
  """reach[i, j] = True iff there is a directed path j → … → i (i ≠ j)."""
  reach = total_effects(jnp.abs(weights)) > 0
  return reach & ~jnp.eye(weights.shape[0], dtype=bool)


def population_covariance(sem: LinearSEM) -> jax.Array:
  """Σ = (I − B)⁻¹ D (I − B)⁻ᵀ, shape (d, d)."""
  a = total_effects(sem.weights)
  return (a * sem.noise_var) @ a.T


def intervene(sem: LinearSEM, sites: jax.Array, site_weights: jax.Array,
              site_noise_var: jax.Array) -> LinearSEM:
  """Replaces rows ``sites`` (|S|,) of B by ``site_weights`` (|S|, d) and their noise variances."""
  chex.assert_shape(site_weights, (sites.shape[0], sem.weights.shape[0]))
  return LinearSEM(sem.weights.at[sites].set(site_weights),
                   sem.noise_var.at[sites].set(site_noise_var))


def intervened_total_effects(base_effects: jax.Array, base_weights: jax.Array,
                             sites: jax.Array, site_weights: jax.Array) -> jax.Array:
  """(I − B_e)⁻¹ by the Woodbury identity from A = (I − B)⁻¹, O(|S| d²)."""
  delta = site_weights - base_weights[sites]  # (s, d)
  a_s = base_effects[:, sites]  # (d, s)
  core = jnp.eye(sites.shape[0], dtype=a_s.dtype) - delta @ a_s
  return base_effects + a_s @ jnp.linalg.solve(core, delta @ base_effects)


def sample_sem(key: jax.Array, sem: LinearSEM, n: int) -> jax.Array:
  """n samples X (n, d) of the SEM with Gaussian noise."""
  d = sem.weights.shape[0]
  eps = jax.random.normal(key, (n, d)) * jnp.sqrt(sem.noise_var)
  return eps @ total_effects(sem.weights).T
