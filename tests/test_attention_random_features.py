"""Random-feature attention: exact key-permutation invariance, the M^{-1/2} convergence of
the random-feature kernel to its closed form (μ = 0) and to quadrature (μ = 1), the
quadrature against SciPy, and the dual ridge readout against scikit-learn's primal ridge."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.theory import attention_random_features as arf

D, N = 4, 5


def _pairs(seed, num):
  qa, xa = arf.sample_sequences(jax.random.PRNGKey(seed), num, N, D)
  qb, xb = arf.sample_sequences(jax.random.PRNGKey(seed + 1), num, N, D)
  return qa, xa, qb, xb


def test_attention_features_invariant_to_permuting_keys():
  """Catches any order dependence in φ (e.g. weighting keys by position or reading x₁
  alone); the RF-MLP on the concatenation is not invariant (the control)."""
  q, x = arf.sample_sequences(jax.random.PRNGKey(0), 3, N, D)
  perm = np.array([3, 0, 4, 1, 2])
  for mean in (0.0, 1.0):
    w = arf.sample_attention_weights(jax.random.PRNGKey(1), 64, D, mean)
    f = jax.vmap(functools.partial(arf.attention_features, w))
    np.testing.assert_allclose(f(q, x[:, perm]), f(q, x), rtol=1e-5, atol=1e-7)
  wm = arf.sample_mlp_weights(jax.random.PRNGKey(2), 64, N, D)
  g = jax.vmap(functools.partial(arf.mlp_features, wm))
  assert np.max(np.abs(g(q, x[:, perm]) - g(q, x))) > 1e-2


def _mc_rms_errors(mean, head_counts, draws=8, pairs=6):
  """Relative RMS error of K_M for each M: per-head kernel terms of ``draws`` independent
  sets of max(M) heads, averaged over their first M heads (one compiled program)."""
  qa, xa, qb, xb = _pairs(3, pairs)
  exact = jax.vmap(lambda *s: arf.attention_kernel(*s, mean))(qa, xa, qb, xb)

  @jax.jit
  def per_head_terms(keys):
    def one(k):
      w = arf.sample_attention_weights(k, max(head_counts), D, mean)
      fa = jax.vmap(functools.partial(arf.attention_features, w))(qa, xa)
      fb = jax.vmap(functools.partial(arf.attention_features, w))(qb, xb)
      return (fa * fb).reshape(pairs, max(head_counts), D + 1).sum(-1) * max(head_counts)
    return jax.vmap(one)(keys)                                  # (draws, pairs, heads)

  terms = np.asarray(per_head_terms(jax.random.split(jax.random.PRNGKey(7), draws)))
  errs = [np.sqrt(np.mean((terms[..., :m].mean(-1) - np.asarray(exact)) ** 2))
          for m in head_counts]
  return np.asarray(errs) / float(jnp.sqrt(jnp.mean(exact ** 2)))


@pytest.mark.parametrize("mean", [0.0, 1.0])
def test_random_feature_kernel_converges_at_rate_m_to_minus_half(mean):
  """K_M → K with RMS error ∝ M^{-1/2} (closed-form arc-cosine for μ = 0, quadrature for
  μ = 1). Catches a wrong limit kernel (e.g. ρ without the ⟨x₀,x₀'⟩ factor, a wrong
  variance 1/d, the value's +1 missing): the error then plateaus and the slope → 0."""
  heads = (16, 64, 256, 1024, 4096)
  errors = _mc_rms_errors(mean, heads)
  slope = np.polyfit(np.log(heads), np.log(errors), 1)[0]
  assert -0.65 < slope < -0.35, (slope, errors)
  assert errors[-1] < 0.05, errors


def test_quadrature_equals_arccos_kernel_at_zero_mean():
  """The quadrature of E[σ(a+z)σ(b+z')] reduces to the arc-cosine closed form at a = b = 0;
  catches a wrong conditional mean or a wrong integration range."""
  rho = jnp.linspace(-0.95, 0.95, 11)
  zeros = jnp.zeros_like(rho)
  np.testing.assert_allclose(arf.relu_pair_expectation(zeros, zeros, rho, 0.3),
                             arf.arccos_kernel(rho, 0.3), rtol=1e-4, atol=1e-7)


@pytest.mark.reference
def test_relu_pair_expectation_matches_scipy_dblquad():
  """Against SciPy's 2-D integration of the bivariate normal density (independent method)."""
  from scipy import integrate, stats
  for a, b, rho, var in [(0.3, -0.2, 0.4, 0.25), (-0.5, 0.1, -0.7, 0.125), (0.2, 0.4, 0.9, 0.5)]:
    cov = var * np.array([[1, rho], [rho, 1]])
    dens = stats.multivariate_normal(np.zeros(2), cov).pdf
    ref, _ = integrate.dblquad(lambda z2, z1: (a + z1) * (b + z2) * dens([z1, z2]),
                               -a, 6, lambda z1: -b, lambda z1: 6, epsabs=1e-10)
    ours = float(arf.relu_pair_expectation(jnp.asarray(a), jnp.asarray(b), jnp.asarray(rho),
                                           var))
    assert abs(ours - ref) < 1e-5 * max(1.0, abs(ref)), (a, b, rho, ours, ref)


@pytest.mark.reference
def test_kernel_ridge_equals_sklearn_primal_ridge():
  """Dual (K + λI)⁻¹ y equals argmin ‖Φv − y‖² + λ‖v‖²; catches a wrong penalty scaling."""
  from sklearn.linear_model import Ridge
  rng = np.random.default_rng(0)
  phi, y, phi_test = rng.normal(size=(40, 60)), rng.normal(size=40), rng.normal(size=(7, 60))
  with jax.enable_x64(True):
    ours = arf.kernel_ridge_predict(jnp.asarray(phi @ phi.T), jnp.asarray(y),
                                    jnp.asarray(phi_test @ phi.T), 0.3)
  ref = Ridge(alpha=0.3, fit_intercept=False, solver="cholesky").fit(phi, y).predict(phi_test)
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-8)
