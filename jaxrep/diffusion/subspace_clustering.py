r"""Diffusion models learn a mixture of low-rank Gaussians by subspace clustering.

Paper: Wang, Zhang, Zhou, Qu, "Diffusion Models Learn Low-Dimensional
Distributions via Subspace Clustering" (2024; the MoLRG analysis). The data
model, the low-rank denoiser and the success criterion, in the notation of
``jaxrep.diffusion.schedules`` (x_t = α x₀ + σ ε; the paper writes s_t, s_tγ_t):

* Mixture of low-rank Gaussians (MoLRG): k ~ Categorical(π), a ~ N(0, I_d),
  x₀ = U*_k a ∈ R^n with U*_k ∈ O^{n×d} (orthonormal columns); the K subspaces
  are mutually orthogonal, U*_kᵀ U*_l = 0 (the paper's assumption; the official
  data builder takes disjoint column blocks of one random orthogonal matrix,
  ``huijieZH/Diffusion-Model-Generalizability`` ``edm/training/dataset.py``,
  class ``MoLRG``). ``sample_molrg``, ``orthogonal_bases``.
* Its posterior mean (Tweedie; the optimal x₀-denoiser) with C = α²UUᵀ + σ²I:

      E[x₀ | x_t] = Σ_k w_k(x_t) · α/(α² + σ²) · U_k U_kᵀ x_t,
      w_k ∝ π_k exp(α² ‖U_kᵀ x_t‖² / (2σ²(α² + σ²))),

  which is ``jaxrep.diffusion.gaussian_mixture_denoiser`` with means 0 and
  covariances U_k U_kᵀ (a property test checks the two agree).
* The low-rank denoiser (the paper's network parameterisation) is the same
  expression with learned U_k ∈ O^{n×d}: ``low_rank_denoiser``. It is trained
  with the core's ``denoising_loss_fn`` (x₀-prediction, unweighted) while each
  U_k stays on the Stiefel manifold by a QR retraction after every optimizer
  step (``stiefel_retraction`` wraps any optax optimizer).
* Theory: for K = 1 the loss is minimised by the top-d principal subspace of the
  training samples (PCA); for K > 1 minimising it is subspace clustering of the
  training samples, and N_k ≥ d samples per subspace suffice to recover U*_k,
  so the number of samples needed grows linearly with d.
* Success: the learned subspaces match the true ones up to a permutation,
  max_k sin θ_max(U_k, U*_{π(k)}) < 0.1 (θ_max the largest principal angle;
  ``subspace_recovery_error``).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.diffusion import schedules
from jaxrep.diffusion.schedules import NoiseProcess

PyTree = Any


# ---------------------------------------------------------------------------
# Data: the mixture of low-rank Gaussians


def orthogonal_bases(key: jax.Array, ambient_dim: int, num_components: int,
                     intrinsic_dim: int) -> jax.Array:
  """(K, n, d) orthonormal bases of K mutually orthogonal d-dim subspaces of R^n:
  disjoint column blocks of one Haar-random orthogonal matrix (needs K·d ≤ n)."""
  if num_components * intrinsic_dim > ambient_dim:
    raise ValueError(f"K·d = {num_components * intrinsic_dim} > n = {ambient_dim}")
  q = jax.random.orthogonal(key, ambient_dim)
  q = q[:, :num_components * intrinsic_dim]
  return jnp.transpose(q.reshape(ambient_dim, num_components, intrinsic_dim), (1, 0, 2))


def random_stiefel(key: jax.Array, num_components: int, ambient_dim: int,
                   intrinsic_dim: int) -> jax.Array:
  """(K, n, d) independent Haar-random orthonormal bases (the model's init)."""
  z = jax.random.normal(key, (num_components, ambient_dim, intrinsic_dim))
  return qr_orthonormalize(z)


def sample_molrg(key: jax.Array, num: int, bases: jax.Array,
                 weights: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """num draws x₀ = U_k a, k ~ Categorical(weights) (default uniform), a ~ N(0, I_d).

  Returns (x (num, n), component (num,) int)."""
  chex.assert_rank(bases, 3)
  num_components, _, d = bases.shape
  key_k, key_a = jax.random.split(key)
  logits = (jnp.zeros(num_components) if weights is None else jnp.log(weights))
  k = jax.random.categorical(key_k, logits, shape=(num,))
  a = jax.random.normal(key_a, (num, d))
  return jnp.einsum("nij,nj->ni", bases[k], a), k


def molrg_covariances(bases: jax.Array) -> jax.Array:
  """(K, n, n) component covariances U_k U_kᵀ."""
  return jnp.einsum("kid,kjd->kij", bases, bases)


# ---------------------------------------------------------------------------
# The low-rank denoiser


def low_rank_denoiser(bases: jax.Array, x_t: jax.Array, alpha: jax.Array, sigma: jax.Array,
                      log_weights: jax.Array | None = None) -> jax.Array:
  """x̂₀ = Σ_k w_k α/(α²+σ²) U_k U_kᵀ x_t,
  w = softmax_k(log π_k + α²‖U_kᵀx_t‖²/(2σ²(α²+σ²))).

  bases (K, n, d); x_t (batch, n); alpha, sigma (batch, 1) (or broadcastable).
  With orthonormal U_k this is the exact posterior mean of the MoLRG with bases U_k."""
  chex.assert_rank([bases, x_t], [3, 2])
  coords = jnp.einsum("knd,bn->bkd", bases, x_t)                   # U_kᵀ x_t
  energy = jnp.sum(coords**2, axis=-1)                              # (batch, K)
  shrink = alpha / (alpha**2 + sigma**2)                            # (batch, 1)
  logits = alpha**2 * energy / (2 * sigma**2 * (alpha**2 + sigma**2))
  if log_weights is not None:
    logits = logits + log_weights
  w = jax.nn.softmax(logits, axis=-1)
  projections = jnp.einsum("knd,bkd->bkn", bases, coords)           # U_k U_kᵀ x_t
  return shrink * jnp.einsum("bk,bkn->bn", w, projections)


def low_rank_apply(process: NoiseProcess) -> Callable[[PyTree, jax.Array, jax.Array], jax.Array]:
  """``apply_fn(params, x_t, t)`` → x̂₀ for params {"bases": (K, n, d)}, t (batch,);
  an ``"x0"`` prediction for ``denoising_loss_fn`` and the samplers."""

  def apply_fn(params, x_t, t):
    c = schedules.coefficients(process, t, x_t)
    return low_rank_denoiser(params["bases"], x_t, c.alpha, c.sigma)

  return apply_fn


# ---------------------------------------------------------------------------
# Optimisation on the Stiefel manifold


def qr_orthonormalize(matrices: jax.Array) -> jax.Array:
  """Q of A = QR with sign(diag R) > 0 (so an orthonormal A maps to itself); (..., n, d)."""
  q, r = jnp.linalg.qr(matrices)
  signs = jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))
  signs = jnp.where(signs == 0, 1.0, signs)
  return q * signs[..., None, :]


def stiefel_retraction(optimizer: optax.GradientTransformation
                       ) -> optax.GradientTransformation:
  """``optimizer`` followed by the QR retraction U ← qf(U + ΔU) on every leaf of shape
  (..., n, d): the update returned is qf(U + ΔU) − U, so ``optax.apply_updates``
  lands on an orthonormal U (the paper's training keeps U_k ∈ O^{n×d})."""

  def init(params):
    return optimizer.init(params)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("stiefel_retraction needs params in update()")
    updates, state = optimizer.update(updates, state, params)
    retracted = jax.tree.map(lambda p, u: qr_orthonormalize(p + u) - p, params, updates)
    return retracted, state

  return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------
# Success criterion


def max_sin_principal_angle(u: jax.Array, v: jax.Array) -> jax.Array:
  """sin θ_max between span(u) and span(v), orthonormal (n, d) each:
  cos θ_i are the singular values of uᵀv, so sin θ_max = √(1 − σ_min(uᵀv)²)."""
  s = jnp.linalg.svd(u.T @ v, compute_uv=False)
  return jnp.sqrt(jnp.clip(1.0 - jnp.min(s)**2, 0.0, 1.0))


def subspace_recovery_error(learned: jax.Array, true: jax.Array) -> jax.Array:
  """min over permutations π of max_k sin θ_max(U_k, U*_{π(k)}); (K, n, d) each.
  Exhaustive over the K! matchings (K is small)."""
  chex.assert_equal_shape((learned, true))
  num = learned.shape[0]
  pairwise = jax.vmap(lambda u: jax.vmap(lambda v: max_sin_principal_angle(u, v))(true))(
      learned)                                                      # (K, K)
  perms = jnp.asarray(list(itertools.permutations(range(num))))     # (K!, K)
  per_perm = jnp.max(pairwise[jnp.arange(num)[None], perms], axis=1)
  return jnp.min(per_perm)


def expected_denoising_loss_single(basis: jax.Array, x0: jax.Array, alpha: float,
                                   sigma: float) -> jax.Array:
  """E_ε ‖c UUᵀ(α x₀ + σ ε) − x₀‖², c = α/(α²+σ²), averaged over rows of x₀
  (K = 1), in closed form: mean_i ‖(cα UUᵀ − I) x₀ᵢ‖² + c²σ² d. Minimised over
  U ∈ O^{n×d} by the top-d principal subspace of the rows (the paper's K = 1 result)."""
  c = alpha / (alpha**2 + sigma**2)
  residual = c * alpha * (x0 @ basis) @ basis.T - x0
  return jnp.mean(jnp.sum(residual**2, -1)) + c**2 * sigma**2 * basis.shape[1]
