"""Hermite moment-matching tests: polynomials vs NumPy, orthonormality by
Gauss–Hermite quadrature, size under the Gaussian, power against non-Gaussian
coordinates, and the weighted (band-conditional, label-aware) statistics."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import hermite_e
from scipy import stats as scipy_stats

from jaxrep.stats import moments


def test_normalized_hermite_matches_numpy():
  t = np.linspace(-3, 3, 41)
  values = np.asarray(moments.normalized_hermite(jnp.asarray(t), 6))
  for j in range(7):
    coefficients = np.zeros(j + 1)
    coefficients[j] = 1.0
    np.testing.assert_allclose(values[:, j], hermite_e.hermeval(t, coefficients)
                               / math.sqrt(math.factorial(j)), rtol=1e-5, atol=1e-5)


def test_multivariate_hermite_orthonormal_under_gaussian():
  nodes, weights = hermite_e.hermegauss(8)           # exact up to degree 15
  weights = weights / weights.sum()
  grid = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2)
  mass = np.outer(weights, weights).reshape(-1)
  with jax.enable_x64(True):
    feats = np.asarray(moments.hermite_features(jnp.asarray(grid), 4, min_degree=0))
  gram = feats.T @ (mass[:, None] * feats)
  np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-10)
  assert feats.shape[1] == moments.num_multi_indices(2, 4, 0) == math.comb(6, 4)


def test_chunked_sums_equal_dense_features():
  x = jax.random.normal(jax.random.PRNGKey(0), (1000, 3))
  w = jax.random.uniform(jax.random.PRNGKey(1), (1000,))
  dense = w @ moments.hermite_features(x, 3)
  chunked = moments.weighted_hermite_sums(x, w, 3, chunk_size=128)   # 1000 % 128 ≠ 0
  np.testing.assert_allclose(chunked, dense, rtol=2e-4, atol=2e-3)
  assert chunked.shape == (moments.num_multi_indices(3, 3),)


def test_sidak_threshold_is_exact_for_independent_normals():
  c = moments.sidak_threshold(50, 0.05)
  assert abs((1 - (1 - 2 * scipy_stats.norm.sf(c)) ** 50) - 0.05) < 1e-10
  with pytest.raises(ValueError):
    moments.sidak_threshold(5, 1.5)


def _rejection_rate(sampler, n, d, level, reps=300, seed=0, **kwargs):
  keys = jax.random.split(jax.random.PRNGKey(seed), reps)
  test = jax.jit(jax.vmap(lambda k: moments.moment_matching_test(
      sampler(k, (n, d)), 4, level, **kwargs).reject))
  return float(np.mean(test(keys)))


def test_gaussian_accepted_at_stated_size():
  rate = _rejection_rate(jax.random.normal, 4000, 3, 0.05)
  # 300 reps: a true size of 0.05 gives a rate in [0.02, 0.09] with prob > 0.99.
  assert 0.015 <= rate <= 0.09, rate


def test_rademacher_coordinate_rejected():
  def one_rademacher(key, shape):
    x = jax.random.normal(key, shape)
    sign = jax.random.rademacher(jax.random.fold_in(key, 1), shape[:1]).astype(x.dtype)
    return x.at[:, 0].set(sign)            # mean 0, variance 1, 4th moment 1 ≠ 3
  assert _rejection_rate(one_rademacher, 20000, 10, 0.05, reps=4) == 1.0


def test_uniform_cube_rejected_but_matches_low_degree():
  def cube(key, shape):                    # variance 1 per coordinate
    return jax.random.uniform(key, shape, minval=-math.sqrt(3), maxval=math.sqrt(3))
  x = cube(jax.random.PRNGKey(3), (20000, 4))
  assert bool(moments.moment_matching_test(x, 4, 0.05).reject)
  assert not bool(moments.moment_matching_test(x, 2, 0.05).reject)   # first two match


def test_weighted_band_conditional_and_label_aware():
  key_x, key_y = jax.random.split(jax.random.PRNGKey(4))
  x = jax.random.normal(key_x, (20000, 4))
  band = (jnp.abs(x[:, 0]) <= 0.5).astype(x.dtype)
  x_perp = x[:, 1:]
  # Independent of the band and of labels that ignore x_perp: accepted.
  noise_labels = jnp.sign(x[:, 0] + 1e-9)
  assert not bool(moments.moment_matching_test(x_perp, 2, 0.05, weights=band).reject)
  assert not bool(moments.moment_matching_test(
      x_perp, 2, 0.05, weights=band * noise_labels, min_degree=0).reject)
  # Labels that depend on x_perp inside the band: the label-aware test rejects,
  # the label-free conditional test does not.
  tilted = jnp.sign(x[:, 0] + 0.5 * x[:, 1])
  assert bool(moments.moment_matching_test(
      x_perp, 2, 0.05, weights=band * tilted, min_degree=0).reject)
  # A tolerance above the true deviation turns the rejection off.
  result = moments.moment_matching_test(x_perp, 2, 0.05, weights=band * tilted,
                                        min_degree=0, tolerance=1.0)
  assert not bool(result.reject)
  assert np.isclose(float(result.std_errors), 1 / math.sqrt(float(band.sum())), rtol=1e-5)
