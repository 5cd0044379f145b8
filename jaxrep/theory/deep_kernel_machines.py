r"""Deep kernel machines: the Bayesian representation-learning limit of deep GPs.

Yang, Robeyns, Milsom, Anson, Schoots & Aitchison, "A theory of representation
learning gives a deep generalisation of kernel methods", ICML 2023 (arXiv
2108.13097). No official code for this paper was found; the group's later code
(edwardmilsom/skr_cdkm, PyTorch) uses the same objective with inducing points.

Deep GP on P inputs X (P × N₀): layer ℓ = 1 … L has N_ℓ features F_ℓ (P × N_ℓ)
with iid columns ~ N(0, K(G_{ℓ−1})), Gram G_ℓ = F_ℓF_ℓᵀ/N_ℓ, G₀ = XXᵀ/N₀; the
output y (P × ν_out columns) ~ N(0, K(G_L) + σ²I). K is the ReLU (arc-cosine,
σ_w² = 2) kernel on a Gram matrix:

    K(G)_ij = (√(G_ii G_jj)/π) (sin θ_ij + (π − θ_ij) cos θ_ij),  cos θ_ij = G_ij/√(G_ii G_jj).

The Bayesian representation learning limit takes N_ℓ = N ν_ℓ and copies the
output N times; as N → ∞ the posterior over Grams concentrates on the maximiser
of the DKM objective (the paper's Eq. for L(G₁, …, G_L), per copy of y):

    L(G) = log N(y; 0, K(G_L) + σ²I) − Σ_ℓ ν_ℓ KL(N(0, G_ℓ) ‖ N(0, K(G_{ℓ−1}))),
    KL(N(0, G) ‖ N(0, K)) = ½ [tr(K⁻¹G) − log|K⁻¹G| − P],   ∂KL/∂G = ½ (K⁻¹ − G⁻¹).

As ν_ℓ → ∞ the KL terms force G_ℓ = K(G_{ℓ−1}): the NNGP kernel recursion, where
∂L/∂G is then zero in every KL term (``nngp_grams``).

Finite width (``finite_width_log_posterior``): in whitened coordinates
F_ℓ = chol(K(G_{ℓ−1})) Z_ℓ with Z_ℓ ~ N(0, I) a priori, the log posterior of the
N-times-copied output is −½ Σ_ℓ ‖Z_ℓ‖² + N log N(y; 0, K(G_L) + σ²I); we sample
it by MALA (``mala_mean_grams``) and compare E[G_ℓ] with the DKM optimum.

Sparse DKM (``sparse_dkm_objective``): M inducing points carry Gram blocks
G_ℓ^{ii} (M × M), the only optimised Grams; the P training points enter through
the GP conditional of their features given the inducing features,

    G^{it}_ℓ = G^{ii}_ℓ K_ii⁻¹ K_it,
    diag G^{tt}_ℓ = diag(K_ti K_ii⁻¹ G^{ii}_ℓ K_ii⁻¹ K_it) + diag(K_tt − K_ti K_ii⁻¹ K_it),

(K = K(G_{ℓ−1}) on [inducing; train]; the ReLU kernel needs only G^{ii}, G^{it}
and diag G^{tt}), and the output is a sparse variational GP with q(f_i) =
N(μ, SSᵀ): Σ_t E_q log N(y_t; f_t, σ²) − KL(q ‖ N(0, K_ii)) − Σ_ℓ ν_ℓ KL(G^{ii}_ℓ ‖ K_ii).
Its cost is O(P M² + M³) per evaluation, linear in P, where the full objective
costs O(P³).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["relu_kernel", "relu_kernel_blocks", "gaussian_kl", "gaussian_kl_grad",
           "output_log_likelihood", "nngp_grams", "dkm_objective", "gram_from_factor",
           "dkm_init_params", "dkm_params_grams", "finite_width_log_posterior",
           "mala_mean_grams", "SparseParams", "sparse_init_params", "sparse_dkm_objective"]

JITTER = 1e-6


# ------------------------------------------------------------------ kernel on Gram matrices

def _arccos_from_parts(cross: jax.Array, diag_a: jax.Array, diag_b: jax.Array) -> jax.Array:
  norms = jnp.sqrt(jnp.outer(diag_a, diag_b))
  cos = jnp.clip(cross / norms, -1.0 + 1e-7, 1.0 - 1e-7)
  theta = jnp.arccos(cos)
  return norms / np.pi * (jnp.sin(theta) + (np.pi - theta) * cos)


def relu_kernel(gram: jax.Array) -> jax.Array:
  """K(G): the ReLU NNGP kernel (σ_w² = 2) of features with Gram G; keeps the diagonal."""
  d = jnp.diag(gram)
  k = _arccos_from_parts(gram, d, d)
  return k.at[jnp.diag_indices_from(k)].set(d)


def relu_kernel_blocks(g_ii: jax.Array, g_it: jax.Array, diag_tt: jax.Array
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """K's blocks from Gram blocks: K_ii (M, M), K_it (M, P), diag K_tt (P,)."""
  d_i = jnp.diag(g_ii)
  k_ii = relu_kernel(g_ii)
  return k_ii, _arccos_from_parts(g_it, d_i, diag_tt), diag_tt


# ------------------------------------------------------------------ the DKM objective

def _chol(a: jax.Array) -> jax.Array:
  return jnp.linalg.cholesky(a + JITTER * jnp.trace(a) / a.shape[0] * jnp.eye(a.shape[0]))


def _logdet(chol: jax.Array) -> jax.Array:
  return 2 * jnp.sum(jnp.log(jnp.diag(chol)))


def gaussian_kl(gram: jax.Array, prior: jax.Array) -> jax.Array:
  """KL(N(0, G) ‖ N(0, K)) = ½ [tr(K⁻¹G) − log|G| + log|K| − P] (one column)."""
  lk, lg = jnp.linalg.cholesky(prior), jnp.linalg.cholesky(gram)
  trace = jnp.trace(jax.scipy.linalg.cho_solve((lk, True), gram))
  return 0.5 * (trace - _logdet(lg) + _logdet(lk) - gram.shape[0])


def gaussian_kl_grad(gram: jax.Array, prior: jax.Array) -> jax.Array:
  """∂KL/∂G = ½ (K⁻¹ − G⁻¹) (closed form; symmetric)."""
  return 0.5 * (jnp.linalg.inv(prior) - jnp.linalg.inv(gram))


def output_log_likelihood(gram_top: jax.Array, y: jax.Array, noise_var: float) -> jax.Array:
  """Σ over output columns of log N(y_c; 0, K(G_L) + σ²I); y is (P,) or (P, C)."""
  y = y.reshape(y.shape[0], -1)
  p = y.shape[0]
  chol = jnp.linalg.cholesky(relu_kernel(gram_top) + noise_var * jnp.eye(p))
  alpha = jax.scipy.linalg.solve_triangular(chol, y, lower=True)
  return (-0.5 * jnp.sum(alpha ** 2)
          - y.shape[1] * (0.5 * _logdet(chol) + 0.5 * p * np.log(2 * np.pi)))


def nngp_grams(gram_input: jax.Array, num_layers: int) -> list[jax.Array]:
  """The ν → ∞ solution: G_ℓ = K(G_{ℓ−1}), ℓ = 1 … L."""
  grams = [gram_input]
  for _ in range(num_layers):
    grams.append(relu_kernel(grams[-1]))
  return grams[1:]


def dkm_objective(grams: Sequence[jax.Array], gram_input: jax.Array, y: jax.Array,
                  nus: Sequence[float], noise_var: float) -> jax.Array:
  """L(G₁ … G_L) = log N(y; 0, K(G_L) + σ²I) − Σ_ℓ ν_ℓ KL(N(0, G_ℓ) ‖ N(0, K(G_{ℓ−1})))."""
  prev, kl = gram_input, 0.0
  for nu, g in zip(nus, grams):
    kl = kl + nu * gaussian_kl(g, relu_kernel(prev))
    prev = g
  return output_log_likelihood(grams[-1], y, noise_var) - kl


def gram_from_factor(factor: jax.Array) -> jax.Array:
  """G = V Vᵀ / P (any real V: a positive semi-definite parameterisation)."""
  return factor @ factor.T / factor.shape[0]


def dkm_init_params(gram_input: jax.Array, num_layers: int) -> list[jax.Array]:
  """Factors V_ℓ with V_ℓV_ℓᵀ/P = the NNGP Grams (the optimiser's starting point)."""
  p = gram_input.shape[0]
  return [_chol(g) * np.sqrt(p) for g in nngp_grams(gram_input, num_layers)]


def dkm_params_grams(params: Sequence[jax.Array]) -> list[jax.Array]:
  return [gram_from_factor(v) for v in params]


# ------------------------------------------------------------------ finite-width deep GP

def finite_width_grams(zs: Sequence[jax.Array], gram_input: jax.Array) -> list[jax.Array]:
  """Whitened features Z_ℓ (P × N_ℓ) → Grams G_ℓ = F_ℓF_ℓᵀ/N_ℓ, F_ℓ = chol(K(G_{ℓ−1})) Z_ℓ."""
  prev, grams = gram_input, []
  for z in zs:
    f = _chol(relu_kernel(prev)) @ z
    prev = f @ f.T / z.shape[1]
    grams.append(prev)
  return grams


def finite_width_log_posterior(zs: Sequence[jax.Array], gram_input: jax.Array, y: jax.Array,
                               copies: int, noise_var: float) -> jax.Array:
  """log p(Z | y copied ``copies`` times) up to a constant, whitened coordinates."""
  grams = finite_width_grams(zs, gram_input)
  prior = -0.5 * sum(jnp.sum(z ** 2) for z in zs)
  return prior + copies * output_log_likelihood(grams[-1], y, noise_var)


class MalaResult(NamedTuple):
  mean_grams: list[jax.Array]
  acceptance: jax.Array


def mala_mean_grams(key: jax.Array, log_post, zs0: Sequence[jax.Array], gram_input: jax.Array,
                    step_size: float, num_steps: int, burn_in: int,
                    target_acceptance: float = 0.574) -> MalaResult:
  """Metropolis-adjusted Langevin on Z; returns E[G_ℓ] over the post-burn-in samples.

  Proposal Z' = Z + (h/2)∇log p(Z) + √h ξ, accepted with the MH ratio. During
  burn-in, log h follows a Robbins–Monro step towards ``target_acceptance``; it is
  then frozen, so the kept samples come from a fixed MH kernel. ``acceptance`` is the
  post-burn-in acceptance rate.
  """
  value_grad = jax.value_and_grad(log_post)

  def log_q(to, frm, grad_frm, h):  # log density of proposing `to` from `frm`
    return -sum(jnp.sum((t - f - 0.5 * h * g) ** 2)
                for t, f, g in zip(to, frm, grad_frm)) / (2 * h)

  def step(carry, inputs):
    zs, lp, grad, log_h, accepted = carry
    k, t = inputs
    h = jnp.exp(log_h)
    k_noise, k_acc = jax.random.split(k)
    noises = [jax.random.normal(kk, z.shape) for kk, z in
              zip(jax.random.split(k_noise, len(zs)), zs)]
    prop = [z + 0.5 * h * g + jnp.sqrt(h) * n for z, g, n in zip(zs, grad, noises)]
    lp_prop, grad_prop = value_grad(prop)
    log_ratio = lp_prop - lp + log_q(zs, prop, grad_prop, h) - log_q(prop, zs, grad, h)
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    accept = jnp.log(jax.random.uniform(k_acc)) < log_ratio
    pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)
    zs, lp, grad = pick(prop, zs), jnp.where(accept, lp_prop, lp), pick(grad_prop, grad)
    adapting = t < burn_in
    rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
    log_h = log_h + jnp.where(adapting, (rate - target_acceptance) / jnp.sqrt(t + 10.0), 0.0)
    accepted = accepted + jnp.where(adapting, 0, accept.astype(jnp.int32))
    return (zs, lp, grad, log_h, accepted), finite_width_grams(zs, gram_input)

  lp0, grad0 = value_grad(list(zs0))
  init = (list(zs0), lp0, grad0, jnp.log(step_size) + 0 * lp0,
          jnp.zeros_like(lp0, jnp.int32))                       # (varying under shard_map)
  (_, _, _, _, accepted), grams = jax.lax.scan(
      step, init, (jax.random.split(key, num_steps), jnp.arange(num_steps)))
  mean = [jnp.mean(g[burn_in:], 0) for g in grams]
  return MalaResult(mean, accepted / (num_steps - burn_in))


# ------------------------------------------------------------------ sparse (inducing-point) DKM

class SparseParams(NamedTuple):
  factors: list[jax.Array]     # V_ℓ (M, M): G^{ii}_ℓ = V Vᵀ / M
  out_mean: jax.Array          # μ (M,)
  out_scale: jax.Array         # S (M, M), lower triangle used


def sparse_init_params(gram_inducing: jax.Array, num_layers: int) -> SparseParams:
  m = gram_inducing.shape[0]
  factors = [_chol(g) * np.sqrt(m) for g in nngp_grams(gram_inducing, num_layers)]
  return SparseParams(factors, jnp.zeros(m), 0.1 * jnp.eye(m))


def sparse_dkm_objective(params: SparseParams, x_inducing: jax.Array, x: jax.Array,
                         y: jax.Array, nus: Sequence[float], noise_var: float) -> jax.Array:
  """Inducing-point DKM objective: O(P M²) in the number P of training points."""
  n0 = x.shape[1]
  g_ii = x_inducing @ x_inducing.T / n0
  g_it = x_inducing @ x.T / n0
  diag_tt = jnp.sum(x ** 2, 1) / n0
  kl = 0.0
  for nu, v in zip(nus, params.factors):
    k_ii, k_it, kdiag_tt = relu_kernel_blocks(g_ii, g_it, diag_tt)
    chol = _chol(k_ii)
    a = jax.scipy.linalg.cho_solve((chol, True), k_it)                # K_ii⁻¹ K_it (M, P)
    new_ii = gram_from_factor(v)
    kl = kl + nu * gaussian_kl(new_ii, k_ii)
    g_it = new_ii @ a
    diag_tt = (jnp.sum(a * g_it, 0) + kdiag_tt - jnp.sum(a * k_it, 0))
    g_ii = new_ii
  k_ii, k_it, kdiag_tt = relu_kernel_blocks(g_ii, g_it, diag_tt)
  chol = _chol(k_ii)
  a = jax.scipy.linalg.cho_solve((chol, True), k_it)
  s = jnp.tril(params.out_scale)
  mean_t = a.T @ params.out_mean
  sa = s.T @ a                                                        # (M, P)
  var_t = kdiag_tt - jnp.sum(a * k_it, 0) + jnp.sum(sa ** 2, 0)
  expected_ll = jnp.sum(-0.5 * np.log(2 * np.pi * noise_var)
                        - 0.5 * ((y - mean_t) ** 2 + var_t) / noise_var)
  m = k_ii.shape[0]
  # KL(N(μ, SSᵀ) ‖ N(0, K_ii))
  kl_out = 0.5 * (jnp.trace(jax.scipy.linalg.cho_solve((chol, True), s @ s.T))
                  + params.out_mean @ jax.scipy.linalg.cho_solve((chol, True), params.out_mean)
                  - m + _logdet(chol) - 2 * jnp.sum(jnp.log(jnp.abs(jnp.diag(s)) + 1e-12)))
  return expected_ll - kl_out - kl
