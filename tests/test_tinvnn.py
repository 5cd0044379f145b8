"""TinvNN (Zhang et al., arXiv:2112.12345): modified MDS is invariant to
similarities and equivariant to permutations, preserves normalised distances,
and its classical-MDS core agrees with scikit-learn; the point-cloud sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.manifold import ClassicalMDS

from experiments import tinvnn as tinvnn_experiment
from jaxrep import groups
from jaxrep.data import point_clouds
from jaxrep.groups import equivariance as eq
from jaxrep.symmetry import tinvnn


def _generic_cloud(seed=0, n=40):
  """An anisotropic cloud: distinct covariance eigenvalues, non-zero skewness."""
  x = jax.random.normal(jax.random.PRNGKey(seed), (n, 3)) * jnp.array([3.0, 1.5, 0.5])
  return x + 0.3 * x**2 + jnp.array([1.0, -2.0, 0.5])


def _sample_similarity_and_permutation(n):
  def sample(key):
    k_g, k_perm = jax.random.split(key)
    return groups.sample_similarity(k_g, 2.0, float(np.log(3.0))), (
        groups.sample_permutation(k_perm, n))
  return sample


def _act_on_points(g, x):
  similarity, perm = g
  return groups.permute(perm, groups.apply_similarity(similarity, x))


def _act_on_rows(g, z):
  return groups.permute(g[1], z)


@pytest.mark.parametrize("solver", ["eigh", "subspace"])
@pytest.mark.parametrize("sign_rule", ["third_moment", "max_abs"])
def test_modified_mds_is_similarity_invariant_and_permutation_equivariant(solver, sign_rule):
  with jax.enable_x64(True):
    x = _generic_cloud()
    f = lambda p: tinvnn.modified_mds(p, 3, sign_rule, solver)
    error = eq.assert_equivariant(f, _sample_similarity_and_permutation(x.shape[0]),
                                  _act_on_points, _act_on_rows, x, jax.random.PRNGKey(1),
                                  num_samples=6, atol=1e-5)
    assert error < 1e-9
    # without the sign rule the eigensolver's arbitrary signs leak through
    unsigned = lambda p: tinvnn.modified_mds(p, 3, "none", solver)
    permute_only = lambda k: (((1.0, jnp.eye(3), jnp.zeros(3))),
                              groups.sample_permutation(k, x.shape[0]))
    assert eq.equivariance_error(unsigned, permute_only, _act_on_points, _act_on_rows, x,
                                 jax.random.PRNGKey(2), num_samples=8) > 1e-2


@pytest.mark.parametrize("sign_rule", ["third_moment", "max_abs"])
def test_sign_rule_removes_column_signs(sign_rule):
  z = jax.random.normal(jax.random.PRNGKey(0), (20, 4)) ** 3
  fixed = tinvnn.fix_column_signs(z, sign_rule)
  for seed in range(4):
    signs = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(seed), 0.5, (4,)), -1.0, 1.0)
    np.testing.assert_array_equal(tinvnn.fix_column_signs(z * signs, sign_rule), fixed)
  assert np.all(np.abs(np.asarray(fixed)) == np.abs(np.asarray(z)))
  if sign_rule == "third_moment":
    assert np.all(np.sum(np.asarray(fixed) ** 3, axis=0) > 0)


def test_raw_coordinates_are_not_invariant():
  x = _generic_cloud()
  error = eq.equivariance_error(lambda p: p, _sample_similarity_and_permutation(x.shape[0]),
                                _act_on_points, _act_on_rows, x, jax.random.PRNGKey(3))
  assert error > 0.1


_sample_clouds = jax.jit(point_clouds.sample_point_clouds, static_argnums=(1, 2, 3, 4))


def test_float32_invariance_on_procedural_clouds():
  clouds, _ = _sample_clouds(jax.random.PRNGKey(4), 30, 50, 10, 0.01)
  f = jax.jit(lambda p: tinvnn.modified_mds(p, 3, "third_moment", "subspace"))
  for i, x in enumerate(clouds[:5]):
    eq.assert_equivariant(f, _sample_similarity_and_permutation(50), _act_on_points,
                          _act_on_rows, x, jax.random.PRNGKey(10 + i), num_samples=2,
                          atol=1e-3)


def test_distances_are_preserved_up_to_the_global_scale():
  with jax.enable_x64(True):
    x = _generic_cloud(5)
    z = tinvnn.modified_mds(3.7 * x)
    d_x = np.asarray(tinvnn.pairwise_distances(x))
    d_z = np.asarray(tinvnn.pairwise_distances(z))
    n = x.shape[0]
    np.testing.assert_allclose(d_z, d_x / (d_x.sum() / (n * (n - 1))), atol=1e-10)
    np.testing.assert_allclose(d_z.sum() / (n * (n - 1)), 1.0, atol=1e-12)


@pytest.mark.reference
@pytest.mark.parametrize("solver", ["eigh", "subspace"])
def test_classical_mds_matches_scikit_learn(solver):
  with jax.enable_x64(True):
    x = _generic_cloud(6)
    d = np.asarray(tinvnn.pairwise_distances(x))
    reference = ClassicalMDS(n_components=3, metric="precomputed").fit(d)
    z, eigenvalues = tinvnn.classical_mds(jnp.asarray(d), 3, solver)
    np.testing.assert_allclose(eigenvalues, reference.eigenvalues_, rtol=1e-9)
    signs = np.sign(np.sum(np.asarray(z) * reference.embedding_, axis=0))
    np.testing.assert_allclose(np.asarray(z) * signs, reference.embedding_, atol=1e-9)


def test_double_centred_gram_against_numpy():
  with jax.enable_x64(True):
    x = np.asarray(_generic_cloud(7, n=12))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    j = np.eye(12) - np.ones((12, 12)) / 12
    reference = -0.5 * j @ (d**2) @ j
    np.testing.assert_allclose(tinvnn.double_centred_gram(jnp.asarray(d)), reference,
                               atol=1e-10)
    centred = x - x.mean(0)
    np.testing.assert_allclose(reference, centred @ centred.T, atol=1e-10)


def test_subspace_solver_on_a_non_euclidean_matrix_is_close_to_eigh():
  with jax.enable_x64(True):
    a = jax.random.normal(jax.random.PRNGKey(8), (30, 30))
    spectrum = jnp.concatenate([jnp.array([50.0, 20.0, 8.0]), 0.01 * jnp.arange(27.0)])
    q, _ = jnp.linalg.qr(a)
    m = (q * spectrum) @ q.T
    vectors, values = tinvnn.top_eigenpairs_subspace(m, 3)
    np.testing.assert_allclose(values, [50.0, 20.0, 8.0], rtol=1e-8)
    overlap = jnp.abs(jnp.sum(vectors * q[:, :3], axis=0))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-8)


def _tall_cases():
  rng = np.random.default_rng(0)
  rank_3 = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 8))
  rank_3[:, 4] = 0.0                                     # and an exactly zero column
  return {"128x8": rng.normal(size=(128, 8)), "30x30": rng.normal(size=(30, 30)),
          "6x1": rng.normal(size=(6, 1)), "40x8 rank 3": rank_3}


@pytest.mark.parametrize("case", list(_tall_cases()))
def test_householder_qr_against_numpy(case):
  a = _tall_cases()[case]
  with jax.enable_x64(True):
    q, r = map(np.asarray, jax.jit(tinvnn.householder_qr)(jnp.asarray(a)))
  n = a.shape[1]
  assert q.shape == a.shape and r.shape == (n, n)
  np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-13)           # orthonormal columns
  np.testing.assert_array_equal(np.tril(r, -1), 0.0)                    # upper triangular
  np.testing.assert_allclose(q @ r, a, atol=1e-12 * np.abs(a).max())
  if "rank" not in case:                 # full rank: numpy's factors up to column signs
    q_np, r_np = np.linalg.qr(a)
    signs = np.sign(np.diag(r)) * np.sign(np.diag(r_np))
    np.testing.assert_allclose(q * signs, q_np, atol=1e-12)
    np.testing.assert_allclose(r * signs[:, None], r_np, atol=1e-12)
  with pytest.raises(ValueError):
    tinvnn.householder_qr(jnp.zeros((2, 3)))


def _symmetric_cases():
  rng = np.random.default_rng(1)
  a8, a7, b = rng.normal(size=(8, 8)), rng.normal(size=(7, 7)), rng.normal(size=(8, 3))
  return {"random 8x8": a8 + a8.T, "random 7x7": a7 + a7.T, "PSD rank 3 8x8": b @ b.T,
          "diagonal": np.diag([2.0, -1.0]), "1x1": np.array([[3.0]])}


@pytest.mark.parametrize("case", list(_symmetric_cases()))
def test_jacobi_eigh_against_numpy(case):
  a = _symmetric_cases()[case]
  with jax.enable_x64(True):
    values, vectors = map(np.asarray, jax.jit(tinvnn.jacobi_eigh)(jnp.asarray(a)))
  n, scale = a.shape[0], np.abs(a).max()
  np.testing.assert_allclose(values, np.linalg.eigvalsh(a), atol=1e-13 * scale)   # ascending
  np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), atol=1e-13)
  np.testing.assert_allclose((vectors * values) @ vectors.T, a, atol=1e-13 * scale)


def test_subspace_mds_is_lapack_free_and_differentiable():
  """Batched LAPACK under vmap can deadlock XLA:CPU's thread pool on jaxlib 0.10
  (see ``top_eigenpairs_subspace``): the solver the experiment vmaps must lower to
  plain XLA ops. Its gradient agrees with the full-``eigh`` path."""
  import re

  mds = jax.jit(jax.vmap(lambda p: tinvnn.modified_mds(p, 3, "third_moment", "subspace")))
  lowered = mds.lower(jnp.zeros((4, 32, 3))).as_text()
  assert not re.search(r"lapack|cusolver|hipsolver|geqrf|orgqr|syevd", lowered)
  with jax.enable_x64(True):
    x = _generic_cloud(13, n=24)
    grads = [jax.grad(lambda p: jnp.sum(tinvnn.modified_mds(p, 3, "third_moment", s) ** 3))(x)
             for s in ("subspace", "eigh")]
    assert np.all(np.isfinite(grads[0]))
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-9 * np.abs(grads[1]).max())


_HANG_PROGRAM = """
import jax
from jaxrep.symmetry import tinvnn
mds = jax.vmap(lambda p: tinvnn.modified_mds(p, 3, "third_moment", "subspace"))
run = jax.jit(lambda clouds: [mds(x) for x in clouds])     # independent batched solves
clouds = [jax.random.normal(jax.random.PRNGKey(i), (200, 64, 3)) for i in range(3)]
for _ in range(20):
  jax.block_until_ready(run(clouds))
print("done")
"""


def test_vmapped_subspace_mds_does_not_hang():
  """The TinvNN data-stage pattern (independent vmapped MDS solves in one jit, run
  repeatedly) in a fresh process: with batched LAPACK QR it hung on a 2-core
  machine at 0% CPU (most runs of this program); it must finish."""
  import os
  import subprocess
  import sys

  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
  try:
    done = subprocess.run([sys.executable, "-c", _HANG_PROGRAM], env=env, timeout=240,
                          capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  except subprocess.TimeoutExpired:
    pytest.fail("vmapped subspace MDS did not finish in 240 s: a thread-pool deadlock?")
  assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]


def test_tinvnn_classifier_is_invariant_and_pointnet_is_permutation_invariant():
  with jax.enable_x64(True):
    x = _generic_cloud(9, n=24)
    backbone = tinvnn.PointNet(5, (8, 8), (8,))
    params = backbone.init(jax.random.PRNGKey(0), x)
    classify = tinvnn.tinvnn(backbone)
    act = lambda g, p: _act_on_points(g, p)
    eq.assert_invariant(lambda p: classify(params, p), _sample_similarity_and_permutation(24),
                        act, x, jax.random.PRNGKey(1), atol=1e-8)
    eq.assert_invariant(lambda p: backbone.apply(params, p), *groups.permutation_group(24), x,
                        jax.random.PRNGKey(2), atol=1e-10)
    assert eq.invariance_error(lambda p: backbone.apply(params, p),
                               _sample_similarity_and_permutation(24), act, x,
                               jax.random.PRNGKey(3)) > 1e-3


def test_point_cloud_sampler_is_deterministic_balanced_and_aligned():
  key = jax.random.PRNGKey(11)
  clouds, labels = _sample_clouds(key, 30, 50, 10, 0.01)
  again, _ = _sample_clouds(key, 30, 50, 10, 0.01)
  np.testing.assert_array_equal(clouds, again)
  assert clouds.shape == (30, 50, 3) and np.all(np.isfinite(clouds))
  np.testing.assert_array_equal(np.bincount(labels), np.full(point_clouds.NUM_SHAPES, 3))
  extent = np.abs(np.asarray(clouds)).max(axis=(1, 2))
  assert np.all(extent < 1.6) and np.all(extent > 0.5)
  exact, _ = _sample_clouds(key, 30, 50, 10, 0.0)              # no jitter
  np.testing.assert_allclose(jnp.linalg.norm(exact[0], axis=-1), 1.0, rtol=1e-5)   # sphere
  np.testing.assert_array_equal(exact[point_clouds.SHAPES.index("plane"), :, 2], 0.0)
  with pytest.raises(ValueError):
    point_clouds.sample_point_clouds(key, 4, 8, num_classes=11)


def test_similarity_action_is_a_similarity():
  with jax.enable_x64(True):
    x = _generic_cloud(12)
    s, r, t = groups.sample_similarity(jax.random.PRNGKey(13), 1.0, float(np.log(2.0)))
    assert 0.5 <= float(s) <= 2.0
    moved = groups.apply_similarity((s, r, t), x)
    np.testing.assert_allclose(tinvnn.pairwise_distances(moved),
                               s * tinvnn.pairwise_distances(x), atol=1e-10)


def test_quick_experiment(run_quick):
  results = run_quick(tinvnn_experiment.EXPERIMENT)
  assert results["measured"]["mds_invariance_error"]["mean"] < 1e-3
  assert abs(results["measured"]["drop_tinvnn"]["mean"]) < 1e-6
