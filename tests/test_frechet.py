"""Fréchet distance against scipy's sqrtm, and k-NN precision/recall/density/coverage."""
import numpy as np
import pytest
from scipy import linalg

from jaxrep.diffusion import frechet


def scipy_frechet(a, b):
  """The textbook FID formula with scipy.linalg.sqrtm (Heusel et al. 2017)."""
  mu1, mu2 = a.mean(0), b.mean(0)
  cov1, cov2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = linalg.sqrtm(cov1 @ cov2).real
  return float(np.sum((mu1 - mu2)**2) + np.trace(cov1 + cov2 - 2 * root))


def features(seed, n=500, dim=8, shift=0.0, scale=1.0):
  mixing = np.random.default_rng(100).standard_normal((dim, dim)) / np.sqrt(dim)
  rng = np.random.default_rng(seed)
  return shift + scale * rng.standard_normal((n, dim)) @ (np.eye(dim) + mixing)


@pytest.mark.reference
@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.5, 1.0), (0.0, 2.0), (1.0, 0.5)])
def test_frechet_distance_equals_the_scipy_reference(shift, scale):
  a, b = features(0), features(1, shift=shift, scale=scale)
  ours = frechet.frechet_distance_features(a, b)
  assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-6, abs=1e-8)
  assert ours == pytest.approx(frechet.frechet_distance_features(b, a), rel=1e-8)


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:Matrix is singular")   # scipy's reference, on purpose
def test_frechet_distance_is_zero_for_identical_sets_and_closed_form_in_1d():
  a = features(2)
  assert frechet.frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-8)
  # N(m1, s1²) vs N(m2, s2²): (m1 − m2)² + (s1 − s2)²
  value = frechet.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-0.5]),
                                   np.array([[0.25]]))
  assert value == pytest.approx(1.5**2 + 1.5**2)
  # a singular covariance (features on a subspace) is fine
  low_rank = np.concatenate([a[:, :3], np.zeros((len(a), 5))], axis=1)
  assert frechet.frechet_distance_features(low_rank, a) == pytest.approx(
      scipy_frechet(low_rank, a), rel=1e-4)


def test_feature_statistics_caches_per_name(tmp_path):
  calls = []

  def feature_fn(batch):
    calls.append(len(batch))
    return np.tanh(batch[:, :4])

  data = features(3, n=300)
  first = frechet.feature_statistics(feature_fn, data, batch_size=128,
                                     cache_dir=str(tmp_path), name="digits-cnn")
  assert calls == [128, 128, 44]
  second = frechet.feature_statistics(feature_fn, data, cache_dir=str(tmp_path),
                                      name="digits-cnn")
  assert calls == [128, 128, 44]                  # read back, not recomputed
  for x, y in zip(first, second):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_allclose(first[0], np.tanh(data[:, :4]).mean(0))
  np.testing.assert_allclose(first[1], np.cov(np.tanh(data[:, :4]), rowvar=False))


def test_precision_recall_density_coverage():
  real = features(4, n=600, dim=4)
  same = frechet.precision_recall_coverage(real, features(5, n=600, dim=4), k=5)
  assert min(same["precision"], same["recall"], same["coverage"]) > 0.8
  assert 0.7 < same["density"] < 1.3
  identical = frechet.precision_recall_coverage(real, real, k=5)
  assert identical["precision"] == identical["recall"] == identical["coverage"] == 1.0
  far = frechet.precision_recall_coverage(real, real + 100.0, k=5)
  assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
  # mode collapse: fakes near one real point are precise but recall/cover little
  collapsed = real[:1] + 0.01 * features(6, n=600, dim=4)
  dropped = frechet.precision_recall_coverage(real, collapsed, k=5)
  assert dropped["precision"] == 1.0 and dropped["recall"] < 0.05
  assert dropped["coverage"] < 0.05


def test_precision_recall_density_coverage_by_hand():
  """real {0, 1, 2, 3, 10} (1-NN radii 1, 1, 1, 1, 7), fake {0.5, 20} (radii 19.5)."""
  real, fake = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]]), np.array([[0.5], [20.0]])
  metrics = frechet.precision_recall_coverage(real, fake, k=1)
  # 0.5 is in the balls of 0 and 1, 20 in none; every real is within 19.5 of 0.5;
  # the reals 0 and 1 have a fake within their radius, 2, 3 and 10 do not
  assert metrics == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.4}
