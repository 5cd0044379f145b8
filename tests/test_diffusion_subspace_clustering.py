"""MoLRG and the low-rank denoiser (Wang et al. 2024): the closed-form posterior mean,
the sampler's law, the K = 1 PCA minimiser, the QR retraction and principal angles."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from jaxrep.diffusion import gaussian_mixture, schedules
from jaxrep.diffusion import subspace_clustering as sc


def _bases(n=10, k=2, d=3, seed=0):
  return sc.orthogonal_bases(jax.random.PRNGKey(seed), n, k, d)


def test_low_rank_denoiser_with_true_bases_is_the_posterior_mean():
  """With the true bases the low-rank model equals the exact mixture denoiser
  (gaussian_mixture_denoiser, means 0, covariances UUᵀ). Catches: a wrong shrinkage
  α/(α²+σ²), a missing α² or (α²+σ²) in the soft-max logits, a wrong projection."""
  with jax.enable_x64(True):
    process = schedules.VPCosine()
    bases = _bases().astype(jnp.float64)
    exact = gaussian_mixture.gaussian_mixture_denoiser(
        process, jnp.full(2, 0.5), jnp.zeros((2, 10)), sc.molrg_covariances(bases))
    x0, _ = sc.sample_molrg(jax.random.PRNGKey(1), 64, bases)
    t = jnp.linspace(0.05, 0.95, 64)
    x_t = schedules.q_sample(process, jax.random.PRNGKey(2), x0, t)
    ours = sc.low_rank_apply(process)({"bases": bases}, x_t, t)
    np.testing.assert_allclose(ours, exact(x_t, t), atol=1e-9, rtol=1e-9)


def test_sampler_covariance_and_support():
  """Samples lie in their component's subspace and have covariance Σ_k π_k U_kU_kᵀ
  (a 5σ Monte-Carlo bound per entry) with π = 1/2 each. Catches: coordinates drawn
  with a wrong scale, the wrong component's basis, a biased component choice."""
  bases = _bases(n=6, k=2, d=2, seed=3)
  num = 40_000
  x, k = sc.sample_molrg(jax.random.PRNGKey(4), num, bases)
  x, k = np.asarray(x, np.float64), np.asarray(k)
  b = np.asarray(bases, np.float64)
  residual = x - np.einsum("nij,nkj,nk->ni", b[k], b[k], x)
  assert np.abs(residual).max() < 1e-5
  target = 0.5 * np.asarray(sc.molrg_covariances(bases)).sum(0)
  empirical = x.T @ x / num
  # Var of x_i x_j ≤ E[x_i²x_j²] ≤ 3 (unit-variance Gaussian coordinates)
  assert np.abs(empirical - target).max() < 5 * np.sqrt(3 / num)
  assert abs(k.mean() - 0.5) < 5 * 0.5 / np.sqrt(num)


def test_single_subspace_minimiser_is_pca():
  """K = 1: the closed-form expected loss is minimised by the top-d principal subspace
  of the samples; random orthonormal bases and small rotations of it do worse.
  Catches: a loss whose minimiser is not PCA (e.g. a wrong noise term c²σ²d)."""
  with jax.enable_x64(True):
    key = jax.random.PRNGKey(5)
    x = jax.random.normal(key, (200, 8)) * jnp.array([3, 2.5, 2, .5, .4, .3, .2, .1])
    pca = jnp.linalg.eigh(x.T @ x)[1][:, ::-1][:, :3]
    loss = lambda u: sc.expected_denoising_loss_single(u, x, 0.8, 0.6)
    best = loss(pca)
    for s in range(20):
      u = sc.random_stiefel(jax.random.PRNGKey(10 + s), 1, 8, 3)[0]
      assert loss(u) > best
      near = sc.qr_orthonormalize(pca + 0.05 * jax.random.normal(jax.random.PRNGKey(50 + s),
                                                                  pca.shape))
      assert loss(near) > best
    # and the Riemannian gradient at the PCA basis vanishes
    g = jax.grad(loss)(pca)
    riemannian = g - pca @ (pca.T @ g + g.T @ pca) / 2
    assert jnp.abs(riemannian).max() < 1e-9


def test_monte_carlo_loss_matches_closed_form():
  """The core's denoising_loss_fn on the low-rank model at a fixed t averages to the
  closed-form K = 1 loss. Catches: the model fed through the loss with the wrong
  prediction kind or time argument."""
  from jaxrep.diffusion import parameterization
  process = schedules.VPCosine()
  t0 = 0.4
  loss_fn = parameterization.denoising_loss_fn(
      sc.low_rank_apply(process), process, prediction="x0",
      time_sampler=lambda key, shape: jnp.full(shape, t0))
  u = sc.random_stiefel(jax.random.PRNGKey(0), 1, 6, 2)
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 6))
  rows = jnp.tile(x, (4000, 1))
  mc, _ = loss_fn({"bases": u}, {"x": rows}, jax.random.PRNGKey(2))
  c = schedules.coefficients(process, jnp.asarray(t0))
  closed = sc.expected_denoising_loss_single(u[0], x, c.alpha, c.sigma) / 6  # per dim
  np.testing.assert_allclose(mc, closed, rtol=0.02)


def test_retraction_keeps_bases_orthonormal_and_fixes_orthonormal_points():
  """qr_orthonormalize maps an orthonormal U to itself (sign fix) and the retraction
  lands on the Stiefel manifold after an Adam step. Catches: a missing sign
  correction (columns flip) or a retraction that returns U + ΔU."""
  # Haar orthonormal columns (their Householder R has negative diagonal entries)
  u = jnp.stack([jax.random.orthogonal(jax.random.PRNGKey(i), 9)[:, :3] for i in range(2)])
  np.testing.assert_allclose(sc.qr_orthonormalize(u), u, atol=1e-5)
  opt = sc.stiefel_retraction(optax.adam(0.3))
  params = {"bases": u}
  state = opt.init(params)
  grads = {"bases": jax.random.normal(jax.random.PRNGKey(1), u.shape)}
  updates, _ = opt.update(grads, state, params)
  new = optax.apply_updates(params, updates)["bases"]
  np.testing.assert_allclose(jnp.einsum("kni,knj->kij", new, new),
                             np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-5)
  assert jnp.abs(new - u).max() > 1e-2


@pytest.mark.reference
def test_principal_angles_match_scipy_and_permutation():
  """sin θ_max agrees with scipy.linalg.subspace_angles, and the recovery error is
  invariant to relabelling the components and to a rotation within each subspace.
  Catches: taking the smallest angle, or no matching over permutations."""
  key_a, key_b, key_r = jax.random.split(jax.random.PRNGKey(0), 3)
  a = sc.random_stiefel(key_a, 2, 10, 3)
  b = sc.random_stiefel(key_b, 2, 10, 3)
  for i in range(2):
    ref = np.sin(np.max(scipy.linalg.subspace_angles(np.asarray(a[i], np.float64),
                                                     np.asarray(b[i], np.float64))))
    np.testing.assert_allclose(sc.max_sin_principal_angle(a[i], b[i]), ref, atol=1e-5)
  rotation = jax.random.orthogonal(key_r, 3)
  same = jnp.einsum("knd,de->kne", a[::-1], rotation)
  assert sc.subspace_recovery_error(same, a) < 1e-3
  assert sc.subspace_recovery_error(b, a) > 0.5
