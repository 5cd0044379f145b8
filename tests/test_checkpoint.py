"""Checkpointing, exact resume, preemption and the non-finite guard (jaxrep.core.loop).

The kill tests run this file as a program (``python tests/test_checkpoint.py
train|experiment WORKDIR``) so a real process can be SIGKILLed/SIGTERMed; it
kills itself when its data iterator is asked for a chosen batch, which makes
the kill points reproducible.
"""
import functools
import json
import os
import signal
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxrep import data
from jaxrep.core import checkpoint, experiment, loop, train
from jaxrep.core.config import ConfigError
from jaxrep.core.logging import MetricLogger

STEPS, SAVE_EVERY, BATCH, NUM_EXAMPLES = 30, 5, 16, 100
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MLP(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(nn.relu(nn.Dense(self.width)(x)))


def dataset(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(NUM_EXAMPLES, 6)).astype(np.float32)
  y = (np.argmax(x[:, :3] + 0.3 * rng.normal(size=(NUM_EXAMPLES, 3)), axis=1)).astype(np.int32)
  return data.ArrayDataset(x, y, 3)


@functools.lru_cache(maxsize=None)
def _step_and_init(width):
  model = MLP(width)
  optimizer = optax.adam(1e-2)

  def loss_fn(params, batch, rng):
    noisy = batch["x"] + 0.1 * jax.random.normal(rng, batch["x"].shape)
    logits = model.apply(params, noisy)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

  @jax.jit  # one compile instead of one per initializer op
  def init(key):
    key_init, key_train = jax.random.split(key)
    params = model.init(key_init, jnp.zeros((1, 6)))
    return train.init_train_state(params, optimizer, key_train)

  return train.make_train_step(loss_fn, optimizer), init


def make_training(width=16, init_key=None):
  """A step that uses its PRNG key (input noise) and Adam, and a fresh state."""
  step, init = _step_and_init(width)
  return step, init(jax.random.PRNGKey(0) if init_key is None else init_key)


class DyingBatches:
  """A ``BatchIterator`` that sends ``sig`` to its own process when asked for batch ``die_at``."""

  def __init__(self, inner, die_at=None, sig=signal.SIGKILL):
    self.inner, self.die_at, self.sig = inner, die_at, sig

  def get_state(self):
    return self.inner.get_state()

  def set_state(self, state):
    self.inner.set_state(state)

  def __iter__(self):
    return self

  def __next__(self):
    state = self.inner.get_state()
    index = state["epoch"] * self.inner.steps_per_epoch + state["position"] // BATCH
    if index == self.die_at:
      os.kill(os.getpid(), self.sig)
    return next(self.inner)


def train_program(workdir, *, checkpointing=True, die_at=None, sig=signal.SIGKILL):
  """The training the kill test interrupts; writes params.npz and metrics.jsonl."""
  step, state = make_training()
  batches = DyingBatches(data.BatchIterator(dataset(), BATCH, seed=7), die_at, sig)
  logger = MetricLogger(workdir, tensorboard=False)
  state, _ = loop.train_loop(
      step, state, batches, STEPS, logger=logger, log_every=1, progress=False,
      checkpoint_dir=os.path.join(workdir, "ckpt") if checkpointing else None,
      save_every=SAVE_EVERY, keep=2)
  flat, _ = checkpoint.flatten_state(state)
  np.savez(os.path.join(workdir, "params.npz"), **jax.device_get(flat))
  return state


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A persistent XLA cache shared by the test's subprocesses (halves their CPU time)."""
  return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla_cache")),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run_program(*args, env_extra=None):
  env = {**os.environ, "PYTHONPATH": ROOT, **(env_extra or {})}
  return subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                        capture_output=True, text=True, timeout=240)


def assert_same_files(dir_a, dir_b):
  a, b = np.load(os.path.join(dir_a, "params.npz")), np.load(os.path.join(dir_b, "params.npz"))
  assert sorted(a.files) == sorted(b.files)
  for name in a.files:
    assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
  with open(os.path.join(dir_a, "metrics.jsonl"), "rb") as fa, \
      open(os.path.join(dir_b, "metrics.jsonl"), "rb") as fb:
    assert fa.read() == fb.read()


def test_killed_and_restarted_training_is_bitwise_identical(tmp_path, compile_cache):
  reference = tmp_path / "reference"
  train_program(str(reference), checkpointing=False)
  rng = np.random.default_rng(1234)  # one random kill point in each third of the run
  thirds = np.linspace(1, STEPS, 4).astype(int)
  kill_points = [int(rng.integers(lo, hi)) for lo, hi in zip(thirds[:-1], thirds[1:])]
  signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]
  resumed = tmp_path / "resumed"
  for die_at, sig in zip(kill_points, signals):
    proc = run_program("train", str(resumed), str(die_at), str(int(sig)), env_extra=compile_cache)
    if sig == signal.SIGKILL:
      assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    else:  # preemption: the step in flight finishes, is saved, then exit 143
      assert proc.returncode == checkpoint.PREEMPTED_EXIT_CODE, proc.stderr[-2000:]
      assert f"SIGTERM: saved checkpoint step {die_at + 1}" in proc.stdout
      with checkpoint.Checkpoints(str(resumed / "ckpt")) as manager:
        assert manager.latest_step() == die_at + 1
  proc = run_program("train", str(resumed), env_extra=compile_cache)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resumed from checkpoint step" in proc.stdout
  assert_same_files(reference, resumed)


def test_restart_before_the_first_checkpoint_undoes_the_interrupted_attempt(tmp_path):
  """Lines the crashed attempt logged are dropped; earlier lines (another training's) stay."""
  step, state = make_training()
  x, y = dataset().x[:BATCH], dataset().y[:BATCH]

  def crashing_at(crash):
    def batch(i):
      if i == crash:
        raise KeyboardInterrupt
      return {"x": x, "y": y}
    return batch

  def attempt(workdir, crash=None):
    logger = MetricLogger(str(workdir), tensorboard=False)
    return loop.train_loop(step, state, crashing_at(crash), 8, logger=logger, log_every=1,
                           progress=False, checkpoint_dir=str(workdir / "ckpt"), save_every=5)

  for workdir in (tmp_path / "reference", tmp_path / "restarted"):
    MetricLogger(str(workdir), tensorboard=False).log(0, {"other_training": 1.0})
  attempt(tmp_path / "reference")
  with pytest.raises(KeyboardInterrupt):
    attempt(tmp_path / "restarted", crash=3)
  assert len((tmp_path / "restarted" / "metrics.jsonl").read_text().splitlines()) == 4
  attempt(tmp_path / "restarted")
  assert ((tmp_path / "restarted" / "metrics.jsonl").read_bytes()
          == (tmp_path / "reference" / "metrics.jsonl").read_bytes())


def test_fingerprint_matches_numpy_reference_and_detects_changes():
  """F(x) equals a NumPy uint64 reference, detects one flipped bit, and does not
  depend on how the array is sharded over devices."""
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 5))
  words = np.asarray(x).view(np.uint32).reshape(-1).astype(np.uint64)
  index = np.arange(words.size, dtype=np.uint64)
  reference = int(np.sum((words * ((index * 2654435761 + 1) % 2**32)) % 2**32) % 2**32)
  assert checkpoint.fingerprints({"x": x})["x"] == reference
  flipped = np.asarray(x).copy().view(np.uint32)
  flipped[3, 2] ^= 1 << 7
  assert checkpoint.fingerprints({"x": jnp.asarray(flipped.view(np.float32))})["x"] != reference
  swapped = jnp.asarray(np.asarray(x)[::-1])
  assert checkpoint.fingerprints({"x": swapped})["x"] != reference
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("d",))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
  assert checkpoint.fingerprints({"x": sharded})["x"] == reference


def _train_in_process(directory, steps, width=16, save_every=SAVE_EVERY, keep=3, step=None):
  step_fn, state = make_training(width)
  batches = data.BatchIterator(dataset(), BATCH, seed=7)
  return loop.train_loop(step or step_fn, state, batches, steps, log_every=5, progress=False,
                         checkpoint_dir=directory, save_every=save_every, keep=keep)


def _corrupt(step_dir, how):
  if how == "truncated_array_file":
    data_dir = os.path.join(step_dir, "state", "d")
    victim = max((os.path.join(data_dir, f) for f in os.listdir(data_dir)),
                 key=os.path.getsize)
    with open(victim, "r+b") as f:
      f.truncate(os.path.getsize(victim) // 2)
  elif how == "garbage_json":
    with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
      f.write('{"format": 1, "fingerp')
  else:  # valid files whose arrays no longer match their fingerprints
    path = os.path.join(step_dir, "meta", "metadata")
    with open(path) as f:
      meta = json.load(f)
    name = sorted(meta["fingerprints"])[0]
    meta["fingerprints"][name] = (meta["fingerprints"][name] + 1) % 2**32
    with open(path, "w") as f:
      json.dump(meta, f)


@pytest.fixture(scope="module")
def reference_10():
  return _train_in_process(None, 10)[0]


@pytest.mark.parametrize("how", ["truncated_array_file", "garbage_json", "wrong_fingerprint"])
def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, capsys, how, reference_10):
  reference = reference_10
  directory = str(tmp_path / "ckpt")
  _train_in_process(directory, 10)
  _corrupt(os.path.join(directory, "10"), how)
  capsys.readouterr()
  state, _ = _train_in_process(directory, 10)
  lines = [l for l in capsys.readouterr().out.splitlines() if "unreadable" in l]
  assert len(lines) == 1 and "step 10" in lines[0] and "corrupt-10" in lines[0]
  assert os.path.isdir(os.path.join(directory, "corrupt-10"))  # kept, not overwritten
  for a, b in zip(jax.tree.leaves(reference.params), jax.tree.leaves(state.params)):
    assert np.array_equal(a, b)
  with checkpoint.Checkpoints(directory) as manager:
    assert manager.steps() == [5, 10]


def test_saving_an_existing_step_refuses(tmp_path):
  state, _ = _train_in_process(str(tmp_path), 5)
  with checkpoint.Checkpoints(str(tmp_path)) as manager:
    with pytest.raises(checkpoint.CheckpointError, match="already exists"):
      manager.save(5, state)


def test_resume_with_a_different_model_shape_fails_before_compiling(tmp_path):
  _train_in_process(str(tmp_path), 5, width=16)

  def must_not_run(state, batch):
    raise AssertionError("the step ran (and would have compiled)")

  with pytest.raises(ConfigError) as error:
    _train_in_process(str(tmp_path), 10, width=24, step=must_not_run)
  message = str(error.value)
  assert "\n" not in message and "(16, 3)" in message and "(24, 3)" in message


def test_non_finite_loss_names_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
  x, y = dataset().x, dataset().y
  model = MLP(8)

  def fit(params, batch, rng):
    logits = model.apply(params, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}

  def blowup(params, batch, rng):
    return jnp.where(batch["poison"], jnp.nan, 0.0) * jnp.sum(params["params"]["Dense_0"]["bias"]), {}

  loss_fn = train.weighted_sum({"fit": (1.0, fit), "blowup": (0.1, blowup)})
  optimizer = optax.sgd(0.1)
  state = train.init_train_state(model.init(jax.random.PRNGKey(0), x[:1]), optimizer,
                                 jax.random.PRNGKey(1))
  step = train.make_train_step(loss_fn, optimizer)
  poison_from = 12  # the 13th update (logged as step 13) is the first non-finite one
  batches = lambda i: {"x": x[:32], "y": y[:32], "poison": jnp.asarray(i >= poison_from)}
  directory = str(tmp_path / "ckpt")
  with pytest.raises(loop.NonFiniteLossError) as error:
    loop.train_loop(step, state, batches, 30, log_every=5, progress=False,
                    checkpoint_dir=directory, save_every=5)
  message = str(error.value)
  assert "\n" not in message
  assert f"step {poison_from + 1}:" in message
  assert "blowup=nan" in message and "loss=nan" in message and "fit=" not in message
  assert "last good checkpoint: step 10" in message
  with checkpoint.Checkpoints(directory) as manager:
    assert manager.steps() == [5, 10]
    restored = manager.restore_latest(state)
  assert restored.step == 10
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(restored.state))


# --- experiment-level resume ---------------------------------------------------------

def _tiny_config():
  c = ml_collections.ConfigDict()
  c.num_seeds = 1
  c.num_fits = 2
  c.num_steps = 12
  c.width = 8
  return c


def _tiny_run(c, ctx):
  die_run, _, die_at = os.environ.get("JAXREP_TEST_DIE_AT", "::").partition(":")
  measured = {}
  for j in range(c.num_fits):
    name = f"fit{j}"

    def fit():
      with open(os.path.join(ctx.workdir, "computed.txt"), "a") as f:
        f.write(name + "\n")
      step, state = make_training(c.width, ctx.key(name))
      inner = data.BatchIterator(dataset(j), BATCH, seed=ctx.seeds(1)[0] + j)
      batches = DyingBatches(inner, int(die_at) if die_run == name else None)
      state, metrics = loop.train_loop(
          step, state, batches, c.num_steps, logger=ctx.logger, log_every=1, run=name,
          progress=False, checkpoint_dir=ctx.checkpoint_dir(name), save_every=4,
          async_save=False)  # so the kill below surely finds step 4 written
      return {"loss": metrics["loss"],
              "param_sum": sum(float(jnp.sum(p)) for p in jax.tree.leaves(state.params))}

    result = ctx.stage(name, fit)
    measured[f"loss_{name}"] = result["loss"]
    measured[f"param_sum_{name}"] = result["param_sum"]
  return experiment.Outcome(measured=measured, passed=None)


TINY = experiment.Experiment(paper_id="tiny_checkpointed", claim="-", get_config=_tiny_config,
                             run=_tiny_run, quick=lambda c: c)


def test_interrupted_experiment_resumes_and_matches_uninterrupted_run(tmp_path, compile_cache):
  reference = experiment.execute(TINY, str(tmp_path / "reference"), verbose=False)
  workdir = tmp_path / "resumed"
  killed = run_program("experiment", str(workdir),
                       env_extra={**compile_cache, "JAXREP_TEST_DIE_AT": "fit1:6"})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not (workdir / "results.json").exists()
  rerun = run_program("experiment", str(workdir), env_extra=compile_cache)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "fit1: resumed from checkpoint step 4" in rerun.stdout
  # fit0 had finished: its stage is not recomputed; fit1 resumes from its checkpoint
  assert (workdir / "computed.txt").read_text().split() == ["fit0", "fit1", "fit1"]
  resumed = json.loads((workdir / "results.json").read_text())
  expected = json.loads((tmp_path / "reference" / "results.json").read_text())
  for volatile in ("runtime_s", "date"):
    resumed.pop(volatile), expected.pop(volatile)
  assert resumed == expected and reference["measured"]
  assert ((workdir / "metrics.jsonl").read_bytes()
          == (tmp_path / "reference" / "metrics.jsonl").read_bytes())


def test_unreadable_stage_is_reported_and_recomputed(tmp_path, capsys):
  ctx = experiment.Context(str(tmp_path), _tiny_config(), 0, False, None)
  calls = []
  assert ctx.stage("part", lambda: calls.append(1) or {"v": np.arange(3)})["v"].sum() == 3
  path = next((tmp_path / "stages").rglob("part.pkl"))
  path.write_bytes(path.read_bytes()[:10])
  capsys.readouterr()
  assert ctx.stage("part", lambda: calls.append(1) or {"v": np.arange(3)})["v"].sum() == 3
  out = [l for l in capsys.readouterr().out.splitlines() if l]
  assert len(calls) == 2 and len(out) == 1 and "unreadable" in out[0]
  assert ctx.stage("part", lambda: calls.append(1))["v"].sum() == 3 and len(calls) == 2
  ctx.logger.close()


if __name__ == "__main__":
  sys.modules.setdefault("torch", None)  # tensorboardX imports torch if present: 5 s
  mode, workdir = sys.argv[1], sys.argv[2]
  if mode == "train":
    os.makedirs(workdir, exist_ok=True)
    die = int(sys.argv[3]) if len(sys.argv) > 3 else None
    sig = signal.Signals(int(sys.argv[4])) if len(sys.argv) > 4 else signal.SIGKILL
    train_program(workdir, die_at=die, sig=sig)
  else:
    experiment.execute(TINY, workdir, verbose=False)


def test_restart_whose_log_was_never_written_drops_nothing(tmp_path):
  """A crash before the first metric line leaves a start marker with log size 0 and no
  ``metrics.jsonl``; the restart must not try to truncate the missing file (it did:
  ``FileNotFoundError``). Catches ``current < size`` in place of ``current <= size``."""
  logger = MetricLogger(str(tmp_path), tensorboard=False)
  assert loop.log_size(logger) == 0 and not (tmp_path / "metrics.jsonl").exists()
  assert loop.drop_log_after(logger, 0) == 0
  logger.log(0, {"a": 1.0})
  size = loop.log_size(logger)
  logger.log(1, {"a": 2.0})
  assert loop.drop_log_after(logger, size) == 1 and loop.log_size(logger) == size
