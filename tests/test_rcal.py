"""RCAL: LOF against scikit-learn, class Gaussians against NumPy, the calibration's
closed form, the sampler's moments and the class balance of the weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import LocalOutlierFactor

from jaxrep.ssl import rcal


def _blobs(seed=0, n=120, d=4):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)) * np.where(np.arange(n) % 10 == 0, 4.0, 1.0)[:, None]
  return x.astype(np.float64), rng.integers(0, 3, n)


@pytest.mark.reference
def test_lof_matches_scikit_learn_globally_and_within_a_class():
  """Mutations caught: reach distance with d_k(p) instead of d_k(o), the point itself
  among its neighbours, or neighbours taken outside the class mask."""
  x, labels = _blobs()
  with jax.enable_x64(True):
    lof = jax.jit(rcal.local_outlier_factor, static_argnums=1)(jnp.asarray(x), 10)
    reference = LocalOutlierFactor(n_neighbors=10).fit(x).negative_outlier_factor_
    np.testing.assert_allclose(-np.asarray(lof), reference, rtol=1e-6)
    members = labels == 1
    lof_c = jax.jit(rcal.local_outlier_factor, static_argnums=1)(jnp.asarray(x), 10,
                                                                 jnp.asarray(members))
    reference_c = LocalOutlierFactor(n_neighbors=10).fit(x[members]).negative_outlier_factor_
    np.testing.assert_allclose(-np.asarray(lof_c)[members], reference_c, rtol=1e-6)
    keep = jax.jit(rcal.lof_keep_mask, static_argnums=(2, 3))(jnp.asarray(x),
                                                              jnp.asarray(labels), 3, 10)
  expected = np.zeros(len(x), bool)
  for c in range(3):
    rows = labels == c
    expected[rows] = LocalOutlierFactor(n_neighbors=10).fit_predict(x[rows]) == 1
  np.testing.assert_array_equal(np.asarray(keep), expected)
  assert 0 < (~expected).sum() < len(x) // 4


def test_class_gaussians_match_numpy_on_kept_points():
  """Mutation caught: removed points (weight 0) still counted, or a 1/n covariance."""
  x, labels = _blobs(1)
  weights = (np.arange(len(x)) % 7 != 0).astype(np.float64)
  with jax.enable_x64(True):
    counts, means, covs = jax.jit(rcal.class_gaussians, static_argnums=3)(
        jnp.asarray(x), jnp.asarray(labels), jnp.asarray(weights), 3)
  for c in range(3):
    rows = (labels == c) & (weights == 1)
    assert counts[c] == rows.sum()
    np.testing.assert_allclose(means[c], x[rows].mean(0), rtol=1e-10)
    np.testing.assert_allclose(covs[c], np.cov(x[rows].T), rtol=1e-10)


def test_calibration_closed_form():
  """Mutations caught: borrowing from the nearest classes of any kind (not only
  head), head classes altered, or α missing from the covariance."""
  counts = jnp.asarray([100.0, 80.0, 60.0, 5.0, 3.0])
  means = jnp.asarray([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [9.0, 1.0], [5.0, 5.5]])
  covs = jnp.stack([jnp.eye(2) * s for s in (1.0, 2.0, 3.0, 4.0, 5.0)])
  new_means, new_covs = jax.jit(rcal.calibrate_tail, static_argnums=(3, 4, 5))(
      counts, means, covs, 3, 1, 0.5)
  np.testing.assert_allclose(new_means[:3], means[:3])
  np.testing.assert_allclose(new_covs[1], covs[1] + 0.5 * jnp.eye(2))
  np.testing.assert_allclose(new_means[3], (means[3] + means[1]) / 2)   # nearest head: 1
  np.testing.assert_allclose(new_means[4], (means[4] + means[2]) / 2)   # not tail class 3
  np.testing.assert_allclose(new_covs[4], (covs[4] + covs[2]) / 2 + 0.5 * jnp.eye(2))


def test_samples_have_the_calibrated_moments_and_weights_balance_classes():
  """Mutations caught: draws with the wrong class's parameters or a Cholesky of the
  wrong factor; weights that do not equalise the class totals."""
  means = jnp.asarray([[0.0, 1.0], [3.0, -2.0]])
  covs = jnp.asarray([[[1.0, 0.5], [0.5, 2.0]], [[0.5, -0.2], [-0.2, 0.3]]])
  f, y = jax.jit(rcal.sample_calibrated, static_argnums=3)(jax.random.key(0), means, covs,
                                                          20000)
  for c in range(2):
    draws = np.asarray(f[np.asarray(y) == c], np.float64)
    np.testing.assert_allclose(draws.mean(0), means[c], atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), covs[c], atol=0.04)
  kept = jnp.asarray([50.0, 20.0, 7.0])
  totals = kept + jax.jit(rcal.balancing_weights, static_argnums=1)(kept, 30) * 30
  np.testing.assert_allclose(totals, 50.0)
