"""The training road: fit's layout, chunking, guards and resume; the tasks' batches."""
import os
import signal
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxrep.core import fit as fit_lib
from jaxrep.core import parallel, tasks, train
from jaxrep.core.config import ConfigError
from jaxrep.core.loop import NonFiniteLossError


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


MODEL = MLP()
X = jax.random.normal(jax.random.PRNGKey(0), (96, 5))
Y = (X[:, 0] > 0).astype(jnp.int32) + (X[:, 1] > 0)
EXAMPLES = {"examples": {"x": X, "y": Y}}
KEYS = jax.random.split(jax.random.PRNGKey(1), 3)


def task(lr=0.1, batch_size=16, replace=False):
  return tasks.classifier_task(MODEL.init, MODEL.apply, optax.sgd(lr), batch_size=batch_size,
                               replace=replace)


def one_device():
  return parallel.make_mesh(num_data=1, num_seed=1)


def leaves(tree):
  return [np.asarray(a) for a in jax.tree.leaves(tree)]


def max_diff(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(leaves(a), leaves(b)))


def test_matches_a_hand_written_scan_per_seed():
  """fit = for each seed: init, then steps on minibatches drawn without replacement."""
  result = fit_lib.fit(task(), {"key": KEYS}, 40, data=EXAMPLES, progress=False)
  for r, key in enumerate(KEYS):
    key_init, key_batches = jax.random.split(key)
    state = train.init_train_state(MODEL.init(key_init, X[:1]), optax.sgd(0.1), key_init)
    step = train.make_train_step(tasks.cross_entropy_loss_fn(MODEL.apply), optax.sgd(0.1))
    for i in range(40):
      idx = jax.random.choice(jax.random.fold_in(key_batches, i), 96, (16,), replace=False)
      state, _ = step(state, {"x": X[idx], "y": Y[idx]})
    assert max_diff(jax.tree.map(lambda a: a[r], result.state.params), state.params) < 1e-5


def test_eight_devices_shard_the_runs_and_match_one_device():
  eight = fit_lib.fit(task(), {"key": KEYS}, 30, data=EXAMPLES, progress=False)
  one = fit_lib.fit(task(), {"key": KEYS}, 30, data=EXAMPLES, mesh=one_device(),
                    progress=False)
  assert eight.layout["devices"] == 8 and eight.layout["state_devices"] == 8
  assert eight.layout["padded_runs"] == 5 and one.layout["state_devices"] == 1
  assert jax.tree.leaves(eight.state.params)[0].shape[0] == 3
  assert max_diff(eight.state.params, one.state.params) < 1e-5
  np.testing.assert_allclose(eight.curves["loss"], one.curves["loss"], rtol=1e-5)


def test_data_axis_splits_the_batch_and_matches_one_device():
  mesh = fit_lib.parse_mesh("seeds=2,data=4")
  split = fit_lib.fit(task(), {"key": KEYS[:2]}, 30, data=EXAMPLES, mesh=mesh, progress=False)
  one = fit_lib.fit(task(), {"key": KEYS[:2]}, 30, data=EXAMPLES, mesh=one_device(),
                    progress=False)
  assert split.layout["mesh"] == {"seed": 2, "data": 4}
  assert max_diff(split.state.params, one.state.params) < 1e-5


def test_chunks_that_do_not_divide_the_steps_give_the_same_training():
  whole = fit_lib.fit(task(), {"key": KEYS}, 37, data=EXAMPLES, chunk_steps=37, progress=False)
  chunked = fit_lib.fit(task(), {"key": KEYS}, 37, data=EXAMPLES, chunk_steps=10,
                        progress=False)
  assert max_diff(whole.state.params, chunked.state.params) < 1e-6
  assert int(np.asarray(chunked.state.step)[0]) == 37
  assert np.all(np.isfinite(chunked.curves["loss"]))


def test_run_axes_and_per_run_learning_rates():
  lrs = jnp.asarray([0.0, 0.1])
  runs = {"key": jnp.stack([KEYS[:2]] * 2, axis=1), "lr": jnp.stack([lrs] * 2)}  # (2, 2)
  grid_task = tasks.classifier_task(MODEL.init, MODEL.apply,
                                    lambda inputs: optax.sgd(inputs["lr"]), batch_size=16)
  result = fit_lib.fit(grid_task, runs, 10, data=EXAMPLES, run_axes=2, progress=False)
  assert result.curves["loss"].shape == (2, 2, 10)
  kernel = np.asarray(result.state.params["params"]["Dense_0"]["kernel"])
  initial = jax.vmap(lambda k: MODEL.init(jax.random.split(k)[0], X[:1]))(runs["key"][:, 0])
  np.testing.assert_array_equal(kernel[:, 0], initial["params"]["Dense_0"]["kernel"])
  assert np.all(np.abs(kernel[:, 1] - kernel[:, 0]) > 0)  # lr 0.1 moved, lr 0 did not


def test_minibatches_with_replacement_are_uniform_and_without_are_distinct():
  key = jax.random.PRNGKey(3)
  draws = jax.vmap(lambda i: tasks.minibatch_indices(key, i, 10, 8, replace=True))(
      jnp.arange(2000))
  assert stats.chisquare(np.bincount(np.asarray(draws).ravel(), minlength=10)).pvalue > 1e-3
  subset = jax.vmap(lambda i: tasks.minibatch_indices(key, i, 10, 8, replace=False))(
      jnp.arange(200))
  assert all(len(set(row)) == 8 for row in np.asarray(subset).tolist())
  counts = np.bincount(np.asarray(subset).ravel(), minlength=10)
  assert stats.chisquare(counts).pvalue > 1e-3


def test_cross_entropy_matches_numpy_and_passes_the_rng():
  logits = jax.random.normal(jax.random.PRNGKey(4), (6, 3))
  y = jnp.asarray([0, 1, 2, 2, 1, 0])
  loss, metrics = tasks.cross_entropy_loss_fn(lambda p, x: x)(None, {"x": logits, "y": y}, None)
  log_p = np.asarray(jax.nn.log_softmax(logits))
  assert abs(float(loss) + log_p[np.arange(6), np.asarray(y)].mean()) < 1e-6
  assert float(metrics["accuracy"]) == np.mean(np.argmax(logits, 1) == np.asarray(y))
  seen = {}

  def apply(params, x, rngs):
    seen.update(rngs)
    return x

  tasks.cross_entropy_loss_fn(apply, rng_collection="dropout")(None, {"x": logits, "y": y}, 7)
  assert seen == {"dropout": 7}


def nan_after(step_index):
  def loss_fn(params, batch, rng):
    ce, metrics = tasks.cross_entropy_loss_fn(MODEL.apply)(params, batch, rng)
    reg = jnp.where(batch["step"] >= step_index, jnp.nan, 0.0)
    return ce + reg, {**metrics, "reg": reg}
  return loss_fn


def test_non_finite_loss_names_step_run_and_term():
  def step(state, inputs):
    loss_fn = nan_after(inputs["bad_step"])
    batch = {"x": X, "y": Y, "step": state.step}
    return train.make_train_step(loss_fn, optax.sgd(0.1), jit=False)(state, batch)

  init = lambda inputs: train.init_train_state(MODEL.init(inputs["key"], X[:1]),
                                               optax.sgd(0.1), inputs["key"])
  runs = {"key": KEYS, "bad_step": jnp.asarray([100, 6, 100])}
  with pytest.raises(NonFiniteLossError, match=r"step 7 \(run 1 of 3\): .*reg=nan"):
    fit_lib.fit(tasks.Task(init, step), runs, 20, chunk_steps=5, progress=False)
  result = fit_lib.fit(tasks.Task(init, step), runs, 20, chunk_steps=5, progress=False,
                       allow_nonfinite=True)
  assert result.diverged.tolist() == [False, True, False]


def test_bad_layouts_fail_in_one_line_before_compiling():
  with pytest.raises(ConfigError, match="leading run axes"):
    fit_lib.fit(task(), {"key": KEYS, "other": jnp.zeros(2)}, 5, data=EXAMPLES)
  with pytest.raises(ConfigError, match="both runs and data"):
    fit_lib.fit(task(), {"key": KEYS, "examples": jnp.zeros(3)}, 5, data=EXAMPLES)
  with pytest.raises(ConfigError, match="--mesh takes"):
    fit_lib.parse_mesh("seeds=four")
  with pytest.raises(ConfigError, match="needs 16 devices"):
    fit_lib.parse_mesh("seeds=8,data=2")


RESUMABLE = textwrap.dedent("""
    import os, sys, time
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np, optax
    from jaxrep.core import fit as fit_lib, tasks, train
    from jaxrep.core.logging import MetricLogger

    X = jax.random.normal(jax.random.PRNGKey(0), (64, 4))
    Y = (X[:, 0] > 0).astype(jnp.int32)

    def init(inputs):
      params = {"w": jax.random.normal(inputs["key"], (4, 2))}
      return train.init_train_state(params, optax.adam(0.01), inputs["key"])

    def step(state, inputs):
      if os.environ.get("SLOW"):
        jax.debug.callback(lambda: time.sleep(0.01))
      loss = tasks.cross_entropy_loss_fn(lambda p, x: x @ p["w"])
      batch = tasks.take_rows({"x": X, "y": Y}, tasks.minibatch_indices(
          inputs["key"], state.step, 64, 8, replace=True))
      return train.make_train_step(loss, optax.adam(0.01), jit=False)(state, batch)

    out = sys.argv[1]
    logger = MetricLogger(out, tensorboard=False)
    result = fit_lib.fit(tasks.Task(init, step), {"key": jax.random.split(jax.random.PRNGKey(5), 3)},
                         300, chunk_steps=10, checkpoint_dir=os.path.join(out, "ckpt"),
                         save_every_s=0, logger=logger, log_every=10, progress=False)
    np.save(os.path.join(out, "w.npy"), np.asarray(result.state.params["w"]))
    np.save(os.path.join(out, "loss.npy"), result.curves["loss"])
""")


def test_killed_fit_resumes_bitwise(tmp_path):
  script = tmp_path / "train.py"
  script.write_text(RESUMABLE)
  run = lambda out, **env: subprocess.Popen(
      [sys.executable, str(script), str(out)], env={**os.environ, **env},
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  assert run(whole).wait(timeout=120) == 0
  proc = run(killed, SLOW="1")
  ckpt = killed / "ckpt"
  for _ in range(600):  # kill once a few chunks are saved
    saved = [p for p in ckpt.iterdir() if p.name.isdigit()] if ckpt.exists() else []
    if len(saved) >= 2:
      break
    proc.poll()
    assert proc.returncode is None, proc.stdout.read()
    import time
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed = run(killed)
  output = resumed.communicate(timeout=120)[0]
  assert resumed.returncode == 0, output
  assert "resumed from checkpoint step" in output
  np.testing.assert_array_equal(np.load(whole / "w.npy"), np.load(killed / "w.npy"))
  np.testing.assert_array_equal(np.load(whole / "loss.npy"), np.load(killed / "loss.npy"))
  assert (whole / "metrics.jsonl").read_text() == (killed / "metrics.jsonl").read_text()
