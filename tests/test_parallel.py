"""Data/seed parallelism: every mode takes the same step as one device.

conftest.py gives 8 simulated CPU devices. SGD (not Adam) so a wrong gradient
scale — e.g. averaging gradients that shard_map already summed — shows.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.core import distributed, parallel, train
from jaxrep.core.config import ConfigError
from jaxrep.ssl import infonce_loss, infonce_loss_fn

TOL = 1e-5


class MLP(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features)(nn.relu(nn.Dense(32)(x)))


def classifier_loss(params, batch, rng, axis_name=None):
  del rng, axis_name
  x, y = batch
  logits = MLP(5).apply(params, x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss, {"accuracy": jnp.mean(logits.argmax(-1) == y)}


def _classifier_problem():
  data = np.random.default_rng(0)
  x = data.normal(size=(64, 12)).astype(np.float32)
  y = data.integers(0, 5, 64).astype(np.int32)
  return classifier_loss, MLP(5).init(jax.random.PRNGKey(0), x[:1]), (x, y)


def _contrastive_problem():
  data = np.random.default_rng(1)
  x = data.normal(size=(64, 12)).astype(np.float32)
  views = {"view1": x, "view2": x + 0.3 * data.normal(size=x.shape).astype(np.float32)}
  encoder = MLP(8)
  loss_fn = infonce_loss_fn(encoder.apply, temperature=0.2)
  return loss_fn, encoder.init(jax.random.PRNGKey(0), x[:1]), views


def _one_step(mode, loss_fn, params, batch, mesh=None):
  optimizer = optax.sgd(1.0)
  pstep = parallel.make_parallel_train_step(loss_fn, optimizer, mode, mesh)
  state = pstep.place_state(train.init_train_state(params, optimizer, jax.random.PRNGKey(3)))
  state, metrics = pstep(state, pstep.place_batch(batch))
  return pstep.fetch_state(state), jax.device_get(metrics)


def _max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("problem", [_classifier_problem, _contrastive_problem],
                         ids=["mlp_classifier", "infonce_global_negatives"])
def test_modes_agree_with_one_device(problem):
  loss_fn, params, batch = problem()
  mesh = parallel.make_mesh()
  assert mesh.shape == {"seed": 1, "data": 8}
  reference, ref_metrics = _one_step("single", loss_fn, params, batch)
  assert _max_diff(reference.params, params) > 1e-2  # the step moved the params
  for mode in ("jit", "shard_map", "pmap"):
    state, metrics = _one_step(mode, loss_fn, params, batch, mesh)
    assert _max_diff(state.params, reference.params) <= TOL, mode
    assert abs(float(metrics["loss"]) - float(ref_metrics["loss"])) <= TOL, mode
    assert int(state.step) == 1


def test_local_negatives_would_differ():
  """Guard the guard: InfoNCE with per-shard negatives is a different loss."""
  loss_fn, params, views = _contrastive_problem()
  z = [MLP(8).apply(params, views[k]) for k in ("view1", "view2")]
  global_loss = infonce_loss(z[0], z[1], 0.2)
  shards = [v.reshape(8, -1, v.shape[-1]) for v in z]
  local = float(jax.vmap(infonce_loss, (0, 0, None))(*shards, 0.2).mean())
  assert abs(float(global_loss) - local) > 0.1


def test_infonce_matches_numpy_reference():
  data = np.random.default_rng(2)
  z1, z2 = data.normal(size=(2, 6, 4))
  temperature = 0.3
  a = np.concatenate([z1, z2])
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  n2 = len(a)
  losses = []
  for i in range(n2):
    positive = (i + n2 // 2) % n2
    sims = np.array([a[i] @ a[j] / temperature for j in range(n2)])
    denominator = sum(np.exp(sims[j]) for j in range(n2) if j != i)
    losses.append(-np.log(np.exp(sims[positive]) / denominator))
  got = infonce_loss(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), temperature)
  np.testing.assert_allclose(float(got), np.mean(losses), rtol=1e-5)


def test_same_seed_is_bitwise_identical():
  loss_fn, params, batch = _classifier_problem()
  mesh = parallel.make_mesh()
  first, _ = _one_step("jit", loss_fn, params, batch, mesh)
  second, _ = _one_step("jit", loss_fn, params, batch, mesh)
  for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
    np.testing.assert_array_equal(a, b)


def test_seed_axis_vmapped_step_equals_per_seed_steps():
  loss_fn, _, batch = _classifier_problem()
  optimizer = optax.sgd(0.5)
  keys = jax.random.split(jax.random.PRNGKey(7), 4)
  x = batch[0]

  def init(key):
    return train.init_train_state(MLP(5).init(key, x[:1]), optimizer, key)

  mesh = parallel.make_mesh(num_data=4, num_seed=2)
  step = train.make_train_step(loss_fn, optimizer, jit=False)
  pstep = parallel.make_seed_parallel_step(step, mesh)
  states = pstep.place_state(jax.vmap(init)(keys))
  assert states.params["params"]["Dense_0"]["kernel"].sharding.spec[0] == "seed"
  placed = pstep.place_batch(batch)
  for _ in range(2):
    states, metrics = pstep(states, placed)
  assert metrics["loss"].shape == (4,)
  single = jax.jit(step)
  for s, key in enumerate(keys):
    state = init(key)
    for _ in range(2):
      state, _ = single(state, batch)
    one = jax.tree_util.tree_map(lambda leaf, s=s: leaf[s], states)
    assert _max_diff(one.params, state.params) <= TOL
  assert _max_diff(jax.tree_util.tree_map(lambda l: l[0], states.params),
                   jax.tree_util.tree_map(lambda l: l[1], states.params)) > 1e-2


def _one_line_config_error(fn, *needles):
  with pytest.raises(ConfigError) as error:
    fn()
  message = str(error.value)
  assert "\n" not in message
  for needle in needles:
    assert needle in message
  return message


def test_guards_fail_before_compiling_in_one_line():
  _one_line_config_error(lambda: parallel.make_mesh(num_data=16), "16", "8")
  _one_line_config_error(lambda: parallel.make_mesh(num_data=4, num_seed=4), "16")
  _one_line_config_error(lambda: parallel.validate_parallel(100, parallel.make_mesh()),
                         "100", "8", "96", "104")
  _one_line_config_error(lambda: parallel.validate_mode("ddp"), "ddp")
  loss_fn, params, (x, y) = _classifier_problem()
  compiled = []
  for mode in ("jit", "shard_map", "pmap"):
    pstep = parallel.make_parallel_train_step(loss_fn, optax.sgd(0.1), mode)
    _one_line_config_error(lambda: pstep.place_batch((x[:60], y[:60])), "60")
    compiled.append(pstep.step)
  step = train.make_train_step(loss_fn, optax.sgd(0.1), jit=False)
  seeds = parallel.make_seed_parallel_step(step, parallel.make_mesh(num_data=2, num_seed=4))
  states = jax.tree_util.tree_map(lambda l: jnp.stack([l] * 3), params)
  _one_line_config_error(lambda: seeds.place_state(states), "3", "seed")


def _l2(params, batch, rng, axis_name=None):
  del batch, rng, axis_name  # a function of the parameters: the same on every shard
  return sum(jnp.sum(w ** 2) for w in jax.tree_util.tree_leaves(params)), {}


def test_composed_infonce_keeps_global_negatives_in_every_mode():
  """InfoNCE + a regulariser through weighted_sum: the sum forwards the data axis,
  so on 8 devices the loss and the step equal the 1-device global-batch ones."""
  infonce, params, views = _contrastive_problem()
  composed = train.weighted_sum({"infonce": (1.0, infonce), "l2": (1e-3, _l2)})
  reference, ref_metrics = _one_step("single", composed, params, views)
  z = [MLP(8).apply(params, views[k]) for k in ("view1", "view2")]
  expected = float(infonce_loss(z[0], z[1], 0.2))
  assert abs(float(ref_metrics["infonce"]) - expected) < 1e-5
  for mode in ("jit", "shard_map", "pmap"):
    state, metrics = _one_step(mode, composed, params, views, parallel.make_mesh())
    assert abs(float(metrics["infonce"]) - expected) < 1e-5, mode
    assert _max_diff(state.params, reference.params) <= TOL, mode


def test_a_wrapper_that_drops_the_axis_is_refused_in_per_shard_layouts():
  """mutation caught: a lambda around InfoNCE (or a combinator) that drops
  axis_name would train with per-device negatives; it must raise instead."""
  infonce, params, views = _contrastive_problem()
  wrapped = lambda p, b, r: infonce(p, b, r)  # noqa: E731
  for mode in ("shard_map", "pmap"):
    _one_line_config_error(
        lambda: parallel.make_parallel_train_step(wrapped, optax.sgd(0.1), mode), "axis_name")
    with pytest.raises(ConfigError, match="axis_name"):
      train.weighted_sum({"w": (1.0, wrapped)})(params, views, jax.random.PRNGKey(0),
                                               axis_name="data")
  state, _ = _one_step("jit", wrapped, params, views, parallel.make_mesh())  # global batch: fine


def test_collective_modes_work_on_a_smaller_mesh():
  loss_fn, params, batch = _classifier_problem()
  reference, _ = _one_step("single", loss_fn, params, batch)
  mesh = parallel.make_mesh(num_data=4)
  for mode in ("shard_map", "pmap"):
    state, _ = _one_step(mode, loss_fn, params, batch, mesh)
    assert _max_diff(state.params, reference.params) <= TOL, mode


def test_distributed_env_parsing():
  assert distributed.process_info_from_env({}) is None
  info = distributed.process_info_from_env(
      {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
       "JAX_PROCESS_ID": "3"})
  assert (info.process_id, info.num_processes) == (3, 4)
  _one_line_config_error(lambda: distributed.process_info_from_env(
      {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}),
      "JAX_PROCESS_ID")
  _one_line_config_error(lambda: distributed.process_info_from_env(
      {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}), "JAX_PROCESS_ID")
  single = distributed.initialize_from_env({})
  assert (single.process_id, single.num_processes) == (0, 1)
  assert distributed.is_main_process()
  assert distributed.process_batch_slice(8) == slice(0, 8)
