"""DSD sampler, Bayes classifier and the orthogonal-equivariance lemma behind
the FCN/LCN lower bounds (Lahoti et al., ICLR 2024)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxrep.core import train
from jaxrep.data.dsd import dsd_bayes_error, dsd_bayes_logit, dsd_sample, random_signal
from jaxrep.symmetry import locality

K, D, N = 4, 3, 48


def test_dsd_sampler_distribution():
  key = jax.random.PRNGKey(0)
  signal = random_signal(jax.random.PRNGKey(1), D, 3.0)
  x, y = dsd_sample(key, 20000, K, signal)
  assert x.shape == (20000, K, D) and set(np.unique(y)) == {-1.0, 1.0}
  assert stats.binomtest(int((y > 0).sum()), 20000, 0.5).pvalue > 1e-3
  # With ‖w*‖ = 3σ the signal patch is almost always the largest projection on y·w*.
  proj = np.asarray(jnp.einsum("nkd,d->nk", x, signal) * y[:, None])
  patch = proj.argmax(1)
  counts = np.bincount(patch, minlength=K)
  assert stats.chisquare(counts).pvalue > 1e-3
  assert float(jnp.linalg.norm(signal)) == pytest.approx(3.0, rel=1e-5)


def test_dsd_sample_is_prefix_consistent():
  """The experiment samples the largest training set once and trains size n on its
  first n rows; with JAX's partitionable threefry these are exactly
  ``dsd_sample(key, n)``, so every n of the grid sees the same data as if drawn alone."""
  signal = random_signal(jax.random.PRNGKey(1), D, 3.0)
  x_big, y_big = dsd_sample(jax.random.PRNGKey(2), 1000, K, signal)
  x, y = dsd_sample(jax.random.PRNGKey(2), 37, K, signal)
  np.testing.assert_array_equal(x_big[:37], x)
  np.testing.assert_array_equal(y_big[:37], y)


@pytest.mark.reference
def test_bayes_logit_matches_brute_force_likelihood_ratio():
  signal = random_signal(jax.random.PRNGKey(2), D, 1.5)
  x, _ = dsd_sample(jax.random.PRNGKey(3), 50, K, signal, noise_std=0.8)
  xs, w = np.asarray(x, np.float64), np.asarray(signal, np.float64)

  def likelihood(xi, yi):
    """p(x|y) = (1/k) Σ_j N(x_j; y·w, σ²I) Π_{m≠j} N(x_m; 0, σ²I)."""
    def density(patch, mean):
      return stats.multivariate_normal(mean, 0.64 * np.eye(D)).pdf(patch)
    return np.mean([density(xi[j], yi * w) * np.prod(
        [density(xi[m], np.zeros(D)) for m in range(K) if m != j]) for j in range(K)])

  brute = np.array([np.log(likelihood(xi, 1.0)) - np.log(likelihood(xi, -1.0)) for xi in xs])
  np.testing.assert_allclose(dsd_bayes_logit(x, signal, 0.8), brute, rtol=1e-3, atol=1e-3)


def test_bayes_error_matches_full_dimensional_estimate():
  signal = random_signal(jax.random.PRNGKey(4), 8, 2.0)
  x, y = dsd_sample(jax.random.PRNGKey(5), 200000, 6, signal)
  direct = float(jnp.mean(jnp.sign(dsd_bayes_logit(x, signal)) != y))
  reduced = float(dsd_bayes_error(jax.random.PRNGKey(6), 6, 2.0, num_samples=200000))
  assert abs(direct - reduced) < 4 * np.sqrt(2 * direct * (1 - direct) / 200000)


def _train_predictions(kind, x, y, params, steps=40, lr=0.5):
  model = locality.PatchNet(kind, channels=3)
  optimizer = locality.gradient_descent(lr)
  step = train.make_train_step(locality.logistic_loss_fn(model), optimizer)
  state = train.init_train_state(params, optimizer, jax.random.PRNGKey(0))
  for _ in range(steps):
    state, _ = step(state, {"x": x, "y": y})
  return model.apply(state.params, x)


def _random_orthogonal(key, n):
  q, r = jnp.linalg.qr(jax.random.normal(key, (n, n)))
  return q * jnp.sign(jnp.diag(r))


def _rotate(x, blocks):
  """x (n, k, d) with patch i rotated by blocks[i]: x_i ↦ U_i x_i."""
  return jnp.einsum("kde,nke->nkd", blocks, x)


def _setup(kind):
  signal = random_signal(jax.random.PRNGKey(7), D, 2.0)
  x, y = dsd_sample(jax.random.PRNGKey(8), N, K, signal)
  params = locality.PatchNet(kind, channels=3).init(jax.random.PRNGKey(9), x[:1])
  return x, y, params


def _set_kernel(params, kernel):
  return {"params": {**params["params"], "kernel": kernel}}


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def test_fcn_gradient_descent_is_orthogonally_equivariant():
  x, y, params = _setup("fcn")
  u = _random_orthogonal(jax.random.PRNGKey(10), K * D)
  x_rot = (x.reshape(N, K * D) @ u.T).reshape(N, K, D)
  kernel = params["params"]["kernel"]
  rotated = _set_kernel(params, jnp.einsum("fg,gkc->fkc", u, kernel))
  np.testing.assert_allclose(_train_predictions("fcn", x_rot, y, rotated),
                             _train_predictions("fcn", x, y, params), atol=1e-8)


def test_lcn_is_equivariant_to_block_diagonal_rotations():
  x, y, params = _setup("lcn")
  blocks = jnp.stack([_random_orthogonal(jax.random.PRNGKey(20 + i), D) for i in range(K)])
  kernel = params["params"]["kernel"]
  rotated = _set_kernel(params, jnp.einsum("kde,kec->kdc", blocks, kernel))
  np.testing.assert_allclose(_train_predictions("lcn", _rotate(x, blocks), y, rotated),
                             _train_predictions("lcn", x, y, params), atol=1e-8)


def test_cnn_is_not_equivariant_to_unequal_blocks_but_is_to_equal_ones():
  x, y, params = _setup("cnn")
  blocks = jnp.stack([_random_orthogonal(jax.random.PRNGKey(30 + i), D) for i in range(K)])
  kernel = params["params"]["kernel"]
  base = _train_predictions("cnn", x, y, params)
  best_rotated_init = _set_kernel(params, blocks[0] @ kernel)
  unequal = _train_predictions("cnn", _rotate(x, blocks), y, best_rotated_init)
  assert float(jnp.max(jnp.abs(unequal - base))) > 1e-2
  equal_blocks = jnp.stack([blocks[0]] * K)
  equal = _train_predictions("cnn", _rotate(x, equal_blocks), y, best_rotated_init)
  np.testing.assert_allclose(equal, base, atol=1e-8)


def test_first_crossing_interpolates_in_log_n():
  sizes = jnp.array([10.0, 100.0, 1000.0])
  assert float(locality.first_crossing(sizes, jnp.array([0.5, 0.3, 0.1]), 0.2)) == \
      pytest.approx(10**2.5, rel=1e-4)
  assert float(locality.first_crossing(sizes, jnp.array([0.1, 0.05, 0.01]), 0.2)) == 10.0
  assert np.isinf(float(locality.first_crossing(sizes, jnp.array([0.5, 0.4, 0.3]), 0.2)))


def test_unknown_kind_is_rejected():
  with pytest.raises(ValueError, match="unknown model kind"):
    locality.PatchNet("mlp").init(jax.random.PRNGKey(0), jnp.ones((1, 2, 3)))


@pytest.mark.parametrize("kind", locality.KINDS)
def test_masked_loss_trains_like_the_first_n_samples(kind):
  """The DSD experiment trains several n in one program by masking: the masked
  full-batch loss and its gradient equal those on the first n samples alone."""
  signal = random_signal(jax.random.PRNGKey(0), 5, 3.0)
  x, y = dsd_sample(jax.random.PRNGKey(1), 64, 4, signal)
  model = locality.PatchNet(kind, 3)
  params = model.init(jax.random.PRNGKey(2), x[:1])
  loss_fn = locality.logistic_loss_fn(model)
  n = 23
  mask = (jnp.arange(64) < n).astype(jnp.float32)
  value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
  (masked, _), masked_grad = value_and_grad(params, {"x": x, "y": y, "mask": mask}, None)
  (alone, _), alone_grad = value_and_grad(params, {"x": x[:n], "y": y[:n]}, None)
  np.testing.assert_allclose(masked, alone, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(masked_grad), jax.tree_util.tree_leaves(alone_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
