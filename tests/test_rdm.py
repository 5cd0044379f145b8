"""RDMs and RDM comparisons against SciPy, a brute-force NumPy τ_a and rsatoolbox
(a test dependency), plus the invariances each comparison is known for."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from jaxrep.probe import rdm


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _features(seed, n=15, d=6):
  return np.random.default_rng(seed).normal(size=(n, d))


def _tied_vectors(seed, m=45):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 5, m).astype(float), rng.integers(0, 4, m).astype(float))


def _tau_a_brute_force(a, b):
  pairs = list(itertools.combinations(range(len(a)), 2))
  return sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs) / len(pairs)


@pytest.mark.reference
@pytest.mark.parametrize("metric", rdm.METRICS)
def test_rdm_matches_scipy_pdist(metric):
  x = _features(0)
  np.testing.assert_allclose(rdm.rdm_vector(jnp.asarray(x), metric), pdist(x, metric),
                             rtol=1e-9, atol=1e-12)
  matrix = np.asarray(rdm.rdm(jnp.asarray(x), metric))
  np.testing.assert_allclose(matrix, squareform(pdist(x, metric)), rtol=1e-9, atol=1e-12)


@pytest.mark.reference
def test_square_form_and_upper_triangle_match_scipy_and_invert_each_other():
  v = np.random.default_rng(1).normal(size=21)
  np.testing.assert_array_equal(rdm.square_form(jnp.asarray(v)), squareform(v))
  np.testing.assert_array_equal(rdm.upper_triangle(jnp.asarray(squareform(v))), v)
  with pytest.raises(ValueError, match="n\\(n−1\\)/2"):
    rdm.num_stimuli(20)


def test_euclidean_rdm_is_invariant_to_rigid_motions_and_permutes_with_stimuli():
  x = _features(2)
  rng = np.random.default_rng(3)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  moved = x @ q + rng.normal(size=6)
  np.testing.assert_allclose(rdm.rdm(jnp.asarray(moved)), rdm.rdm(jnp.asarray(x)), atol=1e-10)
  perm = rng.permutation(len(x))
  np.testing.assert_allclose(rdm.rdm(jnp.asarray(x[perm])),
                             np.asarray(rdm.rdm(jnp.asarray(x)))[np.ix_(perm, perm)], atol=1e-12)


@pytest.mark.reference
def test_average_ranks_match_scipy_rankdata_with_ties():
  a, _ = _tied_vectors(4)
  np.testing.assert_array_equal(rdm.average_ranks(jnp.asarray(a)), stats.rankdata(a))


@pytest.mark.reference
@pytest.mark.parametrize("tied", [False, True])
def test_comparisons_match_scipy_and_brute_force(tied):
  if tied:
    a, b = _tied_vectors(5)
  else:
    a, b = pdist(_features(6)), pdist(_features(7))
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  np.testing.assert_allclose(rdm.compare_rdms(ja, jb, "cosine"), cosine, rtol=1e-12)
  np.testing.assert_allclose(rdm.compare_rdms(ja, jb, "pearson"), stats.pearsonr(a, b)[0],
                             rtol=1e-10)
  np.testing.assert_allclose(rdm.compare_rdms(ja, jb, "spearman"), stats.spearmanr(a, b)[0],
                             rtol=1e-10)
  np.testing.assert_allclose(rdm.compare_rdms(ja, jb, "kendall_tau_a"),
                             _tau_a_brute_force(a, b), rtol=1e-12)
  if not tied:  # without ties τ_a = τ_b
    np.testing.assert_allclose(rdm.compare_rdms(ja, jb, "kendall_tau_a"),
                               stats.kendalltau(a, b)[0], rtol=1e-10)


@pytest.mark.reference
def test_comparisons_match_rsatoolbox():
  import rsatoolbox
  from rsatoolbox.rdm.compare import (compare_correlation, compare_cosine,
                                      compare_kendall_tau_a, compare_spearman)
  for a, b in [(pdist(_features(8)), pdist(_features(9))), _tied_vectors(10)]:
    reference = {"cosine": compare_cosine, "pearson": compare_correlation,
                 "spearman": compare_spearman, "kendall_tau_a": compare_kendall_tau_a}
    for method, fn in reference.items():
      expected = fn(rsatoolbox.rdm.RDMs(a[None].copy()), rsatoolbox.rdm.RDMs(b[None].copy()))
      np.testing.assert_allclose(rdm.compare_rdms(jnp.asarray(a), jnp.asarray(b), method),
                                 expected[0, 0], rtol=1e-10, err_msg=method)


def test_rank_comparisons_are_invariant_to_strictly_monotone_maps():
  a, b = pdist(_features(11)), pdist(_features(12))
  warped = np.exp(3 * a) + a**3  # strictly increasing on a ≥ 0
  for method in ("spearman", "kendall_tau_a"):
    assert float(rdm.compare_rdms(jnp.asarray(warped), jnp.asarray(b), method)) == float(
        rdm.compare_rdms(jnp.asarray(a), jnp.asarray(b), method))
  # Pearson is not (negative control); cosine only to positive scaling.
  assert abs(float(rdm.compare_rdms(jnp.asarray(warped), jnp.asarray(b), "pearson"))
             - float(rdm.compare_rdms(jnp.asarray(a), jnp.asarray(b), "pearson"))) > 1e-3
  np.testing.assert_allclose(rdm.compare_rdms(jnp.asarray(7.5 * a), jnp.asarray(b), "cosine"),
                             rdm.compare_rdms(jnp.asarray(a), jnp.asarray(b), "cosine"),
                             rtol=1e-12)


@pytest.mark.reference
def test_compare_rdm_sets_is_the_vmapped_pairwise_table():
  a = np.stack([pdist(_features(s)) for s in range(3)])
  b = np.stack([pdist(_features(s)) for s in range(3, 5)])
  table = np.asarray(rdm.compare_rdm_sets(jnp.asarray(a), jnp.asarray(b), "spearman"))
  expected = [[stats.spearmanr(u, v)[0] for v in b] for u in a]
  np.testing.assert_allclose(table, expected, rtol=1e-10)
  with pytest.raises(ValueError, match="unknown RDM comparison"):
    rdm.compare_rdms(jnp.asarray(a[0]), jnp.asarray(a[1]), "dot")
  with pytest.raises(ValueError, match="unknown RDM metric"):
    rdm.rdm(jnp.asarray(_features(0)), "manhattan")
