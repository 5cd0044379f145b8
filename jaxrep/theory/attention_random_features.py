r"""A single random-feature attention layer, its limiting kernel, and a random-feature MLP.

Fu, Guo, Bai & Mei, "What can a Single Attention Layer Learn? A Study Through
the Random Features Lens", NeurIPS 2023 (arXiv 2307.11353). No official code
was found; the scalings below are ours where the paper's could not be checked.

Input: a query x₀ ∈ ℝᵈ and N keys X = (x₁, …, x_N), all on the unit sphere.
Random-feature attention with M heads (frozen query-key matrices W_m, trainable
values v_m ∈ ℝᵈ):

    f(x₀, X) = Σ_{m≤M} (1/N) Σ_{i≤N} σ(x₀ᵀ W_m x_i) ⟨v_m, x_i⟩,   σ = ReLU,
    W_m = μ I + Z_m / √d,   Z_m entries iid N(0, 1),

with μ = 0 (the zero-mean model) or μ = 1 (the paper's non-zero-mean, "W̄ = I"
model). The model is linear in the M·d values: f = ⟨v, φ(x₀, X)⟩ with the
feature φ_m = (1/N) Σ_i σ(x₀ᵀ W_m x_i) x_i (scaled by 1/√M here), so fitting the
values by ridge regression is kernel ridge regression with the random-feature
kernel

    K_M(X, X') = (1/M) Σ_m ⟨φ_m(X), φ_m(X')⟩  →  K(X, X') = (1/N²) Σ_{i,j} κ_ij ⟨x_i, x'_j⟩,
    κ_ij = E[σ(u_i) σ(u'_j)],  u_i = μ⟨x₀, x_i⟩ + z_i,  (z_i, z'_j) ~ N(0, (1/d)[[1, ρ],[ρ, 1]]),
    ρ_ij = ⟨x₀, x₀'⟩ ⟨x_i, x'_j⟩                                  (unit-norm inputs),

at rate M^{-1/2} (Monte-Carlo average of M iid heads). For μ = 0, κ is the
degree-1 arc-cosine kernel (Cho & Saul 2009): κ = (1/(2πd)) (√(1−ρ²) + (π − arccos ρ) ρ),
a closed form. For μ ≠ 0 it has no elementary closed form; we evaluate it by
one-dimensional Gauss–Legendre quadrature of the exact conditional ReLU mean
E[σ(b + s h)] = b Φ(b/s) + s φ(b/s) (``attention_kernel``; high precision, not
closed form).

Baseline: a random-feature MLP on the concatenated input z = [x₀; x₁; …; x_N]
with as many trainable (second-layer) weights as the attention layer has
values, M·d: features σ(w_kᵀ z)/√K, w_k ~ N(0, I), K = M·d.

Both readouts are fitted in closed form by kernel ridge regression
(``kernel_ridge_predict``); the penalty is chosen on a validation split.

Scalings chosen by us (the paper's constants could not be read): inputs on
the unit sphere S^{d−1}; the noise part Z/√d of W_m gives pre-activation
std 1/√d, equal to the typical size of the bias term ⟨x₀, x_i⟩ when μ = 1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.core import linalg

__all__ = ["sample_sphere", "sample_sequences", "sequence_targets", "sample_attention_weights",
           "attention_features", "arccos_kernel", "relu_pair_expectation",
           "attention_kernel", "sample_mlp_weights", "mlp_features", "gram",
           "kernel_ridge_predict"]


# ------------------------------------------------------------------ data and targets

def sample_sphere(key: jax.Array, shape: tuple[int, ...], dim: int) -> jax.Array:
  """Uniform on the unit sphere S^{dim−1}: shape + (dim,)."""
  g = jax.random.normal(key, (*shape, dim))
  return g / jnp.linalg.norm(g, axis=-1, keepdims=True)


def sample_sequences(key: jax.Array, num: int, num_keys: int, dim: int
                     ) -> tuple[jax.Array, jax.Array]:
  """``num`` (query, keys) pairs: x₀ (num, d) and X (num, N, d), iid uniform on S^{d−1}."""
  k0, k1 = jax.random.split(key)
  return sample_sphere(k0, (num,), dim), sample_sphere(k1, (num, num_keys), dim)


def sequence_targets(query: jax.Array, keys: jax.Array, beta: jax.Array) -> dict[str, jax.Array]:
  """The paper's permutation-invariant targets (1/N) Σ_i F(x₀, x_i), plus a control.

  quadratic ⟨x₀, x_i⟩², quartic ⟨x₀, x_i⟩⁴, beta_quadratic (⟨β, x₀⟩⟨β, x_i⟩)²;
  ``first_key`` = ⟨x₀, x₁⟩² depends on the keys' order, which a permutation-
  invariant attention layer cannot represent (a negative control).
  """
  t = jnp.einsum("nd,nkd->nk", query, keys)
  b0, bk = query @ beta, keys @ beta
  return {"quadratic": jnp.mean(t ** 2, -1), "quartic": jnp.mean(t ** 4, -1),
          "beta_quadratic": jnp.mean((b0[:, None] * bk) ** 2, -1),
          "first_key": t[:, 0] ** 2}


# ------------------------------------------------------------------ random-feature attention

def sample_attention_weights(key: jax.Array, num_heads: int, dim: int, mean_scale: float
                             ) -> jax.Array:
  """Frozen query-key matrices W_m = μ I + Z_m/√d, Z iid N(0, 1): (M, d, d)."""
  z = jax.random.normal(key, (num_heads, dim, dim)) / np.sqrt(dim)
  return mean_scale * jnp.eye(dim) + z


def attention_features(weights: jax.Array, query: jax.Array, keys: jax.Array) -> jax.Array:
  """φ(x₀, X) ∈ ℝ^{M(d+1)}: head m's block is (1/N) Σ_i σ(x₀ᵀ W_m x_i) [x_i; 1], all / √M.

  Args: weights (M, d, d); query (d,); keys (N, d). Returns (M·(d+1),).
  """
  scores = jax.nn.relu(jnp.einsum("a,mab,nb->mn", query, weights, keys))  # (M, N)
  values = jnp.concatenate([keys, jnp.ones((keys.shape[0], 1), keys.dtype)], -1)
  blocks = scores @ values / keys.shape[0]                                 # (M, d + 1)
  return blocks.reshape(-1) / np.sqrt(weights.shape[0])


def arccos_kernel(rho: jax.Array, variance: float) -> jax.Array:
  """E[σ(z)σ(z')] for (z, z') ~ N(0, variance·[[1, ρ],[ρ, 1]]): degree-1 arc-cosine."""
  rho = jnp.clip(rho, -1.0, 1.0)
  return variance / (2 * np.pi) * (jnp.sqrt(1 - rho ** 2) + (np.pi - jnp.arccos(rho)) * rho)


def _relu_gaussian_mean(mean: jax.Array, std: jax.Array) -> jax.Array:
  """E[σ(mean + std·h)], h ~ N(0, 1)."""
  std = jnp.maximum(std, 1e-12)
  r = mean / std
  return mean * jax.scipy.stats.norm.cdf(r) + std * jax.scipy.stats.norm.pdf(r)


def relu_pair_expectation(a: jax.Array, b: jax.Array, rho: jax.Array, variance: float,
                          num_nodes: int = 96, width: float = 9.0) -> jax.Array:
  """E[σ(a + z) σ(b + z')] for (z, z') ~ N(0, variance·[[1, ρ],[ρ, 1]]) (broadcasting).

  With z = s g: E_g[σ(a + s g) · E[σ(b + s ρ g + s√(1−ρ²) h) | g]]; the inner mean is
  exact (``_relu_gaussian_mean``) and the outer integral runs over g > −a/s, where
  σ(a + s g) is smooth, by Gauss–Legendre quadrature on [max(−a/s, −width), width].
  """
  s = np.sqrt(variance)
  nodes, node_weights = np.polynomial.legendre.leggauss(num_nodes)
  lower = jnp.maximum(-a / s, -width)[..., None]
  half = (width - lower) / 2
  g = lower + half * (jnp.asarray(nodes) + 1)                       # (..., Q)
  rho_ = jnp.clip(rho, -1.0, 1.0)[..., None]
  inner = _relu_gaussian_mean(b[..., None] + s * rho_ * g, s * jnp.sqrt(1 - rho_ ** 2))
  integrand = (a[..., None] + s * g) * inner * jax.scipy.stats.norm.pdf(g)
  return jnp.sum(half * jnp.asarray(node_weights) * integrand, -1)


def attention_kernel(query_a: jax.Array, keys_a: jax.Array, query_b: jax.Array,
                     keys_b: jax.Array, mean_scale: float) -> jax.Array:
  """The M → ∞ kernel K(X, X') = (1/N²) Σ_ij κ_ij (⟨x_i, x'_j⟩ + 1) of ``attention_features``.

  μ = 0: closed-form arc-cosine κ; μ ≠ 0: quadrature (``relu_pair_expectation``).
  """
  dim = query_a.shape[-1]
  gram_keys = keys_a @ keys_b.T                                     # (N, N')
  rho = (query_a @ query_b) * gram_keys
  if mean_scale == 0:
    kappa = arccos_kernel(rho, 1.0 / dim)
  else:
    ta, tb = mean_scale * keys_a @ query_a, mean_scale * keys_b @ query_b
    kappa = relu_pair_expectation(ta[:, None] + 0 * rho, tb[None, :] + 0 * rho, rho, 1.0 / dim)
  return jnp.mean(kappa * (gram_keys + 1))


# ------------------------------------------------------------------ random-feature MLP baseline

def sample_mlp_weights(key: jax.Array, width: int, num_keys: int, dim: int) -> jax.Array:
  """First-layer weights of the RF-MLP on [x₀; x₁; …; x_N]: (width, (N+1)·d), iid N(0, 1)."""
  return jax.random.normal(key, (width, (num_keys + 1) * dim))


def mlp_features(weights: jax.Array, query: jax.Array, keys: jax.Array) -> jax.Array:
  """σ(W z)/√K with z = [x₀; x₁; …; x_N] (keys in their given order): (K,)."""
  z = jnp.concatenate([query, keys.reshape(-1)])
  return jax.nn.relu(weights @ z) / np.sqrt(weights.shape[0])


# ------------------------------------------------------------------ kernel ridge readout

def gram(features_a: jax.Array, features_b: jax.Array) -> jax.Array:
  """Gram matrix of two feature sets (n_a, F) × (n_b, F) → (n_a, n_b), float32 accumulation."""
  return features_a @ features_b.T


def kernel_ridge_predict(k_train: jax.Array, y_train: jax.Array, k_eval: jax.Array,
                         ridge: float | jax.Array) -> jax.Array:
  """Kernel ridge regression in dual form: k_eval (K + λ I)⁻¹ y.

  Args: k_train (n, n); y_train (n,) or (n, T); k_eval (m, n); ridge λ.
  Returns predictions (m,) or (m, T): the same as ridge regression on the
  features, argmin_v ‖Φv − y‖² + λ‖v‖² (the primal form; tested).
  """
  n = k_train.shape[0]
  alpha = linalg.solve(k_train + ridge * jnp.eye(n, dtype=k_train.dtype), y_train)
  return k_eval @ alpha
