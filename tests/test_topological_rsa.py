"""Geo-topological and geodesic transforms against rsatoolbox (a test dependency),
NumPy/SciPy references and the monotone-invariance of GT_{q,q}; layer
identification against a loop; the leave-one-out statistic accuracies against
``identify_layers`` on the transformed RDMs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse.csgraph import csgraph_from_dense, shortest_path
from scipy.spatial.distance import pdist, squareform
from scipy import stats as scipy_stats
from scipy.stats import rankdata

from jaxrep.probe import topological_rsa as trsa

LU = [(0.1, 0.7), (0.0, 1.0), (0.25, 0.3), (0.0, 0.2), (0.6, 1.0)]


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _rdm(seed, n=12, d=5):
  return pdist(np.random.default_rng(seed).normal(size=(n, d)))


def _gt_reference(v, l, u):
  lo, hi = np.quantile(v, l), np.quantile(v, u)
  out = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else (v > hi).astype(float)
  return out


def _random_monotone_maps(rng):
  knots = np.sort(rng.uniform(0, 10, 8))
  values = np.cumsum(rng.uniform(0.01, 3.0, 8))
  return [lambda v: np.exp(2 * v), lambda v: v**3 + 5 * v - 2, lambda v: np.log1p(v),
          lambda v: np.interp(v, knots, values)]  # piecewise linear, strictly increasing


@pytest.mark.parametrize("lower,upper", LU)
def test_geotopological_transform_matches_numpy_reference(lower, upper):
  v = _rdm(0)
  np.testing.assert_allclose(trsa.geotopological_transform(jnp.asarray(v), lower, upper),
                             _gt_reference(v, lower, upper), rtol=1e-12, atol=1e-12)


@pytest.mark.reference
@pytest.mark.parametrize("lower,upper", LU)
def test_geotopological_transform_matches_rsatoolbox(lower, upper):
  from rsatoolbox.rdm import RDMs
  from rsatoolbox.rdm.transform import geotopological_transform
  v = _rdm(1)
  expected = geotopological_transform(RDMs(v[None].copy()), lower, upper).get_vectors()[0]
  np.testing.assert_allclose(trsa.geotopological_transform(jnp.asarray(v), lower, upper),
                             expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("q", [0.1, 0.37, 0.5, 0.9])
def test_gt_qq_is_invariant_to_strictly_monotone_maps(q):
  rng = np.random.default_rng(2)
  v = _rdm(2, n=20)
  base = np.asarray(trsa.geotopological_transform(jnp.asarray(v), q, q))
  assert 0 < base.sum() < len(v)  # a genuine binary split
  for warp in _random_monotone_maps(rng):
    np.testing.assert_array_equal(trsa.geotopological_transform(jnp.asarray(warp(v)), q, q), base)


@pytest.mark.reference
def test_gt_with_a_ramp_is_not_monotone_invariant_but_rank_normalised_gt_is():
  v = _rdm(3, n=20)
  warped = np.exp(2 * v)
  plain = trsa.geotopological_transform(jnp.asarray(v), 0.2, 0.8)
  assert np.max(np.abs(trsa.geotopological_transform(jnp.asarray(warped), 0.2, 0.8) - plain)) > 1e-2
  np.testing.assert_allclose(trsa.geotopological_transform(jnp.asarray(3 * v + 1), 0.2, 0.8),
                             plain, atol=1e-12)  # positive affine maps are fine
  ranked = trsa.geotopological_transform(trsa.rank_normalize(jnp.asarray(v)), 0.2, 0.8)
  np.testing.assert_allclose(
      trsa.geotopological_transform(trsa.rank_normalize(jnp.asarray(warped)), 0.2, 0.8),
      ranked, atol=1e-12)
  np.testing.assert_allclose(trsa.rank_normalize(jnp.asarray(v)),
                             (rankdata(v) - 1) / (len(v) - 1), atol=1e-12)


@pytest.mark.reference
def test_geodesic_transform_matches_rsatoolbox_networkx_convention():
  from rsatoolbox.rdm import RDMs
  from rsatoolbox.rdm.transform import geodesic_transform
  for v in (_rdm(4), np.asarray(trsa.geotopological_transform(jnp.asarray(_rdm(5)), 0.2, 0.5))):
    expected = geodesic_transform(RDMs(v[None].copy())).get_vectors()[0]
    ours = np.asarray(trsa.geodesic_transform(jnp.asarray(v), zero_weight_edges=False))
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=0, atol=1e-10)


@pytest.mark.reference
def test_geodesic_transform_with_zero_weight_edges_matches_scipy():
  v = np.asarray(trsa.geotopological_transform(jnp.asarray(_rdm(6, n=15)), 0.15, 0.4))
  weights = squareform((v - v.min()) / (v.max() - v.min()))
  masked = np.where(weights < 1.0, weights, np.inf)
  np.fill_diagonal(masked, np.inf)
  expected = shortest_path(csgraph_from_dense(masked, null_value=np.inf), directed=False)
  ours = np.asarray(trsa.geodesic_transform(jnp.asarray(v)))
  np.testing.assert_allclose(squareform(ours, checks=False), expected, atol=1e-12)
  assert np.any(np.isinf(ours)) or np.all(ours <= 1.0 + 1e-12)
  # A geodesic never exceeds a kept direct edge.
  kept = squareform(weights) < 1.0
  assert np.all(ours[kept] <= squareform(weights)[kept] + 1e-12)


@pytest.mark.reference
def test_shortest_path_lengths_match_scipy_csgraph():
  """Floyd–Warshall on sparse random weighted graphs (some pairs unreachable) against
  scipy.sparse.csgraph.shortest_path; catches e.g. relaxing only k < n − 1, or
  relaxing through k with D[k, :] replaced by the edge weights."""
  rng = np.random.default_rng(13)
  for n, density in ((9, 0.25), (14, 0.15), (14, 0.6)):
    weights = np.triu(rng.uniform(0.1, 2.0, (n, n)), 1)
    edges = np.triu(rng.uniform(size=(n, n)) < density, 1)
    weights, edges = weights + weights.T, edges | edges.T
    ours = np.asarray(trsa.shortest_path_lengths(jnp.asarray(weights), jnp.asarray(edges)))
    expected = shortest_path(np.where(edges, weights, 0.0), method="D", directed=False)
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(expected))
    np.testing.assert_allclose(ours[np.isfinite(ours)], expected[np.isfinite(expected)],
                               rtol=1e-12)


def test_fill_unreachable_uses_the_largest_finite_value():
  v = jnp.asarray([0.2, jnp.inf, 0.7, 0.1])
  np.testing.assert_array_equal(trsa.fill_unreachable(v), [0.2, 0.7, 0.7, 0.1])


def test_identify_layers_matches_a_loop_and_is_perfect_without_noise():
  rng = np.random.default_rng(7)
  candidates = rng.normal(size=(3, 4, 28))
  data = candidates[0] + 0.01 * rng.normal(size=(4, 28))
  predicted = trsa.identify_layers(jnp.asarray(data), jnp.asarray(candidates), "pearson")
  np.testing.assert_array_equal(predicted, np.arange(4))
  noisy = rng.normal(size=(6, 28))
  scores = np.array([[np.mean([np.corrcoef(d, candidates[s, layer])[0, 1] for s in range(3)])
                      for layer in range(4)] for d in noisy])
  predicted = trsa.identify_layers(jnp.asarray(noisy), jnp.asarray(candidates), "pearson")
  np.testing.assert_array_equal(predicted, scores.argmax(1))
  accuracy = trsa.layer_identification_accuracy(predicted, jnp.zeros(6, int))
  assert float(accuracy) == pytest.approx(np.mean(scores.argmax(1) == 0))


def test_transforms_vmap_over_rdms_and_quantile_grids():
  vs = jnp.asarray(np.stack([_rdm(s) for s in range(3)]))
  lowers, uppers = jnp.asarray([0.0, 0.1, 0.5]), jnp.asarray([0.3, 0.9, 0.5])
  batched = jax.vmap(trsa.geotopological_transform)(vs, lowers, uppers)
  for i in range(3):
    np.testing.assert_allclose(batched[i], _gt_reference(np.asarray(vs[i]), float(lowers[i]),
                                                         float(uppers[i])), atol=1e-12)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_leave_one_out_accuracy_is_identify_layers_without_the_own_model(method):
  rng = np.random.default_rng(11)
  candidates = rng.normal(size=(4, 3, 28))
  data = candidates[:, None] + rng.normal(size=(4, 5, 3, 28))  # (replicates, draws, layers, m)
  for r in range(4):
    others = jnp.asarray(np.delete(candidates, r, axis=0))
    expected = [float(trsa.layer_identification_accuracy(
        trsa.identify_layers(jnp.asarray(d), others, method), jnp.arange(3))) for d in data[r]]
    got = trsa.leave_one_out_layer_accuracy(jnp.asarray(data[r]), jnp.asarray(candidates), r,
                                            method)
    np.testing.assert_allclose(got, expected)


def _statistic_transform(kind, lower, upper):
  """One RDM vector's GT_{l,u} or its geodesic RDM, written out from the primitives."""
  gt = lambda v: trsa.geotopological_transform(v, lower, upper)
  if kind == "gt":
    return gt
  return lambda v: trsa.fill_unreachable(trsa.geodesic_transform(gt(v)))


def test_statistic_accuracies_transform_every_rdm_then_identify():
  rng = np.random.default_rng(12)
  candidates = np.stack([[_rdm(10 * s + layer, n=9) for layer in range(3)] for s in range(3)])
  data = candidates[:, None] * np.exp(0.3 * rng.normal(size=(3, 4, 3, 36)))
  stats = [("gt", 0.0, 1.0), ("gt", 0.1, 0.6), ("gt", 0.5, 0.5), ("geodesic", 0.0, 0.3)]
  got = trsa.statistic_accuracies(jnp.asarray(data), jnp.asarray(candidates), stats)
  assert got.shape == (4, 3, 4)
  for s, (kind, l, u) in enumerate(stats):
    transform = _statistic_transform(kind, l, u)
    cand = jax.vmap(jax.vmap(transform))(jnp.asarray(candidates))
    for r in range(3):
      data_t = jax.vmap(jax.vmap(transform))(jnp.asarray(data[r]))
      np.testing.assert_allclose(got[s, r], trsa.leave_one_out_layer_accuracy(
          data_t, cand, r, "pearson"))
  with pytest.raises(ValueError, match="unknown statistic"):
    trsa.statistic_accuracies(jnp.asarray(data), jnp.asarray(candidates), [("pca", 0.0, 1.0)])


def _loop_centroid_accuracy(rdms, method):
  """NumPy loop: instance r, layer ℓ → argmax over ℓ' of sim(rdm_{r,ℓ}, mean_{r'≠r} rdm_{r',ℓ'})."""
  num_instances, num_layers, _ = rdms.shape
  sim = {"pearson": lambda a, b: np.corrcoef(a, b)[0, 1],
         "spearman": lambda a, b: scipy_stats.spearmanr(a, b)[0]}[method]
  out = []
  for r in range(num_instances):
    others = [i for i in range(num_instances) if i != r]
    centroids = rdms[others].mean(axis=0)
    hits = [np.argmax([sim(rdms[r, l], centroids[k]) for k in range(num_layers)]) == l
            for l in range(num_layers)]
    out.append(np.mean(hits))
  return np.array(out)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_centroid_identification_matches_a_numpy_loop(method):
  """Leave-one-instance-out nearest centroid against an explicit loop, on RDMs noisy
  enough that some layers are misassigned. Catches the instance's own RDM left in
  its centroid, and a centroid over layers instead of instances."""
  rng = np.random.default_rng(3)
  base = rng.random((4, 45))
  rdms = base[None] + 3.0 * rng.random((5, 4, 45))  # 5 instances, 4 layers
  got = np.asarray(trsa.centroid_identification_accuracy(jnp.asarray(rdms), method))
  expected = _loop_centroid_accuracy(rdms, method)
  np.testing.assert_allclose(got, expected)
  assert 0 < expected.mean() < 1
  batched = trsa.centroid_identification_accuracy(jnp.asarray(np.stack([rdms, rdms[::-1]])),
                                                  method)
  np.testing.assert_allclose(batched[0], got)


def test_noisy_rdms_scale_with_each_rdms_std_and_clip_at_zero():
  """Noise std = level × std(d) per RDM vector (a statistical check on unclipped
  entries), entries clipped at 0, level 0 the identity. Catches a global or
  unscaled noise std and a missing clip."""
  rng = np.random.default_rng(4)
  rdms = jnp.asarray(np.stack([50 + rng.random(4000), 50 + 5 * rng.random(4000)]))
  noisy = trsa.noisy_rdms(jax.random.key(0), rdms, 0.3)
  ratio = np.std(np.asarray(noisy - rdms), axis=-1) / (0.3 * np.std(np.asarray(rdms), axis=-1))
  np.testing.assert_allclose(ratio, 1.0, atol=0.05)
  np.testing.assert_array_equal(trsa.noisy_rdms(jax.random.key(0), rdms, 0.0), rdms)
  small = trsa.noisy_rdms(jax.random.key(1), jnp.asarray(rng.random((3, 500))), 2.0)
  assert float(small.min()) == 0.0


def test_centroid_statistic_accuracies_transform_then_classify():
  rng = np.random.default_rng(5)
  rdms = rng.random((2, 4, 3, 36)) + np.stack([_rdm(layer, n=9) for layer in range(3)])
  stats = [("gt", 0.0, 1.0), ("gt", 0.2, 0.7), ("geodesic", 0.0, 0.3)]
  got = trsa.centroid_statistic_accuracies(jnp.asarray(rdms), stats)
  assert got.shape == (3, 2, 4)
  for s, (kind, l, u) in enumerate(stats):
    transform = _statistic_transform(kind, l, u)
    for d in range(2):
      t = np.asarray(jax.vmap(jax.vmap(transform))(jnp.asarray(rdms[d])))
      np.testing.assert_allclose(got[s, d], _loop_centroid_accuracy(t, "pearson"))
