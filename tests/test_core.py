"""Core plumbing: train step, loss composition, probes, configs, results."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier

from jaxrep.core import config as config_lib
from jaxrep.core import evaluate, results, train


def _regression(seed=0, n=64, d=5):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ rng.normal(size=d) + 0.1 * rng.normal(size=n)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def test_train_step_reaches_least_squares_optimum():
  x, y = _regression()
  lam = 0.1

  def loss_fn(w, batch, rng):
    del rng
    xb, yb = batch
    return jnp.mean((xb @ w - yb) ** 2) + lam * jnp.sum(w**2), {}

  optimizer = optax.sgd(0.1)
  state = train.init_train_state(jnp.zeros(x.shape[1]), optimizer, jax.random.PRNGKey(0))
  step = train.make_train_step(loss_fn, optimizer)
  for _ in range(500):
    state, metrics = step(state, (x, y))
  n = x.shape[0]
  closed_form = np.linalg.solve(x.T @ x / n + lam * np.eye(x.shape[1]), x.T @ y / n)
  np.testing.assert_allclose(state.params, closed_form, atol=1e-4)
  assert int(state.step) == 500 and "loss" in metrics


def test_step_key_is_fold_in_of_step():
  seen = []

  def loss_fn(w, batch, rng):
    return jnp.sum(w) * 0.0, {"draw": jax.random.uniform(rng)}

  optimizer = optax.sgd(0.0)
  key = jax.random.PRNGKey(3)
  state = train.init_train_state(jnp.zeros(2), optimizer, key)
  step = train.make_train_step(loss_fn, optimizer)
  for i in range(3):
    state, metrics = step(state, None)
    seen.append(float(metrics["draw"]))
    assert seen[-1] == float(jax.random.uniform(jax.random.fold_in(key, i)))
  assert len(set(seen)) == 3


def test_weighted_sum_reports_each_term_and_weights_total():
  def square(w, batch, rng):
    return jnp.sum(w**2), {"norm": jnp.linalg.norm(w)}

  def linear(w, batch, rng):
    return jnp.sum(w), {}

  loss_fn = train.weighted_sum({"square": (2.0, square), "linear": (0.5, linear)})
  w = jnp.array([1.0, 2.0])
  total, metrics = loss_fn(w, None, jax.random.PRNGKey(0))
  assert float(metrics["square"]) == 5.0 and float(metrics["linear"]) == 3.0
  assert float(total) == pytest.approx(2.0 * 5.0 + 0.5 * 3.0)
  assert float(metrics["loss"]) == float(total)
  assert float(metrics["square/norm"]) == pytest.approx(np.sqrt(5.0))
  grad = jax.grad(lambda p: loss_fn(p, None, jax.random.PRNGKey(0))[0])(w)
  np.testing.assert_allclose(grad, 4.0 * w + 0.5)


def test_scan_steps_matches_python_loop_and_vmaps():
  x, y = _regression(1)

  def loss_fn(w, batch, rng):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2), {}

  optimizer = optax.sgd(0.05, momentum=0.9)
  step = train.make_train_step(loss_fn, optimizer, jit=False)
  init = train.init_train_state(jnp.zeros(x.shape[1]), optimizer, jax.random.PRNGKey(0))
  scanned, metrics = jax.jit(lambda s: train.scan_steps(step, s, lambda i: (x, y), 20))(init)
  looped = init
  for _ in range(20):
    looped, _ = step(looped, (x, y))
  np.testing.assert_allclose(scanned.params, looped.params, rtol=1e-5, atol=1e-6)
  assert metrics["loss"].shape == (20,)
  inits = jax.vmap(lambda w: train.init_train_state(w, optimizer, jax.random.PRNGKey(0)))(
      jnp.zeros((3, x.shape[1])))
  batched, _ = jax.vmap(lambda s: train.scan_steps(step, s, lambda i: (x, y), 20))(inits)
  np.testing.assert_allclose(batched.params[1], scanned.params, rtol=1e-5, atol=1e-6)


def _classification(seed=0, n=300, d=6, classes=3):
  rng = np.random.default_rng(seed)
  centers = 2 * rng.normal(size=(classes, d))
  y = rng.integers(0, classes, size=n)
  x = centers[y] + rng.normal(size=(n, d))
  return x.astype(np.float32), y


@pytest.mark.reference
def test_ridge_probe_matches_sklearn():
  x, y = _classification()
  l2 = 0.01
  w = evaluate.ridge_probe_fit(jnp.asarray(x), jnp.asarray(y), 3, l2)
  reference = Ridge(alpha=l2 * x.shape[0]).fit(x, np.eye(3)[y])
  np.testing.assert_allclose(w[:-1], reference.coef_.T, atol=1e-4)
  np.testing.assert_allclose(w[-1], reference.intercept_, atol=1e-4)


@pytest.mark.reference
def test_logistic_probe_matches_sklearn():
  x, y = _classification(1)
  l2 = 1e-2
  w = evaluate.logistic_probe_fit(jnp.asarray(x), jnp.asarray(y), 3, l2, num_steps=300)
  reference = LogisticRegression(C=1.0 / (l2 * x.shape[0]), tol=1e-10, max_iter=10000).fit(x, y)
  ours = np.asarray(evaluate.linear_predict(w, jnp.asarray(x)))
  theirs = reference.decision_function(x)
  # Softmax logits are defined up to a per-example constant.
  np.testing.assert_allclose(ours - ours.mean(1, keepdims=True),
                             theirs - theirs.mean(1, keepdims=True), atol=2e-3)


@pytest.mark.reference
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_sklearn(metric):
  x, y = _classification(2)
  xt, yt = _classification(3, n=100)
  ours = evaluate.knn_predict(jnp.asarray(x), jnp.asarray(y), jnp.asarray(xt), 3, k=5,
                              metric=metric)
  reference = KNeighborsClassifier(5, metric=metric, algorithm="brute").fit(x, y).predict(xt)
  assert np.mean(np.asarray(ours) == reference) >= 0.99
  acc = evaluate.knn_accuracy(jnp.asarray(x), jnp.asarray(y), jnp.asarray(xt),
                              jnp.asarray(yt), 3, k=5, metric=metric)
  assert float(acc) == pytest.approx(np.mean(np.asarray(ours) == yt))


def test_accuracy_checks_shapes():
  assert float(evaluate.accuracy(jnp.eye(3), jnp.arange(3))) == 1.0
  with pytest.raises(AssertionError):
    evaluate.accuracy(jnp.eye(3), jnp.arange(4))


def _config():
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.lr = 0.1
  c.ks = (4, 8)
  c.name = "a"
  c.flag = False
  c.sub = ml_collections.ConfigDict({"batch_size": 32})
  return c


def test_overrides_parse_by_default_type():
  c = config_lib.apply_overrides(_config(), ["num_seeds=5", "lr=1", "ks=2,3,5",
                                              "flag=true", "name=b", "sub.batch_size=8"])
  assert (c.num_seeds, c.lr, c.ks, c.flag, c.name, c.sub.batch_size) == (
      5, 1.0, (2, 3, 5), True, "b", 8)


@pytest.mark.parametrize("override, fragment", [
    ("nope=1", "unknown config key 'nope'"),
    ("num_seeds=abc", "expects int"),
    ("ks=1,x", "expects int"),
    ("flag=maybe", "expects bool"),
    ("lr", "KEY=VALUE"),
])
def test_bad_overrides_are_one_line_errors(override, fragment):
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.apply_overrides(_config(), [override])
  assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override", ["num_seeds=0", "sub.batch_size=-1", "ks=4,0"])
def test_non_positive_sizes_rejected(override):
  c = config_lib.apply_overrides(_config(), [override])
  with pytest.raises(config_lib.ConfigError, match="must be positive"):
    config_lib.check_positive_sizes(c)


def test_summarize_and_atomic_json(tmp_path):
  stats = results.summarize([1.0, 2.0, 3.0])
  assert stats == {"mean": 2.0, "std": pytest.approx(np.std([1, 2, 3])), "n": 3}
  path = tmp_path / "r.json"
  results.write_json_atomic(str(path), {"a": np.float32(1.5), "b": np.arange(3),
                                        "c": float("inf")})
  assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": "inf"}
  assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
