"""d-simplex geometry, the HOC loss against Eq. 4 written out in NumPy, the
identification / average-compatibility metrics against the official definitions,
the class-balanced replay sampler and the training task's φ_old."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from jaxrep.probe import dsimplex


@pytest.mark.parametrize("k", [2, 3, 10, 32])
def test_dsimplex_gram_unit_rows_zero_column_sums(k):
  w = np.asarray(dsimplex.dsimplex(k), np.float64)
  assert w.shape == (k, k - 1)
  gram = w @ w.T
  np.testing.assert_allclose(np.diag(gram), 1.0, atol=1e-6)
  off = gram[~np.eye(k, dtype=bool)]
  np.testing.assert_allclose(off, -1.0 / (k - 1), atol=1e-6)
  np.testing.assert_allclose(w.sum(0), 0.0, atol=1e-6)
  assert np.linalg.matrix_rank(w) == k - 1


def test_dsimplex_rejects_fewer_than_two_classes():
  with pytest.raises(ValueError, match="at least 2"):
    dsimplex.dsimplex(1)


def test_fixed_classifier_gets_no_gradient():
  w = dsimplex.dsimplex(5)
  feats = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  grad = jax.grad(lambda s: dsimplex.fixed_classifier_logits(feats, s).sum())(w)
  np.testing.assert_array_equal(grad, 0.0)


def _reference_hoc(new, old, labels, mu):
  """Eq. 4 term by term: −μ⟨o_i, n_i⟩ + log Σ_{j: y_j ≠ y_i} exp(μ⟨o_i, n_j⟩)."""
  new = new / np.linalg.norm(new, axis=1, keepdims=True)
  old = old / np.linalg.norm(old, axis=1, keepdims=True)
  losses = []
  for i in range(len(labels)):
    negatives = [np.exp(mu * old[i] @ new[j]) for j in range(len(labels))
                 if labels[j] != labels[i]]
    losses.append(-mu * old[i] @ new[i] + (np.log(np.sum(negatives)) if negatives else 0.0))
  return np.mean(losses)


@pytest.mark.parametrize("labels", [[0, 1, 2, 0, 1, 3, 3, 2], [0, 0, 0, 1, 1, 1, 1, 1],
                                    [4, 4, 4, 4, 4, 4, 4, 4]])
def test_hoc_loss_matches_equation_4(labels):
  rng = np.random.default_rng(0)
  new, old = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
  with jax.enable_x64(True):
    value = dsimplex.hoc_loss(jnp.asarray(new), jnp.asarray(old), jnp.asarray(labels), mu=3.0)
    np.testing.assert_allclose(value, _reference_hoc(new, old, np.array(labels), 3.0),
                               rtol=1e-10)


def test_hoc_loss_gradients_match_finite_differences_and_skip_the_old_model():
  rng = np.random.default_rng(1)
  labels = jnp.asarray([0, 1, 2, 0, 1, 2])
  with jax.enable_x64(True):
    new, old = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=(6, 4)))
    check_grads(lambda n: dsimplex.hoc_loss(n, old, labels, mu=2.0), (new,), order=1,
                modes=("rev",), atol=1e-6, rtol=1e-6)
    grad_old = jax.grad(lambda o: dsimplex.hoc_loss(new, o, labels))(old)
    np.testing.assert_array_equal(grad_old, 0.0)


def test_compatibility_loss_is_weighted_sum_of_ce_and_hoc():
  rng = np.random.default_rng(2)
  logits, labels = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray([0, 1, 2, 3, 0, 1])
  new, old = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=(6, 3)))
  total, metrics = dsimplex.compatibility_loss(logits, labels, new, old, lam=0.3, mu=5.0)
  np.testing.assert_allclose(total, 0.3 * metrics["ce"] + 0.7 * metrics["hoc"], rtol=1e-6)
  np.testing.assert_allclose(metrics["hoc"], dsimplex.hoc_loss(new, old, labels, 5.0), rtol=1e-6)
  only_ce, _ = dsimplex.compatibility_loss(logits, labels, new, None)
  np.testing.assert_allclose(only_ce, metrics["ce"], rtol=1e-6)


def _reference_identification(query, query_labels, gallery, gallery_labels):
  """The official 1:N search: unit class templates of unit gallery features, top-1."""
  unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  classes = np.unique(gallery_labels)
  templates = unit(np.stack([unit(gallery)[gallery_labels == c].mean(0) for c in classes]))
  predicted = classes[np.argmax(unit(query) @ templates.T, axis=1)]
  return np.mean(predicted == query_labels)


def test_identification_accuracy_matches_reference():
  rng = np.random.default_rng(3)
  gallery_labels, query_labels = rng.integers(0, 4, 40), rng.integers(0, 4, 30)
  centers = rng.normal(size=(4, 6))
  gallery = centers[gallery_labels] + 0.8 * rng.normal(size=(40, 6))
  query = centers[query_labels] + 0.8 * rng.normal(size=(30, 6))
  value = dsimplex.identification_accuracy(jnp.asarray(query), jnp.asarray(query_labels),
                                           jnp.asarray(gallery), jnp.asarray(gallery_labels), 4)
  expected = _reference_identification(query, query_labels, gallery, gallery_labels)
  assert float(value) == pytest.approx(expected)
  assert 0.3 < expected < 1.0


def _reference_average_compatibility(matrix):
  """The official definition: pairs i > j with M_ij ≤ M_jj are incompatible."""
  steps = matrix.shape[0]
  incompatible = sum(matrix[i][j] <= matrix[j][j]
                     for j in range(steps) for i in range(j + 1, steps))
  max_ac = max(steps * (steps - 1) / 2, 1)
  return (max_ac - incompatible) / max_ac


@pytest.mark.parametrize("seed", range(4))
def test_average_compatibility_matches_official_definition(seed):
  rng = np.random.default_rng(seed)
  matrix = np.round(rng.uniform(size=(5, 5)), 1)  # rounding makes ties (M_ij = M_jj) likely
  assert float(dsimplex.average_compatibility(jnp.asarray(matrix))) == pytest.approx(
      _reference_average_compatibility(matrix))


def test_compatibility_matrix_entries_are_cross_model_identification():
  rng = np.random.default_rng(4)
  q_labels, g_labels = jnp.asarray(rng.integers(0, 3, 20)), jnp.asarray(rng.integers(0, 3, 25))
  queries, gallery = jnp.asarray(rng.normal(size=(3, 20, 4))), jnp.asarray(rng.normal(size=(3, 25, 4)))
  matrix = dsimplex.compatibility_matrix(queries, q_labels, gallery, g_labels, 3)
  for i in range(3):
    for j in range(3):
      assert float(matrix[i, j]) == pytest.approx(float(dsimplex.identification_accuracy(
          queries[i], q_labels, gallery[j], g_labels, 3)))


def test_models_sharing_the_simplex_are_compatible_and_rotated_ones_are_not():
  """Features at their class vertex (plus noise) from any model are compatible;
  a model whose features are rotated away from the simplex is not."""
  w = np.asarray(dsimplex.dsimplex(6))
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 6, 60)
  noisy = lambda scale: w[labels] + scale * rng.normal(size=(60, 5))
  q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
  feats = jnp.asarray(np.stack([noisy(0.6), noisy(0.4), noisy(0.2) @ q.T]))
  matrix = np.asarray(dsimplex.compatibility_matrix(feats, jnp.asarray(labels), feats,
                                                    jnp.asarray(labels), 6))
  assert matrix[1, 0] > matrix[0, 0]
  assert matrix[2, 0] < matrix[0, 0] and matrix[2, 1] < matrix[1, 1]


def test_incremental_replay_weights_are_task_classes_plus_a_balanced_memory():
  y = np.repeat(np.arange(10), 30)
  weights = dsimplex.incremental_replay_weights(y, 5, 4, np.random.default_rng(0))
  for t in range(5):
    available = weights[t] > 0
    seen = np.unique(y[available])
    np.testing.assert_array_equal(seen, np.arange(2 * t + 2))
    # every past class keeps exactly 4 memory samples; the task's classes all 30
    counts = np.bincount(y[available], minlength=10)[:2 * t + 2]
    np.testing.assert_array_equal(counts, [4] * (2 * t) + [30, 30])
    # class-balanced: each available class carries total weight 1
    np.testing.assert_allclose(np.bincount(y, weights[t], minlength=10)[:2 * t + 2], 1.0,
                               rtol=1e-6)
  # the memory only grows: task 4's memory contains task 3's
  assert np.all((weights[3] > 0) & (y < 6) <= (weights[4] > 0))


def test_replay_indices_follow_the_weights():
  weights = jnp.asarray([0.0, 1.0, 2.0, 0.0, 3.0, 2.0])
  draws = jax.vmap(lambda t: dsimplex.replay_indices(jax.random.PRNGKey(0), t, weights, 8))(
      jnp.arange(500)).reshape(-1)
  counts = np.bincount(np.asarray(draws), minlength=6)
  assert counts[0] == counts[3] == 0
  expected = np.asarray(weights)[[1, 2, 4, 5]] / 8 * draws.size
  assert stats.chisquare(counts[[1, 2, 4, 5]], expected).pvalue > 1e-3


def test_compatibility_task_keeps_the_start_as_the_old_model():
  """λ = 0 (HOC only): after one step, the HOC term compares the moved model with
  the *start* parameters (φ_old), not with the current ones; λ = None is plain CE."""
  import optax

  rng = np.random.default_rng(5)
  n, d_in, k = 24, 6, 4
  x = jnp.asarray(rng.normal(size=(n, d_in)), jnp.float32)
  y = jnp.asarray(np.arange(n) % k)
  simplex = dsimplex.dsimplex(k)
  apply_fn = lambda p, inputs: (inputs @ p, dsimplex.fixed_classifier_logits(inputs @ p,
                                                                             simplex))
  start = jnp.asarray(rng.normal(size=(d_in, k - 1)), jnp.float32)
  inputs = {"params": start, "key": jax.random.PRNGKey(3), "weights": jnp.ones(n),
            "examples": {"x": x, "y": y}}
  task = dsimplex.compatibility_task(apply_fn, optax.sgd(0.5), batch_size=12, lam=0.0)
  state = task.init(inputs)
  state, _ = jax.jit(task.step)(state, inputs)
  _, metrics = jax.jit(task.step)(state, inputs)
  idx = dsimplex.replay_indices(inputs["key"], 1, inputs["weights"], 12)
  expected = dsimplex.hoc_loss(x[idx] @ state.params, x[idx] @ start, y[idx])
  np.testing.assert_allclose(metrics["hoc"], expected, rtol=1e-5)
  wrong = dsimplex.hoc_loss(x[idx] @ state.params, x[idx] @ state.params, y[idx])
  assert abs(float(wrong) - float(expected)) > 1e-3
  np.testing.assert_allclose(metrics["loss"], metrics["hoc"], rtol=1e-6)

  plain = dsimplex.compatibility_task(apply_fn, optax.sgd(0.5), batch_size=12, lam=None)
  _, metrics = jax.jit(plain.step)(plain.init(inputs), inputs)
  assert "hoc" not in metrics
  np.testing.assert_allclose(metrics["loss"], metrics["ce"], rtol=1e-6)
