r"""Rep4Ex: identifying representations for intervention extrapolation.

Saengkyongam, Rosenfeld, Ravikumar, Pfister & Peters, "Identifying Representations
for Intervention Extrapolation", ICLR 2024 (no official code found by our search;
equations transcribed from the paper's setup).

Model. Exogenous actions A ∈ R^k, latents Z = M₀A + V (V ⊥ A, full support),
observations X = g₀(Z) with g₀ injective, outcome Y = ℓ(Z) + U with U dependent on
V (hidden confounding). Target: E[Y | do(A = a*)] = E_V[ℓ(M₀a* + V)] for a* outside
the support of A.

Stage 1 (identification): an autoencoder (φ, η) trained with
    L = E‖X − η(φ(X))‖² + λ · MMR(r, A),   r = φ(X) − Ŵ[A; 1],
where Ŵ is the least-squares fit of φ(X) on [A; 1] inside the batch and
MMR(r, A) = (1/n²) Σ_ij r_iᵀ r_j k(A_i, A_j) (``jaxrep.stats.mmr``, Gaussian k
with the median heuristic) enforces the linear-invariance constraint
E[φ(X) | A] affine in A. Residuals are scaled by the batch std of φ(X) so the
constraint cannot be met by shrinking φ. Under the paper's assumptions any
solution satisfies φ(X) = H Z + c (affine identification).

Stage 2 (control function): V̂ = φ(X) − Ŵ[A; 1] on the whole sample, then the
additive model E[Y | φ(X), V̂] = ν(φ(X)) + κ(V̂) (two MLPs, least squares), and
    Ê[Y | do(a*)] = (1/n) Σ_i ν(Ŵ[a*; 1] + V̂_i) + (1/n) Σ_i κ(V̂_i).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.stats import kernels


class Rep4ExData(NamedTuple):
  a: jax.Array  # (n, k)
  z: jax.Array  # (n, k)
  x: jax.Array  # (n, dx)
  y: jax.Array  # (n,)


class Rep4ExSCM(NamedTuple):
  mixing: jax.Array  # M₀ (k, k)
  decoder: tuple  # g₀ weights (W1, b1, W2, b2, W3)
  noise_std: float
  confounding: float


def random_scm(key: jax.Array, k: int = 2, x_dim: int = 10, hidden: int = 10,
               noise_std: float = 0.5, confounding: float = 0.8) -> Rep4ExSCM:
  """M₀ = Q diag(U[1, 2]) (well conditioned); g₀ a 2-hidden-layer leaky-ReLU map with
  full-rank weights, hence injective."""
  k_q, k_s, k1, k2, k3, kb1, kb2 = jax.random.split(key, 7)
  q, _ = jnp.linalg.qr(jax.random.normal(k_q, (k, k)))
  mixing = q * jax.random.uniform(k_s, (k,), minval=1.0, maxval=2.0)
  w1 = jax.random.normal(k1, (hidden, k)) / jnp.sqrt(k)
  w2 = jax.random.normal(k2, (hidden, hidden)) / jnp.sqrt(hidden)
  w3 = jax.random.normal(k3, (x_dim, hidden)) / jnp.sqrt(hidden)
  b1 = 0.5 * jax.random.normal(kb1, (hidden,))
  b2 = 0.5 * jax.random.normal(kb2, (hidden,))
  return Rep4ExSCM(mixing, (w1, b1, w2, b2, w3), noise_std, confounding)


def observe(scm: Rep4ExSCM, z: jax.Array) -> jax.Array:
  """X = g₀(Z), z (n, k) → (n, dx)."""
  w1, b1, w2, b2, w3 = scm.decoder
  h = jax.nn.leaky_relu(z @ w1.T + b1, 0.2)
  h = jax.nn.leaky_relu(h @ w2.T + b2, 0.2)
  return h @ w3.T


def outcome_mean(z: jax.Array) -> jax.Array:
  """ℓ(z) = 2 sin(z₁) + 0.3 z₂² (nonlinear in Z)."""
  return 2.0 * jnp.sin(z[..., 0]) + 0.3 * z[..., 1] ** 2


def sample(key: jax.Array, scm: Rep4ExSCM, n: int, a: jax.Array | None = None) -> Rep4ExData:
  """n draws with A ~ U[−1, 1]^k (or the given actions a (n, k))."""
  k_a, k_v, k_u = jax.random.split(key, 3)
  dim = scm.mixing.shape[0]
  if a is None:
    a = jax.random.uniform(k_a, (n, dim), minval=-1.0, maxval=1.0)
  v = scm.noise_std * jax.random.normal(k_v, (n, dim))
  z = a @ scm.mixing.T + v
  u = scm.confounding * (v[:, 0] - v[:, 1]) + 0.2 * jax.random.normal(k_u, (n,))
  return Rep4ExData(a, z, observe(scm, z), outcome_mean(z) + u)


def interventional_mean(key: jax.Array, scm: Rep4ExSCM, actions: jax.Array,
                        num_samples: int = 20000) -> jax.Array:
  """E[Y | do(A = a)] = E_V ℓ(M₀a + V) by Monte Carlo (E[U] = 0), actions (m, k) → (m,)."""
  v = scm.noise_std * jax.random.normal(key, (num_samples, scm.mixing.shape[0]))
  return jax.vmap(lambda a: outcome_mean(a @ scm.mixing.T + v).mean())(actions)


class MLP(nn.Module):
  features: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for f in self.features[:-1]:
      x = nn.elu(nn.Dense(f)(x))
    return nn.Dense(self.features[-1])(x)


class Autoencoder(nn.Module):
  latent_dim: int
  x_dim: int
  width: int = 64

  def setup(self):
    self.encoder = MLP((self.width, self.width, self.latent_dim))
    self.decoder = MLP((self.width, self.width, self.x_dim))

  def __call__(self, x):
    phi = self.encoder(x)
    return phi, self.decoder(phi)

  def encode(self, x):
    return self.encoder(x)


def affine_fit(features: jax.Array, a: jax.Array, ridge: float = 1e-6) -> jax.Array:
  """Least-squares Ŵ ((k+1), p) of features (n, p) on [A, 1] (n, k+1)."""
  design = jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], 1)
  gram = design.T @ design + ridge * jnp.eye(design.shape[1], dtype=a.dtype)
  return jnp.linalg.solve(gram, design.T @ features)


def affine_residuals(features: jax.Array, a: jax.Array) -> jax.Array:
  """r = φ − [A, 1]Ŵ with the in-sample least-squares Ŵ."""
  w = affine_fit(features, a)
  return features - jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], 1) @ w


def linear_invariance_mmr(features: jax.Array, a: jax.Array,
                          bandwidth_factor: float = 0.5) -> jax.Array:
  """Unbiased MMR of the standardised affine residuals given A.

  Gaussian kernel with σ = ``bandwidth_factor`` × the median distance of A: a
  kernel much wider than A's range sees only near-affine functions of A, which
  the residuals are orthogonal to by construction, so the full median heuristic
  is almost blind to non-affine E[φ | A] (measured: no signal for φ = Z³).
  """
  r = affine_residuals(features, a) / (features.std(0) + 1e-6)
  bandwidth = jax.lax.stop_gradient(bandwidth_factor * kernels.median_bandwidth(a))
  return kernels.mmr(r, kernels.rbf_kernel(a, bandwidth=bandwidth), unbiased=True)


def autoencoder_loss_fn(model: Autoencoder):
  """``loss_fn(params, batch, rng)`` = reconstruction MSE + λ·MMR (Stage 1).

  Args: the ``Autoencoder``. Returns: loss_fn over batch {"x" (b, dx), "a" (b, k),
  "mmr_weight" () λ} with metrics ``reconstruction`` and ``mmr``.
  """

  def loss_fn(params, batch, rng):
    del rng
    x = batch["x"]
    phi, recon = model.apply(params, x)
    reconstruction = jnp.mean(jnp.sum((recon - x) ** 2, -1))
    constraint = linear_invariance_mmr(phi, batch["a"])
    return reconstruction + batch["mmr_weight"] * constraint, {
        "reconstruction": reconstruction, "mmr": constraint}

  return loss_fn


class AdditiveOutcome(nn.Module):
  """ν(φ) + κ(V̂)."""
  width: int = 64

  def setup(self):
    self.nu = MLP((self.width, self.width, 1))
    self.kappa = MLP((self.width, self.width, 1))

  def __call__(self, phi, v_hat):
    return self.nu(phi)[..., 0] + self.kappa(v_hat)[..., 0]

  def structural(self, phi):
    return self.nu(phi)[..., 0]

  def control(self, v_hat):
    return self.kappa(v_hat)[..., 0]


def control_function_loss_fn(model: AdditiveOutcome):
  """``loss_fn(params, batch, rng)`` = mean (ν(φ) + κ(V̂) − Y)² (Stage 2).

  Args: the ``AdditiveOutcome``. Returns: loss_fn over batch {"phi" (b, k),
  "v_hat" (b, k), "y" (b,)} with metric ``mse``.
  """

  def loss_fn(params, batch, rng):
    del rng
    mse = jnp.mean((model.apply(params, batch["phi"], batch["v_hat"]) - batch["y"]) ** 2)
    return mse, {"mse": mse}

  return loss_fn


def predict_interventional(model: AdditiveOutcome, params, w_hat: jax.Array,
                           v_hat: jax.Array, actions: jax.Array) -> jax.Array:
  """Ê[Y | do(a)] = mean_i ν(Ŵ[a; 1] + V̂_i) + mean_i κ(V̂_i), actions (m, k) → (m,)."""
  chex.assert_rank(actions, 2)
  mean_phi = jnp.concatenate([actions, jnp.ones((actions.shape[0], 1), actions.dtype)], 1) @ w_hat
  kappa_mean = model.apply(params, v_hat, method=AdditiveOutcome.control).mean()
  nu_mean = jax.vmap(lambda mu: model.apply(params, mu[None, :] + v_hat,
                                            method=AdditiveOutcome.structural).mean())
  return nu_mean(mean_phi) + kappa_mean


def affine_r2(features: jax.Array, z: jax.Array) -> jax.Array:
  """R² of the least-squares affine map features → Z, averaged over Z's coordinates."""
  design = jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], 1)
  coef, *_ = jnp.linalg.lstsq(design, z)
  resid = z - design @ coef
  return jnp.mean(1.0 - jnp.sum(resid**2, 0) / jnp.sum((z - z.mean(0)) ** 2, 0))
