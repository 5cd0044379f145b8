"""jaxrep.stats: kernels, HSIC, MMR and the KCI test against NumPy / scikit-learn
references; each reference fixes the normalisation, so a wrong one fails."""
import itertools

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from scipy import stats as sps
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics.pairwise import rbf_kernel as sklearn_rbf_kernel
from sklearn.preprocessing import KernelCenterer

from jaxrep import stats
from jaxrep.stats import kci


def _np_center(k):
  n = k.shape[0]
  h = np.eye(n) - np.ones((n, n)) / n
  return h @ k @ h


def _np_gauss(x, theta):
  sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  return np.exp(-0.5 * theta * sq)


def _np_z(x):
  return sps.zscore(x, ddof=1, axis=0)


def np_kci_unconditional(x, y):
  """Transcription of Zhang et al. (2011) / causal-learn KCI_UInd (approx=True)."""
  n = x.shape[0]
  w = 0.8 if n < 200 else (0.5 if n < 1200 else 0.3)
  kx = _np_center(_np_gauss(_np_z(x), x.shape[1] / w**2))
  ky = _np_center(_np_gauss(_np_z(y), y.shape[1] / w**2))
  stat = np.sum(kx * ky)
  mean = np.trace(kx) * np.trace(ky) / n
  var = 2 * np.sum(kx**2) * np.sum(ky**2) / n**2
  return 1 - sps.gamma.cdf(stat, mean**2 / var, 0, var / mean)


def np_kci_conditional(x, y, z, eps=1e-3, thresh=1e-5):
  """Transcription of causal-learn KCI_CInd (approx=True, empirical widths)."""
  n = x.shape[0]
  w = 1.2 if n < 200 else (0.7 if n < 1200 else 0.4)
  theta = 1 / (w**2 * z.shape[1])
  x, y, z = _np_z(x), _np_z(y), _np_z(z)
  kx = _np_center(_np_gauss(np.concatenate([x, 0.5 * z], 1), theta))
  ky = _np_center(_np_gauss(y, theta))
  kz = _np_center(_np_gauss(z, theta))
  rz = eps * np.linalg.pinv(kz + eps * np.eye(n))
  kxr, kyr = rz @ kx @ rz, rz @ ky @ rz
  stat = np.sum(kxr * kyr)

  def feats(k):
    lam, vec = np.linalg.eigh(0.5 * (k + k.T))
    keep = lam > lam.max() * thresh
    return vec[:, keep] * np.sqrt(lam[keep])

  vx, vy = feats(kxr), feats(kyr)
  uu = (vx[:, :, None] * vy[:, None, :]).reshape(n, -1)
  prod = uu.T @ uu
  mean, var = np.trace(prod), 2 * np.trace(prod @ prod)
  return 1 - sps.gamma.cdf(stat, mean**2 / var, 0, var / mean)


@pytest.mark.reference
def test_median_bandwidth_and_rbf_match_scipy():
  x = np.random.default_rng(0).normal(size=(30, 3))
  with jax.enable_x64(True):
    sigma = float(stats.median_bandwidth(jnp.asarray(x)))
    assert sigma == pytest.approx(np.median(pdist(x)), rel=1e-10)
    k = np.asarray(stats.rbf_kernel(jnp.asarray(x)))
  ref = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / (2 * sigma**2))
  np.testing.assert_allclose(k, ref, atol=1e-12)


def test_hsic_biased_and_unbiased_match_numpy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(25, 2))
  y = x[:, :1] ** 2 + 0.3 * rng.normal(size=(25, 1))
  kx = _np_gauss(x, 1.0)
  ky = _np_gauss(y, 0.5)
  n = 25
  biased = np.trace(kx @ _np_center(ky)) / n**2
  kt, lt = kx - np.diag(np.diag(kx)), ky - np.diag(np.diag(ky))
  one = np.ones(n)
  unbiased = (np.trace(kt @ lt) + one @ kt @ one * (one @ lt @ one) / ((n - 1) * (n - 2))
              - 2 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))
  with jax.enable_x64(True):
    assert float(stats.hsic_biased(jnp.asarray(kx), jnp.asarray(ky))) == pytest.approx(biased, rel=1e-10)
    assert float(stats.hsic_unbiased(jnp.asarray(kx), jnp.asarray(ky))) == pytest.approx(unbiased, rel=1e-10)


@pytest.mark.reference
def test_median_bandwidths_distinct_pairs_and_with_diagonal():
  """σ² = median of the n(n−1)/2 distinct squared distances, or of all n² entries
  (n zeros included): two conventions, two names, different values."""
  x = np.random.default_rng(3).normal(size=(10, 4))
  sq = pdist(x, "sqeuclidean")
  with jax.enable_x64(True):
    distinct = float(stats.median_bandwidth(jnp.asarray(x)))
    with_diagonal = float(stats.median_bandwidth_with_diagonal(jnp.asarray(x)))
  assert distinct == pytest.approx(np.sqrt(np.median(sq)), rel=1e-10)
  assert with_diagonal == pytest.approx(np.sqrt(np.median(squareform(sq))), rel=1e-10)
  assert with_diagonal < 0.95 * distinct


@pytest.mark.reference
def test_rbf_and_linear_kernels_match_sklearn_and_numpy():
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(15, 3)), rng.normal(size=(9, 3))
  with jax.enable_x64(True):
    k = np.asarray(stats.rbf_kernel(jnp.asarray(x), jnp.asarray(y), bandwidth=1.3))
    lin = np.asarray(stats.linear_kernel(jnp.asarray(x), jnp.asarray(y)))
  np.testing.assert_allclose(k, sklearn_rbf_kernel(x, y, gamma=1 / (2 * 1.3**2)), rtol=1e-12)
  np.testing.assert_allclose(lin, x @ y.T, rtol=1e-12)


@pytest.mark.reference
def test_center_kernel_is_idempotent_and_matches_sklearn():
  x = np.random.default_rng(5).normal(size=(12, 3))
  with jax.enable_x64(True):
    k = stats.rbf_kernel(jnp.asarray(x))
    centred = stats.center_kernel(k)
    np.testing.assert_allclose(stats.center_kernel(centred), centred, atol=1e-14)
  np.testing.assert_allclose(centred, KernelCenterer().fit_transform(np.asarray(k)), atol=1e-14)
  np.testing.assert_allclose(np.asarray(centred).sum(0), 0.0, atol=1e-13)


def test_hsic_unbiased_is_the_u_statistic():
  """HSIC_u = (n)₄⁻¹ Σ_{i,j,q,r distinct} [K_ij L_ij + K_ij L_qr − 2 K_ij L_iq]."""
  rng = np.random.default_rng(6)
  x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
  kx, ky = x @ x.T, _np_gauss(y, 0.7)
  n = 7
  total = 0.0
  for i, j, q, r in itertools.permutations(range(n), 4):
    total += kx[i, j] * ky[i, j] + kx[i, j] * ky[q, r] - 2 * kx[i, j] * ky[i, q]
  with jax.enable_x64(True):
    assert float(stats.hsic_unbiased(jnp.asarray(kx), jnp.asarray(ky))) == pytest.approx(
        total / (n * (n - 1) * (n - 2) * (n - 3)), rel=1e-10)


def test_hsic_of_independent_samples_is_zero_in_expectation():
  """Over 500 independent (X, Y) draws: mean HSIC_u ≈ 0 (unbiased), and mean HSIC_b
  matches its exact bias E[tr K̃] E[tr L̃] / (n²(n − 1)) within 3 standard errors
  (a 1/(n − 1)² normalisation would be 4 standard errors off)."""
  n, reps = 30, 500

  def draw(key):
    k1, k2 = jax.random.split(key)
    k = stats.rbf_kernel(jax.random.normal(k1, (n, 2)))
    l = stats.rbf_kernel(jax.random.laplace(k2, (n, 1)))
    return (stats.hsic_unbiased(k, l), stats.hsic_biased(k, l),
            jnp.trace(stats.center_kernel(k)), jnp.trace(stats.center_kernel(l)))

  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(0), reps)
    u, b, trace_k, trace_l = map(np.asarray, jax.jit(jax.vmap(draw))(keys))
  assert abs(u.mean()) < 3 * u.std() / np.sqrt(reps)
  bias = trace_k.mean() * trace_l.mean() / (n**2 * (n - 1))
  assert abs(b.mean() - bias) < 3 * b.std() / np.sqrt(reps)


def test_mmr_matches_double_sum():
  rng = np.random.default_rng(2)
  r, a = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
  k = _np_gauss(a, 0.7)
  full = sum(r[i] @ r[j] * k[i, j] for i in range(12) for j in range(12))
  off = full - sum(r[i] @ r[i] * k[i, i] for i in range(12))
  with jax.enable_x64(True):
    assert float(stats.mmr(jnp.asarray(r), jnp.asarray(k))) == pytest.approx(full / 144, rel=1e-10)
    assert float(stats.mmr(jnp.asarray(r), jnp.asarray(k), unbiased=True)) == pytest.approx(
        off / 132, rel=1e-10)


@pytest.mark.reference
@pytest.mark.parametrize("n", [60, 250])
def test_kci_p_values_match_reference(n):
  rng = np.random.default_rng(n)
  z = rng.normal(size=(n, 1))
  x = z + 0.5 * rng.normal(size=(n, 1))
  for y in (z**2 + 0.5 * rng.normal(size=(n, 1)), x + 0.5 * z + rng.normal(size=(n, 1))):
    with jax.enable_x64(True):
      p_u = float(kci.kci_unconditional(jnp.asarray(x), jnp.asarray(y)).p_value)
      p_c = float(kci.kci_conditional(jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)).p_value)
      p_fast = float(kci.kci_conditional(jnp.asarray(x), jnp.asarray(y), jnp.asarray(z),
                                         truncate=False).p_value)
    ref_u, ref_c = np_kci_unconditional(x, y), np_kci_conditional(x, y, z)
    assert p_u == pytest.approx(ref_u, rel=1e-6, abs=1e-12)
    assert p_c == pytest.approx(ref_c, rel=1e-6, abs=1e-12)
    assert p_fast == pytest.approx(ref_c, rel=1e-3, abs=1e-6)


@pytest.mark.reference
def test_kci_matches_causal_learn():
  """KCI p-values against causal-learn's ``KCI_CInd`` / ``KCI_UInd`` (the official
  implementation's lineage; installed by the test extra, so this never skips)."""
  from causallearn.utils.KCI import KCI as kci_ref
  rng = np.random.default_rng(7)
  z = rng.normal(size=(80, 1))
  x, y = z + rng.normal(size=(80, 1)), np.sin(2 * z) + 0.3 * rng.normal(size=(80, 1))
  with jax.enable_x64(True):
    p_c = float(kci.kci_conditional(jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)).p_value)
    p_u = float(kci.kci_unconditional(jnp.asarray(x), jnp.asarray(y)).p_value)
  assert p_c == pytest.approx(kci_ref.KCI_CInd().compute_pvalue(x, y, z)[0], abs=1e-4)
  assert p_u == pytest.approx(kci_ref.KCI_UInd().compute_pvalue(x, y)[0], abs=1e-4)


def _rejection_rate(keys, sampler, test, alpha=0.05):
  with jax.enable_x64(True):
    p = jax.jit(jax.vmap(lambda k: test(*sampler(k)).p_value))(keys)
  return float(jnp.mean(p <= alpha))


def test_kci_size_under_null_is_close_to_alpha():
  """Rejection rate at α = 0.05 over 300 vmapped H0 repetitions lies in [0.02, 0.09]."""
  keys = jax.random.split(jax.random.PRNGKey(0), 300)
  n = 100

  def independent(k):
    k1, k2 = jax.random.split(k)
    return jax.random.normal(k1, (n,)), jax.random.laplace(k2, (n,))

  def conditionally_independent(k):
    k1, k2, k3 = jax.random.split(k, 3)
    z = jax.random.normal(k1, (n,))
    return z + 0.5 * jax.random.normal(k2, (n,)), z**2 + 0.5 * jax.random.normal(k3, (n,)), z

  size_u = _rejection_rate(keys, independent, kci.kci_unconditional)
  size_c = _rejection_rate(keys, conditionally_independent,
                           lambda x, y, z: kci.kci_conditional(x, y, z, truncate=False))
  assert 0.02 <= size_u <= 0.09, size_u
  assert 0.02 <= size_c <= 0.09, size_c


def test_kci_power_rises_with_sample_size():
  keys = jax.random.split(jax.random.PRNGKey(1), 100)
  powers = []
  for n in (20, 50, 120):
    def dependent(k, n=n):
      k1, k2, k3 = jax.random.split(k, 3)
      z = jax.random.normal(k1, (n,))
      x = jax.random.normal(k2, (n,))
      return x, z + 0.4 * x**2 + jax.random.normal(k3, (n,)), z
    powers.append(_rejection_rate(
        keys, dependent, lambda x, y, z: kci.kci_conditional(x, y, z, truncate=False)))
  assert powers[0] < powers[1] < powers[2], powers
  assert powers[2] >= 0.8, powers


@pytest.mark.reference
@pytest.mark.parametrize("k,n", [(0, 40), (1, 40), (37, 40), (40, 40), (198, 200), (7, 60)])
def test_clopper_pearson_bounds_match_scipy_binomtest(k, n):
  """One-sided (1−α) bounds = the ends of SciPy's exact two-sided (1−2α) interval.
  Catches a swapped Beta parameter (n − k vs n − k + 1) or α vs 1 − α."""
  interval = sps.binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact")
  np.testing.assert_allclose(stats.clopper_pearson_lower(k, n, 0.95), interval.low, atol=1e-10)
  np.testing.assert_allclose(stats.clopper_pearson_upper(k, n, 0.95), interval.high, atol=1e-10)


def test_clopper_pearson_coverage_by_simulation():
  """P(lower ≤ p) ≥ 95% for a true p: the bound is conservative, not anti-conservative."""
  rng = np.random.default_rng(0)
  p, n = 0.93, 200
  ks = rng.binomial(n, p, size=2000)
  covered = np.mean([stats.clopper_pearson_lower(int(k), n) <= p for k in ks])
  assert covered >= 0.95
  with pytest.raises(ValueError, match="successes"):
    stats.clopper_pearson_lower(5, 4)
