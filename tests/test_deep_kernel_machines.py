"""Deep kernel machines: ∂KL/∂G against autodiff, the ν → ∞ (NNGP) optimum at zero gradient,
the ReLU Gram kernel against Monte Carlo, and the sparse objective against the full one."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.theory import deep_kernel_machines as dkm


def _data(p=7, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(p, 3))
  return jnp.asarray(x), jnp.asarray(rng.normal(size=p))


def _spd(p, seed):
  a = np.random.default_rng(seed).normal(size=(p, p + 10))
  return jnp.asarray(a @ a.T / (p + 10))


def test_kl_gradient_matches_autodiff():
  """∂KL/∂G = ½(K⁻¹ − G⁻¹); catches a wrong trace/log-det term in ``gaussian_kl``."""
  with jax.enable_x64(True):
    g, k = _spd(6, 1), _spd(6, 2)
    auto = jax.grad(dkm.gaussian_kl)(g, k)
    np.testing.assert_allclose(auto, dkm.gaussian_kl_grad(g, k), rtol=1e-6, atol=1e-9)
    assert abs(float(dkm.gaussian_kl(k, k))) < 1e-9


def test_nngp_is_the_infinite_nu_optimum_with_zero_kl_gradient():
  """At G_ℓ = K(G_{ℓ−1}) every KL term and its gradient w.r.t. all Grams vanish, so as
  ν → ∞ the DKM optimum is the NNGP; catches a wrong kernel recursion or KL direction."""
  with jax.enable_x64(True):
    x, y = _data()
    g0 = x @ x.T / x.shape[1]
    grams = dkm.nngp_grams(g0, 3)
    kl_sum = lambda gs: dkm.dkm_objective(gs, g0, y, (1.0,) * 3, 0.1) - \
        dkm.output_log_likelihood(gs[-1], y, 0.1)
    grad = jax.grad(kl_sum)(grams)
    assert abs(float(kl_sum(grams))) < 1e-8
    assert max(float(jnp.max(jnp.abs(gr))) for gr in grad) < 1e-5
    # a perturbation lowers the ν = 1e4 objective
    bumped = [g + 0.01 * _spd(7, 5) for g in grams]
    big = lambda gs: dkm.dkm_objective(gs, g0, y, (1e4,) * 3, 0.1)
    assert float(big(grams)) > float(big(bumped))


def test_relu_kernel_matches_monte_carlo():
  """K(G) = 2 E[σ(h)σ(h)ᵀ], h ~ N(0, G): catches a missing 1/π or a wrong angle term."""
  g = np.asarray(_spd(5, 3))
  h = np.random.default_rng(0).multivariate_normal(np.zeros(5), g, size=400_000)
  mc = 2 * np.maximum(h, 0).T @ np.maximum(h, 0) / len(h)
  np.testing.assert_allclose(np.asarray(dkm.relu_kernel(jnp.asarray(g))), mc, atol=0.02 * g.max())


def test_sparse_objective_equals_full_with_inducing_points_at_the_data():
  """Inducing points = training points and q(f) = the exact GP posterior: the sparse
  bound equals the full DKM objective; catches errors in the conditional Gram blocks,
  the SVGP expected log-likelihood or its KL."""
  with jax.enable_x64(True):
    x, y = _data(6, 4)
    p, nus, noise = 6, (1.0, 0.5), 0.1
    g0 = x @ x.T / x.shape[1]
    grams = [g + 0.05 * _spd(p, 10 + i) for i, g in enumerate(dkm.nngp_grams(g0, 2))]
    factors = [jnp.linalg.cholesky(g) * np.sqrt(p) for g in grams]
    k = dkm.relu_kernel(grams[-1])
    k = k + dkm.JITTER * jnp.trace(k) / p * jnp.eye(p)
    post = jnp.linalg.solve(k + noise * jnp.eye(p), k)
    params = dkm.SparseParams(factors, post.T @ y, jnp.linalg.cholesky(k - k @ post))
    sparse = dkm.sparse_dkm_objective(params, x, x, y, nus, noise)
    full = dkm.dkm_objective(grams, g0, y, nus, noise)
    np.testing.assert_allclose(float(sparse), float(full), rtol=1e-4)  # jitter 1e-6
