"""CKA against NumPy/scikit-learn references and the invariances linear CKA is
known for (the kernels and HSIC themselves are tested in test_stats.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.preprocessing import KernelCenterer

from jaxrep.probe import cka


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _features(seed, n=40, dx=7, dy=5):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dx))
  y = np.tanh(x @ rng.normal(size=(dx, dy))) + 0.3 * rng.normal(size=(n, dy))
  return x, y


def _reference_center(gram, unbiased):
  """Kornblith et al.'s notebook centering, written independently in NumPy."""
  gram = np.array(gram, dtype=np.float64)
  if not unbiased:
    return KernelCenterer().fit_transform(gram)
  n = gram.shape[0]
  np.fill_diagonal(gram, 0)
  means = gram.sum(0) / (n - 2)
  means -= means.sum() / (2 * (n - 1))
  gram -= means[:, None] + means[None, :]
  np.fill_diagonal(gram, 0)
  return gram


def _reference_cka(gx, gy, unbiased=False):
  cx, cy = _reference_center(gx, unbiased), _reference_center(gy, unbiased)
  return np.sum(cx * cy) / (np.linalg.norm(cx) * np.linalg.norm(cy))


def _reference_rbf(x, threshold=1.0):
  sq = np.sum((x[:, None] - x[None]) ** 2, -1)
  sigma2 = threshold**2 * np.median(sq)
  return rbf_kernel(x, gamma=1.0 / (2 * sigma2))


@pytest.mark.reference
@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_matches_numpy_reference(unbiased):
  x, y = _features(0)
  expected = _reference_cka(x @ x.T, y @ y.T, unbiased)
  np.testing.assert_allclose(cka.linear_cka(jnp.asarray(x), jnp.asarray(y), unbiased),
                             expected, rtol=1e-10)


def test_feature_space_linear_cka_equals_gram_form():
  x, y = _features(1, n=30, dx=12, dy=3)
  np.testing.assert_allclose(cka.linear_cka_features(x, y), cka.linear_cka(x, y), rtol=1e-10)


@pytest.mark.reference
@pytest.mark.parametrize("unbiased,threshold", [(False, 1.0), (True, 0.5), (False, 2.0)])
def test_rbf_cka_median_heuristic_matches_sklearn_kernel(unbiased, threshold):
  x, y = _features(2)
  expected = _reference_cka(_reference_rbf(x, threshold), _reference_rbf(y, threshold), unbiased)
  np.testing.assert_allclose(cka.rbf_cka(x, y, threshold=threshold, unbiased=unbiased),
                             expected, rtol=1e-10)


@pytest.mark.reference
def test_rbf_cka_with_fixed_bandwidths_matches_sklearn_kernel():
  x, y = _features(3)
  expected = _reference_cka(rbf_kernel(x, gamma=1 / (2 * 1.7**2)),
                            rbf_kernel(y, gamma=1 / (2 * 0.8**2)))
  np.testing.assert_allclose(cka.rbf_cka(x, y, bandwidth_x=1.7, bandwidth_y=0.8),
                             expected, rtol=1e-10)


def _random_orthogonal(key, n):
  q, r = jnp.linalg.qr(jax.random.normal(key, (n, n)))
  return q * jnp.sign(jnp.diag(r))


@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_invariant_to_orthogonal_and_isotropic_scaling(unbiased):
  x, y = map(jnp.asarray, _features(6))
  for seed in range(3):
    key_q, key_s, key_t = jax.random.split(jax.random.PRNGKey(seed), 3)
    q = _random_orthogonal(key_q, x.shape[1])
    scale = jnp.exp(jax.random.normal(key_s)) * 3
    shift = jax.random.normal(key_t, (x.shape[1],))
    moved = scale * x @ q.T + shift
    np.testing.assert_allclose(cka.linear_cka(moved, y, unbiased),
                               cka.linear_cka(x, y, unbiased), rtol=1e-10)


def test_rbf_cka_median_heuristic_invariant_to_orthogonal_and_isotropic_scaling():
  x, y = map(jnp.asarray, _features(7))
  q = _random_orthogonal(jax.random.PRNGKey(8), x.shape[1])
  np.testing.assert_allclose(cka.rbf_cka(4.0 * x @ q.T, y), cka.rbf_cka(x, y), rtol=1e-10)


def test_linear_cka_is_not_invariant_to_anisotropic_linear_maps():
  x, y = map(jnp.asarray, _features(9))
  stretch = jnp.diag(jnp.array([10.0, 1.0, 1.0, 0.1, 1.0, 1.0, 1.0]))
  assert abs(float(cka.linear_cka(x @ stretch, y) - cka.linear_cka(x, y))) > 1e-3


def test_cka_of_a_representation_with_itself_is_one_and_bounded():
  x, y = map(jnp.asarray, _features(10))
  np.testing.assert_allclose(cka.linear_cka(x, x), 1.0, rtol=1e-12)
  np.testing.assert_allclose(cka.rbf_cka(y, y, unbiased=True), 1.0, rtol=1e-12)
  value = float(cka.linear_cka(x, y))
  assert 0.0 < value < 1.0
