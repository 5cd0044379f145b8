"""jaxrep.nn.Conv equals flax.linen.Conv / lax.conv_general_dilated (outputs and
gradients), in fp32 to 1e-4 relative and in float64 to 1e-10."""
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxrep.core import parallel, tasks, train
from jaxrep.nn import Conv, SmallCNN, kernel_gradient

conv_module = importlib.import_module("jaxrep.nn.conv")

CASES = [  # features, kernel, strides, padding, input shape
    (6, (3, 3), 1, "SAME", (4, 9, 9, 12)),
    (6, (3, 3), 2, "SAME", (4, 9, 10, 12)),
    (5, (3, 2), (2, 1), "VALID", (3, 10, 11, 9)),
    (4, (3, 3), 1, "SAME", (5, 8, 8, 3)),           # few channels: GEMM forward
    (7, (5,), 2, 1, (3, 40, 10)),                   # 1-D, int padding
    (4, (3, 3), 1, "SAME", (2, 3, 7, 7, 10)),       # two batch dims, 6 chunks
    (4, (3,), 1, ((2, 0),), (20, 10)),              # unbatched, explicit (low, high)
]


def _rel(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _compare(case, dtype, tol):
  features, kernel, strides, padding, shape = case
  x = jax.random.normal(jax.random.PRNGKey(0), shape, dtype)
  ours = Conv(features, kernel, strides, padding, param_dtype=dtype)
  ref = nn.Conv(features, kernel, strides, padding, param_dtype=dtype)
  params = ref.init(jax.random.PRNGKey(1), x)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda a, b: a.shape == b.shape and bool((a == b).all()),
      ours.init(jax.random.PRNGKey(1), x), params))

  @jax.jit
  def outputs_and_grads(params, x):
    probe = jax.random.normal(jax.random.PRNGKey(2), ref.apply(params, x).shape, dtype)
    results = []
    for module in (ours, ref):
      loss = lambda p, x, m=module: jnp.sum(jnp.tanh(m.apply(p, x)) * probe)
      results.append((module.apply(params, x), jax.grad(loss, (0, 1))(params, x)))
    return results

  (y, grads), (y_ref, grads_ref) = outputs_and_grads(params, x)
  assert _rel(y, y_ref) <= tol
  for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_ref)):
    assert _rel(a, b) <= tol


@pytest.mark.parametrize("case", CASES[2:], ids=[str(i) for i in range(2, len(CASES))])
def test_matches_flax_conv_fp32(case):
  _compare(case, jnp.float32, 1e-4)


def test_matches_flax_conv_float64_exactly():
  with jax.enable_x64(True):
    for case in CASES[:2]:
      _compare(case, jnp.float64, 1e-10)


def test_kernel_gradient_matches_numpy_sum(monkeypatch):
  monkeypatch.setattr(conv_module, "CHUNK_BYTES", 2_000)  # many chunks
  data = np.random.default_rng(0)
  x = data.normal(size=(6, 7, 8, 3))
  dy = data.normal(size=(6, 4, 4, 5))
  strides, pads = (2, 2), ((1, 1), (1, 0))
  padded = np.pad(x, ((0, 0), (1, 1), (1, 0), (0, 0)))
  expected = np.zeros((3, 2, 3, 5))
  for i in range(3):
    for j in range(2):
      window = padded[:, i:i + 2 * 4:2, j:j + 2 * 4:2, :]
      expected[i, j] = np.einsum("nhwc,nhwo->co", window, dy)
  with jax.enable_x64(True):
    got = kernel_gradient(jnp.asarray(x), jnp.asarray(dy), (3, 2, 3, 5), strides, pads)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-10)


def test_chunking_odd_batch(monkeypatch):
  monkeypatch.setattr(conv_module, "CHUNK_BYTES", 10_000)  # 7 chunks of one example
  _compare((4, (3, 3), 1, "SAME", (7, 6, 6, 2)), jnp.float32, 1e-4)


def test_dilation_and_groups_fall_back_to_xla():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 4))
  for kwargs in ({"kernel_dilation": 2}, {"feature_group_count": 2}):
    ours, ref = Conv(6, (3, 3), **kwargs), nn.Conv(6, (3, 3), **kwargs)
    params = ref.init(jax.random.PRNGKey(1), x)
    np.testing.assert_array_equal(ours.apply(params, x), ref.apply(params, x))
  with pytest.raises(ValueError, match="CIRCULAR"):
    Conv(6, (3, 3), padding="CIRCULAR").init(jax.random.PRNGKey(1), x)


def _cnn_loss(model, params, x, y):
  logits = model.apply(params, x)
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def test_small_cnn_same_as_flax_conv_and_data_parallel():
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 8, 8, 3))
  y = jnp.arange(16) % 10
  ours, ref = SmallCNN((4, 4, 8, 8)), SmallCNN((4, 4, 8, 8), conv=nn.Conv)
  params = ref.init(jax.random.PRNGKey(1), x)
  grad = jax.jit(jax.grad(lambda p, x: _cnn_loss(ours, p, x, y)))
  expected = jax.jit(jax.grad(lambda p: _cnn_loss(ref, p, x, y)))(params)
  for a, b in zip(jax.tree_util.tree_leaves(grad(params, x)), jax.tree_util.tree_leaves(expected)):
    assert _rel(a, b) <= 1e-4
  mesh = parallel.make_mesh()
  sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  for a, b in zip(jax.tree_util.tree_leaves(grad(params, sharded)),
                  jax.tree_util.tree_leaves(expected)):
    assert _rel(a, b) <= 1e-4


def test_vmaps_over_seeds():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  model = Conv(5, (3, 3))
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  params = jax.vmap(lambda k: model.init(k, x))(keys)
  grads = jax.jit(jax.vmap(jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))))(params)
  reference = jax.jit(jax.grad(lambda p: jnp.sum(nn.Conv(5, (3, 3)).apply(p, x) ** 2)))
  for s in range(3):
    expected = reference(jax.tree_util.tree_map(lambda l, s=s: l[s], params))
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
      assert _rel(a[s], b) <= 1e-4


@pytest.mark.parametrize("kernel, stride, shape", [
    ((5,), 1, (3, 17, 2)), ((3,), 2, (2, 16, 4)), ((3, 3), 1, (2, 9, 8, 3)),
    ((3, 3), 2, (2, 9, 10, 5))])
def test_patch_conv_matches_lax_convolution(kernel, stride, shape):
  from jaxrep.nn import PatchConv1D, PatchConv2D
  x = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
  layer = (PatchConv1D(6, kernel[0], stride) if len(kernel) == 1
           else PatchConv2D(6, stride, kernel[0]))
  params = layer.init(jax.random.PRNGKey(1), x)
  dense = params["params"]["Dense_0"]
  w = dense["kernel"].reshape(*kernel, shape[-1], 6)  # offsets row-major, channels fastest
  pads = [(k // 2, k // 2) for k in kernel]
  dims = ("NWC", "WIO", "NWC") if len(kernel) == 1 else ("NHWC", "HWIO", "NHWC")
  expected = jax.lax.conv_general_dilated(x, w, (stride,) * len(kernel), pads,
                                          dimension_numbers=dims) + dense["bias"]
  np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_small_cnn_trains_the_same_in_collective_modes(mode):
  """The custom VJP gives a replicated kernel its all-device gradient under shard_map."""
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (16, 8, 8, 3)))
  y = np.arange(16) % 10
  model = SmallCNN((4, 4, 8, 8))
  params = model.init(jax.random.PRNGKey(1), x[:1])
  final = {}
  for m in ("single", mode):
    pstep = parallel.make_parallel_train_step(tasks.cross_entropy_loss_fn(model.apply),
                                              optax.sgd(0.1), m)
    state = pstep.place_state(train.init_train_state(params, optax.sgd(0.1),
                                                     jax.random.PRNGKey(0)))
    for _ in range(2):
      state, _ = pstep(state, pstep.place_batch({"x": x, "y": y}))
    final[m] = pstep.fetch_state(state).params
  for a, b in zip(jax.tree_util.tree_leaves(final[mode]), jax.tree_util.tree_leaves(final["single"])):
    np.testing.assert_allclose(a, b, atol=1e-5)
