"""Two processes on loopback (gloo CPU collectives) train like one process.

The test spawns this file twice as workers (``JAX_COORDINATOR_ADDRESS`` on
127.0.0.1, 2 CPU devices each, so a 4-device global mesh); each worker loads only
its half of every global batch, trains a few SGD steps in each parallel mode and
process 0 writes the final params. They must match one process trained on the
same global batches.
"""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
GLOBAL_BATCH = 16
NUM_STEPS = 3
MODES = ("jit", "shard_map", "pmap")


def _problem():
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.tanh(nn.Dense(16)(x)))

  model = MLP()

  def loss_fn(params, batch, rng, axis_name=None):
    del rng
    x, y = batch
    logits = model.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), {}

  data = np.random.default_rng(0)
  xs = data.normal(size=(NUM_STEPS, GLOBAL_BATCH, 6)).astype(np.float32)
  ys = data.integers(0, 3, size=(NUM_STEPS, GLOBAL_BATCH)).astype(np.int32)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6)))
  return loss_fn, params, optax.sgd(0.3), xs, ys


def _train(mode, mesh, local_rows=slice(None)):
  import jax
  from jaxrep.core import parallel, train

  loss_fn, params, optimizer, xs, ys = _problem()
  pstep = parallel.make_parallel_train_step(loss_fn, optimizer, mode, mesh)
  state = pstep.place_state(train.init_train_state(params, optimizer, jax.random.PRNGKey(1)))
  for i in range(NUM_STEPS):
    state, _ = pstep(state, pstep.place_batch((xs[i, local_rows], ys[i, local_rows])))
  return jax.tree_util.tree_leaves(pstep.fetch_state(state).params)


def worker(out_path):
  from jaxrep.core import distributed, parallel

  info = distributed.initialize_from_env()
  import jax
  assert info.num_processes == NUM_PROCESSES and jax.device_count() == 4, jax.devices()
  rows = distributed.process_batch_slice(GLOBAL_BATCH)
  results = {}
  for mode in MODES:
    leaves = _train(mode, parallel.make_mesh(), rows)
    results.update({f"{mode}/{i}": leaf for i, leaf in enumerate(leaves)})
  if distributed.is_main_process():
    np.savez(out_path, **results)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _gloo_available():
  from jax._src.lib import _jax
  return hasattr(_jax, "make_gloo_tcp_collectives")


def test_two_processes_match_one(tmp_path):
  if not _gloo_available():
    pytest.skip("this jaxlib has no gloo CPU collectives")
  out = tmp_path / "params.npz"
  port = _free_port()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  procs = []
  for pid in range(NUM_PROCESSES):
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
           "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
           "JAX_NUM_PROCESSES": str(NUM_PROCESSES), "JAX_PROCESS_ID": str(pid),
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), str(out)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  logs = []
  for proc in procs:
    try:
      logs.append(proc.communicate(timeout=120)[0].decode()[-3000:])
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      pytest.fail("multi-host workers timed out")
  assert all(p.returncode == 0 for p in procs), "\n".join(logs)

  reference = _train("single", None)
  got = np.load(out)
  moved = [np.abs(r - p).max() for r, p in zip(reference, jax_leaves(_problem()[1]))]
  assert min(moved) > 1e-3  # training changed every leaf
  for mode in MODES:
    for i, ref in enumerate(reference):
      np.testing.assert_allclose(got[f"{mode}/{i}"], ref, atol=1e-5, rtol=1e-5,
                                 err_msg=f"mode {mode}, leaf {i}")


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


if __name__ == "__main__":
  worker(sys.argv[1])
