"""The SSL losses: NumPy references (loops, float64), 1 device = 8 devices, BYOL's EMA.

conftest.py gives 8 simulated CPU devices; ``_on_8_devices`` runs a loss per shard
under ``shard_map`` (the loss gets ``axis_name="data"``) and averages it over the
devices, as ``jaxrep.core.parallel`` does, so its value and its gradient must equal
the 1-device value of the global batch.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrep.core import parallel, train
from jaxrep.ssl import (byol_loss, byol_loss_fn, ema_update, infonce_loss, supcon_loss,
                        target_decay_schedule, vicreg_loss, vicreg_loss_fn,
                        with_ema_target)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _supcon_reference(z, labels, temperature):
  """Eq. 2 of Khosla et al. with explicit loops; anchors without positives add 0."""
  n, num_views, _ = z.shape
  a = [_unit(z[i, v]) for v in range(num_views) for i in range(n)]
  y = [labels[i] for v in range(num_views) for i in range(n)]
  total = 0.0
  for i in range(len(a)):
    denominator = sum(np.exp(a[i] @ a[k] / temperature) for k in range(len(a)) if k != i)
    positives = [p for p in range(len(a)) if p != i and y[p] == y[i]]
    if positives:
      total -= sum(np.log(np.exp(a[i] @ a[p] / temperature) / denominator)
                   for p in positives) / len(positives)
  return total / len(a)


def _byol_reference(p1, p2, t1, t2):
  def loss(p, t):
    return 2 - 2 * (p @ t) / (np.linalg.norm(p) * np.linalg.norm(t))
  return np.mean([loss(p1[i], t2[i]) + loss(p2[i], t1[i]) for i in range(len(p1))])


def _vicreg_reference(z1, z2, lam=25.0, mu=25.0, nu=1.0):
  n, d = z1.shape
  invariance = sum((z1[i, k] - z2[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)

  def cov(z):
    mean = [sum(z[i, k] for i in range(n)) / n for k in range(d)]
    return np.array([[sum((z[i, k] - mean[k]) * (z[i, m] - mean[m]) for i in range(n))
                       / (n - 1) for m in range(d)] for k in range(d)])

  def variance(c):
    return sum(max(0.0, 1.0 - np.sqrt(c[k, k] + 1e-4)) for k in range(d)) / d

  def covariance(c):
    return sum(c[k, m] ** 2 for k in range(d) for m in range(d) if k != m) / d

  c1, c2 = cov(z1), cov(z2)
  return (lam * invariance + mu * (variance(c1) + variance(c2)) / 2
          + nu * (covariance(c1) + covariance(c2)))


def test_supcon_matches_numpy_reference():
  data = np.random.default_rng(0)
  z = data.normal(size=(10, 3, 5))
  labels = np.array([0, 1, 2, 0, 1, 1, 3, 0, 2, 4])
  loss = jax.jit(supcon_loss, static_argnums=2)
  got = loss(jnp.asarray(z, jnp.float32), jnp.asarray(labels), 0.3)
  np.testing.assert_allclose(float(got), _supcon_reference(z, labels, 0.3), rtol=1e-5)
  single_view = z[:, :1]  # label 3 and 4 are seen once: those anchors add 0
  got = loss(jnp.asarray(single_view, jnp.float32), jnp.asarray(labels), 0.3)
  np.testing.assert_allclose(float(got), _supcon_reference(single_view, labels, 0.3),
                             rtol=1e-5)


def test_supcon_with_distinct_labels_is_infonce():
  z = jax.random.normal(jax.random.key(1), (12, 2, 6))
  got, expected = jax.jit(lambda z: (supcon_loss(z, jnp.arange(12), 0.2),
                                     infonce_loss(z[:, 0], z[:, 1], 0.2)))(z)
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)


def test_byol_matches_numpy_reference_and_stops_the_target_gradient():
  data = np.random.default_rng(2)
  p1, p2, t1, t2 = data.normal(size=(4, 9, 5))
  args = [jnp.asarray(a, jnp.float32) for a in (p1, p2, t1, t2)]
  value, grads = jax.jit(jax.value_and_grad(byol_loss, argnums=(0, 2)))(*args)
  np.testing.assert_allclose(float(value), _byol_reference(p1, p2, t1, t2), rtol=1e-5)
  assert float(jnp.abs(grads[0]).max()) > 1e-3
  assert float(jnp.abs(grads[1]).max()) == 0.0


def test_vicreg_matches_numpy_reference():
  data = np.random.default_rng(3)
  z1 = data.normal(size=(12, 5)) * np.array([0.3, 1.0, 2.0, 0.5, 1.5])
  z2 = z1 + 0.4 * data.normal(size=z1.shape)
  z1[:, 1] += 0.8 * z1[:, 0]  # correlated columns give a covariance term
  args = jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32)
  weights = {"invariance_weight": 1.0, "variance_weight": 2.0, "covariance_weight": 3.0}
  (loss, terms), (weighted, _) = jax.jit(
      lambda a, b: (vicreg_loss(a, b), vicreg_loss(a, b, **weights)))(*args)
  np.testing.assert_allclose(float(loss), _vicreg_reference(z1, z2), rtol=1e-5)
  assert all(float(v) > 0 for v in terms.values())
  np.testing.assert_allclose(float(weighted), _vicreg_reference(z1, z2, 1.0, 2.0, 3.0),
                             rtol=1e-5)


def _on_8_devices(loss, *arrays):
  """mean over 8 devices of ``loss(*shards, axis_name="data")``, as parallel's
  shard_map mode takes it."""
  mesh = parallel.make_mesh()
  assert mesh.shape["data"] == 8

  def per_device(*shards):
    return lax.pmean(loss(*shards, axis_name="data"), "data")

  return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"),) * len(arrays),
                               out_specs=P()))(*arrays)


def _supcon(z, labels, axis_name=None):
  return supcon_loss(z, labels, 0.2, axis_name)


def _vicreg(z1, z2, axis_name=None):
  return vicreg_loss(z1, z2, axis_name=axis_name)[0]


def _byol(p1, p2, t1, t2, axis_name=None):
  return byol_loss(p1, p2, t1, t2, axis_name)


def _problem(name):
  keys = jax.random.split(jax.random.key(4), 4)
  if name == "supcon":
    return _supcon, [jax.random.normal(keys[0], (32, 2, 6)),
                     jax.random.randint(keys[1], (32,), 0, 5)]
  if name == "byol":
    return _byol, [jax.random.normal(k, (32, 6)) for k in keys]
  z1 = jax.random.normal(keys[0], (32, 6)) * jnp.linspace(0.3, 2.0, 6)
  return _vicreg, [z1, z1 + jax.random.normal(keys[1], z1.shape)]


@pytest.mark.parametrize("name", ["supcon", "byol", "vicreg"])  # InfoNCE: test_parallel.py
def test_loss_on_8_devices_equals_the_global_batch_value_and_gradient(name):
  loss, arrays = _problem(name)
  expected, expected_grad = jax.jit(jax.value_and_grad(loss))(*arrays)
  got, got_grad = jax.jit(jax.value_and_grad(
      lambda z, *rest: _on_8_devices(loss, z, *rest)))(*arrays)
  assert abs(float(got) - float(expected)) <= 1e-5 * max(1.0, abs(float(expected)))
  np.testing.assert_allclose(got_grad, expected_grad, atol=1e-6, rtol=1e-4)
  if name in ("supcon", "vicreg"):  # guard the guard: per-shard statistics differ
    local = jax.jit(jax.vmap(loss))(*[a.reshape((8, -1) + a.shape[1:]) for a in arrays]).mean()
    assert abs(float(local) - expected) > 1e-2


def _project(params, x):
  return jnp.tanh(x @ params["w1"]) @ params["w2"]


def _predict(params, z):
  return z @ params["w"] + params["b"]


def _dense(data, *shape):
  return (data.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)


def _step(mode, loss_fn, optimizer, params, batch):
  pstep = parallel.make_parallel_train_step(loss_fn, optimizer, mode,
                                            None if mode == "single" else parallel.make_mesh())
  state = pstep.place_state(train.init_train_state(params, optimizer, jax.random.PRNGKey(0)))
  state, metrics = pstep(state, pstep.place_batch(batch))
  return pstep.fetch_state(state), jax.device_get(metrics)


def test_factories_train_the_same_step_on_1_and_8_devices():
  """BYOL (with its EMA target) + VICReg (psum-ed statistics) on the online network,
  through the core's step: shard_map on 8 devices takes the 1-device step (InfoNCE's
  is in test_parallel.py). One composed loss, so two compilations."""
  data = np.random.default_rng(5)
  x = data.normal(size=(32, 8)).astype(np.float32)
  batch = {"view1": x, "view2": x + 0.3 * data.normal(size=x.shape).astype(np.float32)}
  params = {"online": {"w1": _dense(data, 8, 16), "w2": _dense(data, 16, 6)},
            "target": {"w1": _dense(data, 8, 16), "w2": _dense(data, 16, 6)},
            "predictor": {"w": _dense(data, 6, 6), "b": np.zeros(6, np.float32)}}
  loss_fn = train.weighted_sum({
      "byol": (1.0, byol_loss_fn(_project, _predict)),
      "vicreg": (0.02, vicreg_loss_fn(lambda p, v: _project(p["online"], v)))})
  optimizer = with_ema_target(optax.sgd(0.5), 0.9)
  reference, ref_metrics = _step("single", loss_fn, optimizer, params, batch)
  state, metrics = _step("shard_map", loss_fn, optimizer, params, batch)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference.params)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  for name in ("byol", "vicreg", "vicreg/covariance"):
    np.testing.assert_allclose(metrics[name], ref_metrics[name], rtol=1e-5, err_msg=name)
  online = jax.tree.leaves(reference.params["online"])
  for new, old, online_new in zip(jax.tree.leaves(reference.params["target"]),
                                  jax.tree.leaves(params["target"]), online):
    np.testing.assert_allclose(new, 0.9 * old + 0.1 * online_new, atol=1e-6)
  assert max(float(jnp.abs(a - b).max()) for a, b in zip(
      online, jax.tree.leaves(params["online"]))) > 1e-3  # the step moved the params


def test_ema_update_is_the_formula():
  target = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
  online = {"w": jnp.array([0.0, 4.0]), "b": jnp.array(-1.0)}
  new = ema_update(target, online, 0.75)
  for k in target:
    np.testing.assert_allclose(new[k], 0.75 * target[k] + 0.25 * online[k], rtol=1e-6)
  same = ema_update(target, online, 1.0)
  assert all(np.array_equal(same[k], target[k]) for k in target)


def test_target_decay_schedule_runs_from_base_to_one():
  schedule = target_decay_schedule(0.99, total_steps=100)
  np.testing.assert_allclose(float(schedule(0)), 0.99, rtol=1e-7)
  np.testing.assert_allclose(float(schedule(100)), 1.0, rtol=1e-7)
  np.testing.assert_allclose(float(schedule(50)), 1 - 0.01 * 0.5, rtol=1e-6)
  values = np.array([float(schedule(k)) for k in range(0, 101, 10)])
  assert np.all(np.diff(values) > 0)
  assert float(schedule(250)) == float(schedule(100))  # clipped past K


def test_with_ema_target_follows_the_schedule():
  schedule = target_decay_schedule(0.5, total_steps=4)
  optimizer = with_ema_target(optax.sgd(1.0), schedule)
  params = {"online": jnp.ones(2), "target": jnp.zeros(2), "predictor": jnp.ones(1)}
  state = optimizer.init(params)
  target = np.zeros(2)
  for k in range(3):
    grads = {"online": jnp.full(2, 0.25), "target": jnp.full(2, 9.0), "predictor": jnp.ones(1)}
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    tau = float(schedule(k))
    target = tau * target + (1 - tau) * np.asarray(params["online"])
    np.testing.assert_allclose(params["target"], target, rtol=1e-6)
  np.testing.assert_allclose(params["online"], 1 - 3 * 0.25)
  np.testing.assert_allclose(params["predictor"], -2.0)
