"""The shared shift baselines against their definitions; DomainBed's hparams and selection."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.core import fit as fit_lib
from jaxrep.core import parallel
from jaxrep.core.config import ConfigError
from jaxrep.shift import baselines, envs, groupdro, hparams, selection


def np_log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_risk(logits, y):
  """Mean cross-entropy over the last-but-one axis, float64: (..., n, C), (..., n) → (...)."""
  logp = np_log_softmax(np.asarray(logits, np.float64))
  return -np.take_along_axis(logp, np.asarray(y)[..., None], axis=-1)[..., 0].mean(axis=-1)


def random_problem(seed=0, num_envs=3, n=16, classes=4, dim=5):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(k1, (num_envs, n, dim))
  y = jax.random.randint(k2, (num_envs, n), 0, classes)
  w = jax.random.normal(k3, (dim, classes))
  return x, y, w


linear = lambda w, x: x @ w


def test_erm_is_mean_cross_entropy():
  x, y, w = random_problem()
  loss, metrics = jax.jit(baselines.erm_loss_fn(linear))(w, {"x": x, "y": y}, None)
  logits = np.asarray(x) @ np.asarray(w)
  np.testing.assert_allclose(float(loss), np_risk(logits.reshape(-1, 4), y.reshape(-1)),
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["env_risks"], np_risk(logits, y), rtol=1e-5)


@pytest.mark.parametrize("split_batch", [False, True])
def test_irm_penalty_is_the_squared_scale_gradient_by_central_differences(split_batch):
  x, y, w = random_problem(1)
  logits = np.asarray(x) @ np.asarray(w)
  h = 1e-5
  z64 = logits.astype(np.float64)  # scale in float64: h·z is below float32's resolution

  def grad_at_one(z, labels):  # d/dw R(w · z) at w = 1, central differences
    return (np_risk((1 + h) * z, labels) - np_risk((1 - h) * z, labels)) / (2 * h)

  if split_batch:
    expected = grad_at_one(z64[:, ::2], y[:, ::2]) * grad_at_one(z64[:, 1::2], y[:, 1::2])
  else:
    expected = grad_at_one(z64, y) ** 2
  got = jax.jit(baselines.irm_penalty, static_argnames="split_batch")(
      jnp.asarray(logits), y, split_batch=split_batch)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  assert np.all(expected != 0)


def test_irm_loss_anneals_the_penalty_weight_at_the_anneal_step():
  x, y, w = random_problem(2)
  loss_fn = jax.jit(baselines.irm_loss_fn(linear, irm_lambda=100.0, penalty_anneal_iters=5))
  for step, weight in [(4, 1.0), (5, 100.0)]:
    loss, m = loss_fn(w, {"x": x, "y": y, "step": jnp.int32(step)}, None)
    np.testing.assert_allclose(loss, m["nll"] + weight * m["penalty"], rtol=1e-6)
  overridden, m = loss_fn(w, {"x": x, "y": y, "step": 9, "irm_lambda": 3.0}, None)
  np.testing.assert_allclose(overridden, m["nll"] + 3.0 * m["penalty"], rtol=1e-6)
  with pytest.raises(ConfigError, match="batch\\['step'\\]"):
    loss_fn(w, {"x": x, "y": y}, None)  # annealing without the step


def test_vrex_penalty_is_the_variance_of_the_environment_risks():
  x, y, w = random_problem(3, num_envs=4)
  risks = np_risk(np.asarray(x) @ np.asarray(w), y)
  np.testing.assert_allclose(baselines.vrex_penalty(jnp.asarray(risks)), np.var(risks),
                             rtol=1e-5)
  loss_fn = jax.jit(baselines.vrex_loss_fn(linear, vrex_lambda=7.0, penalty_anneal_iters=0))
  loss, m = loss_fn(w, {"x": x, "y": y}, None)
  np.testing.assert_allclose(m["penalty"], np.var(risks), rtol=1e-4)
  np.testing.assert_allclose(loss, risks.mean() + 7.0 * np.var(risks), rtol=1e-5)


def test_groupdro_weights_follow_the_exponentiated_gradient_update():
  losses = np.asarray(jax.random.uniform(jax.random.PRNGKey(4), (6, 3), maxval=3.0))
  eta = 0.5
  q_np = np.ones(3) / 3
  q = groupdro.groupdro_init(3)
  for ell in losses:
    q_np = q_np * np.exp(eta * ell)
    q_np = q_np / q_np.sum()
    q = groupdro.groupdro_update(q, jnp.asarray(ell), eta)
    np.testing.assert_allclose(q, q_np, rtol=1e-5)
    np.testing.assert_allclose(float(q.sum()), 1.0, rtol=1e-6)
  assert q_np.argmax() == losses.sum(axis=0).argmax()
  # The weights are constants for the gradient: d/dℓ Σ_e q_e(ℓ) ℓ_e = q.
  weighted = lambda ell: jnp.dot(groupdro.groupdro_update(q, ell, eta), ell)
  ell = jnp.asarray(losses[0])
  np.testing.assert_allclose(jax.grad(weighted)(ell), groupdro.groupdro_update(q, ell, eta),
                             rtol=1e-6)


def np_coral(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mean_term = np.mean((a.mean(0) - b.mean(0)) ** 2)
  cov_term = np.mean((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2)
  return mean_term + cov_term


def test_coral_is_zero_for_matching_moments_and_matches_numpy():
  distance = jax.jit(baselines.coral_distance)
  key_a, key_b, key_p = jax.random.split(jax.random.PRNGKey(5), 3)
  a = jax.random.normal(key_a, (40, 6))
  shuffled = a[jax.random.permutation(key_p, 40)]  # same rows: same mean and covariance
  assert float(distance(a, shuffled)) < 1e-10
  b = 1.5 * jax.random.normal(key_b, (30, 6)) + 0.3
  assert float(distance(a, b)) > 1e-2
  np.testing.assert_allclose(distance(a, b), np_coral(a, b), rtol=1e-5)
  c = a[:30] * 0.5
  stacked = jnp.stack([a[:30], b, c])
  pairs = [np_coral(a[:30], b), np_coral(a[:30], c), np_coral(b, c)]
  np.testing.assert_allclose(jax.jit(baselines.coral_penalty)(stacked), np.mean(pairs),
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# Hyperparameters and selection


# From DomainBed's own hparams_registry (commit b93c22a) with misc.seed_hash:
# random_hparams(alg, dataset, seed_hash(hparams_seed, trial_seed)).
DOMAINBED_DRAWS = [
    ("IRM", 1, 0, "small", {"irm_lambda": 65030.52212762795, "irm_penalty_anneal_iters": 2,
                            "lr": 0.00011906162909279594, "weight_decay": 0.0,
                            "batch_size": 372}),
    ("CORAL", 2, 1, "large", {"mmd_gamma": 0.17339913420118555, "lr": 0.0002692684204277505,
                              "weight_decay": 3.539788355410888e-06, "batch_size": 18}),
    ("GroupDRO", 2, 1, "small", {"groupdro_eta": 0.005213293019059593}),
    ("VREx", 1, 0, "small", {"vrex_lambda": 3307.1978049278796,
                             "vrex_penalty_anneal_iters": 47}),
]
RANGES = {"lr": (10 ** -4.5, 10 ** -2.5), "batch_size": (8, 512), "irm_lambda": (0.1, 1e5),
          "irm_penalty_anneal_iters": (1, 1e4), "vrex_lambda": (0.1, 1e5),
          "vrex_penalty_anneal_iters": (1, 1e4), "groupdro_eta": (1e-3, 1e-1),
          "mmd_gamma": (0.1, 10.0), "weight_decay": (0.0, 0.0)}


def test_hparams_follow_domainbeds_rule():
  for alg in hparams.ALGORITHMS:
    defaults = hparams.default_hparams(alg)
    assert hparams.run_hparams(alg, 0, trial_seed=3) == defaults
    assert hparams.run_hparams(alg, 4, 1) == hparams.run_hparams(alg, 4, 1)
    draws = [hparams.run_hparams(alg, h, t) for h in range(1, 30) for t in range(2)]
    for name, (low, high) in RANGES.items():
      values = [d[name] for d in draws if name in d]
      assert all(low <= v <= high for v in values), (alg, name)
  assert hparams.run_hparams("IRM", 1, 0) != hparams.run_hparams("IRM", 1, 1)
  assert hparams.run_hparams("IRM", 1, 0) != hparams.run_hparams("IRM", 2, 0)
  assert hparams.default_hparams("IRM")["irm_lambda"] == 100.0
  for alg, h, t, scale, expected in DOMAINBED_DRAWS:
    got = hparams.run_hparams(alg, h, t, scale)
    assert {k: got[k] for k in expected} == pytest.approx(expected, rel=1e-12)
  sweep = hparams.sweep_hparams("VREx", 3)
  assert sweep["vrex_lambda"].shape == (3,) and sweep["vrex_lambda"][0] == 10.0
  with pytest.raises(ConfigError, match="unknown algorithm"):
    hparams.default_hparams("Fish")


def test_selection_uses_training_domain_validation_only():
  # 3 settings × 2 checkpoints × 2 training environments.
  val = np.array([[[0.70, 0.72], [0.80, 0.78]],
                  [[0.90, 0.88], [0.60, 0.62]],
                  [[0.50, 0.55], [0.65, 0.60]]])
  test = np.array([[0.40, 0.45], [0.30, 0.20], [0.95, 0.60]])  # test-best: (2, 0)
  pick = selection.training_domain_validation(val, test)
  assert pick.index == (1, 0)
  assert pick.test_accuracy == 0.30 and pick.val_accuracy == pytest.approx(0.89)
  assert pick.test_accuracy < test.max()
  test_val = np.array([[0.1, 0.5], [0.9, 0.2], [0.3, 0.4]])
  oracle = selection.oracle_test_domain_validation(test_val, test)
  assert oracle.index == (0, 1) and "oracle" in oracle.method  # last checkpoints only
  with pytest.raises(ConfigError):
    selection.training_domain_validation(val, test[:, 0])


# ---------------------------------------------------------------------------
# Environments and the task


def test_split_and_minibatches_respect_each_environment():
  data = {"x": np.arange(50, dtype=np.float32)[:, None], "y": np.arange(50) % 2}
  env = np.repeat([0, 1], [20, 30])
  train, val = envs.split_environments(jax.random.PRNGKey(0), data, env)
  again, _ = envs.split_environments(jax.random.PRNGKey(0), data, env)
  np.testing.assert_array_equal(train["x"], again["x"])
  assert list(train["size"]) == [16, 24] and list(val["size"]) == [4, 6]
  for e, rows in enumerate([range(20), range(20, 50)]):
    seen = set(train["x"][e, :train["size"][e], 0]) | set(val["x"][e, :val["size"][e], 0])
    assert seen == set(map(float, rows))
  key = jax.random.PRNGKey(1)
  for replace in (True, False):
    idx = envs.env_minibatch_indices(key, 3, jnp.asarray(train["size"]), 8, replace=replace,
                                     num_rows=24)
    assert idx.shape == (2, 8) and np.all(np.asarray(idx) < train["size"][:, None])
  idx = envs.env_minibatch_indices(key, 3, jnp.asarray(train["size"]), 16, replace=False,
                                   num_rows=24)
  assert all(len(set(row)) == 16 for row in np.asarray(idx))
  with pytest.raises(ConfigError, match="smallest"):
    envs.env_minibatch_indices(key, 0, jnp.asarray(train["size"]), 17, replace=False,
                               num_rows=24)


def mlp_init(key, x):
  k1, k2 = jax.random.split(key)
  return {"w1": 0.5 * jax.random.normal(k1, (x.shape[-1], 8)), "b1": jnp.zeros(8),
          "w2": 0.5 * jax.random.normal(k2, (8, 2)), "b2": jnp.zeros(2)}


features = lambda p, x: jnp.tanh(x @ p["w1"] + p["b1"])
head = lambda p, f: f @ p["w2"] + p["b2"]
mlp = lambda p, x: head(p, features(p, x))


ADAM = optax.adam(2e-2)
BASELINES = {  # the fit test's tasks, built fresh per fit
    "ERM": lambda: envs.environment_task(mlp_init, baselines.erm_loss_fn(mlp), ADAM,
                                         batch_size=64),
    "IRM": lambda: envs.environment_task(  # λ: 1 → 10 at step 20, Adam reset there
        mlp_init, baselines.irm_loss_fn(mlp, irm_lambda=10.0, penalty_anneal_iters=20,
                                        split_batch=True), ADAM, batch_size=64,
        reset_optimizer_at=20),
    "VREx": lambda: envs.environment_task(
        mlp_init, baselines.vrex_loss_fn(mlp, vrex_lambda=10.0, penalty_anneal_iters=0),
        ADAM, batch_size=64),
    "GroupDRO": lambda: groupdro.groupdro_task(mlp_init, mlp, ADAM, batch_size=64,
                                               groupdro_eta=0.1),
    "CORAL": lambda: envs.environment_task(mlp_init, baselines.coral_loss_fn(features, head),
                                           ADAM, batch_size=64),
}


def test_each_baseline_trains_through_fit_on_colored_envs():
  data = envs.colored_linear_envs(jax.random.PRNGKey(0), 300)
  train, val = envs.split_environments(jax.random.PRNGKey(1), data, data["env"])
  one = parallel.make_mesh(num_data=1, num_seed=1)
  val_acc, test_acc = [], []
  accuracy_of = jax.jit(lambda params, stack: envs.env_accuracy(mlp, params, stack))
  for name, make_task in BASELINES.items():
    result = fit_lib.fit(make_task(), {"key": jax.random.PRNGKey(2)[None]}, 60,
                         data={"envs": envs.take_envs(train, [0, 1])}, mesh=one,
                         progress=False, name=name)
    loss = result.curves["loss"][0]
    assert loss[-5:].mean() < 0.8 * loss[:5].mean(), name
    params = jax.tree.map(lambda a: a[0], result.state.params)
    accuracy = np.asarray(accuracy_of(params, val))
    assert accuracy[:2].mean() > 0.75, (name, accuracy)  # the colour is learnt
    val_acc.append(accuracy[:2])
    test_acc.append(float(accuracy[2]))  # the test environment's held-out rows
    if name == "IRM":  # Adam restarted at step 20: 40 updates since
      assert int(result.state.opt_state[0].count[0]) == 40
      np.testing.assert_allclose(result.curves["penalty_weight"][0][[19, 20]], [1.0, 10.0])
    if name == "GroupDRO":  # the carried weights follow the update on the logged risks
      q = np.ones(2) / 2
      for risks in result.curves["env_risks"][0]:
        q = q * np.exp(0.1 * risks)
        q /= q.sum()
      np.testing.assert_allclose(result.state.model_state[0], q, rtol=1e-4)
  pick = selection.training_domain_validation(np.stack(val_acc), np.asarray(test_acc))
  assert pick.test_accuracy == test_acc[pick.index[0]]
