"""The one training road: ``fit`` trains a stack of runs, sharded, chunked, checkpointed.

A *task* is a pair of pure functions over a run's ``inputs`` (a dict)::

    init(inputs) -> TrainState
    step(state, inputs) -> (state, metrics)        # step t reads state.step

``fit(task, runs, num_steps, data=...)`` builds each run's ``inputs`` as
``{**data, **run}`` — ``runs`` holds what differs between runs (keys, per-seed
data, learning rates; leading axes = the runs), ``data`` what they share — and

* vmaps the task over the runs and compiles it once (one program per shape);
* shards the run axis over the mesh's ``seed`` axis (padding the run count to a
  multiple of it with copies of run 0, dropped again on return) and, inside a
  step, the batch over its ``data`` axis (``shard_batch``);
* runs ``num_steps`` in ``lax.scan`` chunks; between chunks it checks every
  metric for NaN/inf (``NonFiniteLossError`` names the step, the run and the
  terms), logs curves, prints progress and checkpoints (orbax; every
  ``save_every_s`` seconds), so a killed run resumes from its last chunk and ends
  bitwise identical to an uninterrupted one; SIGTERM saves and exits (143).

``jaxrep.core.tasks`` builds the common tasks (``minibatch_task``,
``classifier_task``); a task's step calls ``tasks.shard_batch`` on its batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrep.core import checkpoint as ckpt_lib
from jaxrep.core import logging as log_lib
from jaxrep.core import loop
from jaxrep.core.config import ConfigError
from jaxrep.core.parallel import SEED_AXIS, make_mesh, mesh_axis_size
from jaxrep.core.tasks import Task
from jaxrep.core.train import TrainState

PyTree = Any
DEFAULT_SAVE_EVERY_S = 60.0


@dataclasses.dataclass
class FitResult:
  """``state``: the trained states, leading axes = the runs' (sharded over ``seed``);
  ``curves``: metric name → host array (*run_shape, num_steps);
  ``diverged``: (*run_shape,) bool, runs with a non-finite metric (only with
  ``allow_nonfinite``); ``layout``: devices, mesh shape, runs and padding."""

  state: TrainState
  curves: dict[str, np.ndarray]
  diverged: np.ndarray
  layout: dict[str, Any]


# ---------------------------------------------------------------------------
# Layout


def run_shape(runs: PyTree, run_axes: int) -> tuple[int, ...]:
  """The leading ``run_axes`` dimensions every leaf of ``runs`` shares."""
  shapes = {tuple(np.shape(a)[:run_axes]) for a in jax.tree.leaves(runs)}
  if len(shapes) != 1 or len(next(iter(shapes))) != run_axes:
    raise ConfigError(f"every leaf of runs needs the same {run_axes} leading run axes, "
                      f"got {sorted(shapes)}")
  return shapes.pop()


def default_mesh() -> Mesh:
  """Every device on the ``seed`` axis (``data`` = 1)."""
  return make_mesh(num_data=1, num_seed=jax.device_count())


def parse_mesh(text: str | None) -> Mesh:
  """``"seeds=4,data=2"`` → a (seed, data) mesh; None or "" → ``default_mesh()``."""
  if not text:
    return default_mesh()
  sizes = {"seeds": 1, "data": 1}
  for part in text.split(","):
    name, _, value = part.partition("=")
    name = name.strip()
    if name not in sizes or not value.strip().isdigit():
      raise ConfigError(f"--mesh takes 'seeds=N,data=M', got {text!r}")
    sizes[name] = int(value)
  return make_mesh(num_data=sizes["data"], num_seed=sizes["seeds"])


def _global(tree: PyTree, sharding: NamedSharding) -> PyTree:
  """Host values identical on every process → global arrays with ``sharding``."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(x):
    x = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(one, tree)


def _host(x: jax.Array) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.array(multihost_utils.process_allgather(x, tiled=True))
  return np.array(x)


def _pad_runs(runs: PyTree, num_runs: int, multiple: int) -> tuple[PyTree, int]:
  padded = -(-num_runs // multiple) * multiple
  if padded == num_runs:
    return runs, num_runs
  index = np.concatenate([np.arange(num_runs), np.zeros(padded - num_runs, int)])
  return jax.tree.map(lambda a: jnp.asarray(a)[index], runs), padded


def chunk_length(num_steps: int, max_chunks: int = 10, min_chunk: int = 100) -> int:
  """Steps per compiled chunk: about num_steps / 10, at least ``min_chunk``."""
  num_chunks = max(1, min(max_chunks, num_steps // min_chunk))
  return -(-num_steps // num_chunks)


@functools.lru_cache(maxsize=64)
def _chunk_program(task: Task, chunk: int, masked: bool, mesh: Mesh):
  """jit(vmap over runs of ``chunk`` scanned steps); with ``masked``, steps ≥
  ``num_steps`` (a traced argument) leave the state unchanged. Cached per (task,
  chunk, masked, mesh), so repeated fits of one task compile once per shape."""
  runs_split, replicated = NamedSharding(mesh, P(SEED_AXIS)), NamedSharding(mesh, P())

  def one(state, run, data, start, num_steps):
    inputs = {**data, **run}

    def body(state, i):
      new, metrics = task.step(state, inputs)
      if masked:
        keep = start + i < num_steps
        new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state)
      return new, metrics

    return lax.scan(body, state, jnp.arange(chunk))

  program = jax.vmap(one, in_axes=(0, 0, None, None, None), spmd_axis_name=SEED_AXIS)
  return jax.jit(program, in_shardings=(runs_split, runs_split, replicated, None, None),
                 out_shardings=(runs_split, runs_split))


@functools.lru_cache(maxsize=64)
def _init_program(task: Task, mesh: Mesh):
  runs_split, replicated = NamedSharding(mesh, P(SEED_AXIS)), NamedSharding(mesh, P())
  def init_runs(run, data):
    return task.init({**data, **run})

  return jax.jit(jax.vmap(init_runs, in_axes=(0, None), spmd_axis_name=SEED_AXIS),
                 in_shardings=(runs_split, replicated), out_shardings=runs_split)


# ---------------------------------------------------------------------------
# Guards


def _first_non_finite(metrics: Mapping[str, np.ndarray], num_real: int
                      ) -> tuple[int, int, list[str]] | None:
  """(step offset, run, ['loss=nan', …]) of the first non-finite metric, or None.
  Metrics are (runs, chunk, ...) host arrays; padded runs are ignored."""
  bad_at: dict[str, np.ndarray] = {}
  for name, values in metrics.items():
    if values.dtype.kind not in "fc":
      continue
    finite = np.isfinite(values[:num_real]).reshape(num_real, values.shape[1], -1).all(-1)
    if not finite.all():
      bad_at[name] = ~finite
  if not bad_at:
    return None
  any_bad = np.any(np.stack(list(bad_at.values())), axis=0)  # (runs, chunk)
  step = int(np.argmax(any_bad.any(axis=0)))
  run = int(np.argmax(any_bad[:, step]))
  terms = [f"{name}={metrics[name][run, step].ravel()[0]}" for name, bad in bad_at.items()
           if bad[run, step]]
  return step, run, terms


# ---------------------------------------------------------------------------
# fit


def fit(task: Task, runs: Mapping[str, Any], num_steps: int, *,
        data: Mapping[str, Any] | None = None, run_axes: int = 1,
        mesh: Mesh | None = None, name: str = "fit",
        chunk_steps: int | None = None, checkpoint_dir: str | None = None,
        save_every_s: float = DEFAULT_SAVE_EVERY_S, keep: int = 2,
        logger: log_lib.MetricLogger | None = None, log_every: int | None = None,
        progress: bool = True, allow_nonfinite: bool = False) -> FitResult:
  """Trains every run of ``runs`` for ``num_steps`` steps of ``task``.

  Args:
    task: ``Task(init, step)``; both see ``inputs = {**data, **run}``.
    runs: dict of arrays whose leading ``run_axes`` axes index the runs (e.g.
      seeds × learning rates); ``data``: dict shared by every run (replicated).
    mesh: a (seed, data) mesh, default every device on ``seed``.
    checkpoint_dir: save the stacked state (and curves so far) there whenever
      ``save_every_s`` seconds passed since the last save (0: after every chunk);
      a rerun resumes from the newest good checkpoint.
    logger: ``MetricLogger``; every ``log_every`` steps (default ~50 points per
      curve) it gets each metric's mean over the runs, under run ``name``.
    allow_nonfinite: record runs that diverge (``FitResult.diverged``, e.g. the
      large learning rates of a grid) instead of stopping.

  Returns: ``FitResult`` (state sharded over the runs, host curves, layout).
  """
  if num_steps < 1:
    raise ConfigError(f"{name}: num_steps must be ≥ 1, got {num_steps}")
  data = dict(data or {})
  runs = dict(runs)
  clash = sorted(set(data) & set(runs))
  if clash:
    raise ConfigError(f"{name}: keys {clash} are in both runs and data")
  shape = run_shape(runs, run_axes)
  num_real = math.prod(shape)
  flat = jax.tree.map(lambda a: jnp.reshape(a, (num_real,) + np.shape(a)[run_axes:]), runs)
  mesh = default_mesh() if mesh is None else mesh
  seed_devices = mesh_axis_size(mesh, SEED_AXIS)
  flat, num_padded = _pad_runs(flat, num_real, seed_devices)
  chunk = chunk_steps or chunk_length(num_steps)
  log_every = log_every or max(1, num_steps // 50)
  layout = {"devices": int(mesh.devices.size), "mesh": dict(mesh.shape),
            "runs": num_real, "padded_runs": num_padded - num_real, "chunk_steps": chunk}
  if num_padded != num_real:
    print(f"{name}: {num_real} runs padded to {num_padded} (a multiple of the "
          f"{seed_devices} devices on the seed axis); the copies are dropped", flush=True)

  runs_split, replicated = NamedSharding(mesh, P(SEED_AXIS)), NamedSharding(mesh, P())
  with jax.set_mesh(mesh):
    flat = _global(flat, runs_split)
    data = _global(data, replicated)
    state = _init_program(task, mesh)(flat, data)
    chunk_program = _chunk_program(task, chunk, num_steps % chunk != 0, mesh)
    run_chunk = lambda state, start: chunk_program(state, flat, data, jnp.int32(start),
                                                   jnp.int32(num_steps))
    metric_shapes = jax.eval_shape(run_chunk, state, 0)[1]
  curves = {k: np.full((num_padded, num_steps) + s.shape[2:], np.nan, s.dtype)
            for k, s in metric_shapes.items()}
  diverged = np.zeros(num_padded, bool)

  manager = ckpt_lib.Checkpoints(checkpoint_dir, keep=keep) if checkpoint_dir else None
  done = 0
  try:
    if manager is not None:
      state, curves, done = _resume(manager, state, curves, logger, name, replicated)
    meter = log_lib.Progress(name, num_steps, unit="steps") if progress else None
    last_save = time.perf_counter()
    own_sigterm = manager is not None and jax.process_count() == 1
    with (ckpt_lib.sigterm_flag() if own_sigterm else contextlib.nullcontext()) as sigterm:
      while done < num_steps:
        with jax.set_mesh(mesh):
          state, metrics = run_chunk(state, done)
        metrics = {k: _host(v) for k, v in metrics.items()}
        length = min(chunk, num_steps - done)
        problem = _first_non_finite({k: v[:, :length] for k, v in metrics.items()},
                                    num_real)
        if problem is not None and not allow_nonfinite:
          _stop_non_finite(name, done + problem[0] + 1, problem[1], num_real,
                           problem[2], manager)
        for k, v in metrics.items():
          curves[k][:, done:done + length] = v[:, :length]
        if problem is not None:
          diverged |= _rows_non_finite(metrics, length)
        _log_curves(logger, name, curves, num_real, done, done + length, log_every)
        done += length
        if meter is not None:
          loss = curves.get("loss")
          extra = "" if loss is None else f"loss={np.nanmean(loss[:num_real, done - 1]):.4g}"
          meter.update(done, extra)
        stop = own_sigterm and sigterm.is_set()
        if manager is not None and (stop or time.perf_counter() - last_save >= save_every_s):
          _save(manager, done, state, curves, logger, replicated)
          last_save = time.perf_counter()
        if stop:
          ckpt_lib.preempt(manager, name, done)
  finally:
    if manager is not None:
      manager.close()

  layout["state_devices"] = len(jax.tree.leaves(state)[0].sharding.device_set)
  state = jax.tree.map(lambda a: a[:num_real] if num_padded != num_real else a, state)
  state = jax.tree.map(lambda a: jnp.reshape(a, shape + a.shape[1:]), state)
  curves = {k: v[:num_real].reshape(shape + v.shape[1:]) for k, v in curves.items()}
  return FitResult(state, curves, diverged[:num_real].reshape(shape), layout)


def _rows_non_finite(metrics: Mapping[str, np.ndarray], length: int) -> np.ndarray:
  rows = [~np.isfinite(v[:, :length]).reshape(v.shape[0], -1).all(-1)
          for v in metrics.values() if v.dtype.kind in "fc"]
  return np.any(np.stack(rows), axis=0)


def _stop_non_finite(name: str, step: int, run: int, num_runs: int, terms: list[str],
                     manager: ckpt_lib.Checkpoints | None) -> None:
  raise loop.NonFiniteLossError(
      f"{name}: non-finite loss at step {step} (run {run} of {num_runs}): "
      f"{', '.join(terms)}; stopped ({ckpt_lib.last_good(manager)})")


def _log_curves(logger, name: str, curves: Mapping[str, np.ndarray], num_real: int,
                start: int, end: int, log_every: int) -> None:
  if logger is None:
    return
  num_steps = next(iter(curves.values())).shape[1] if curves else 0
  for t in range(start, end):
    if (t + 1) % log_every == 0 or t + 1 == num_steps:
      logger.log(t + 1, {k: float(np.nanmean(v[:num_real, t])) for k, v in curves.items()
                         if v.ndim == 2}, run=name)


def _save(manager: ckpt_lib.Checkpoints, done: int, state: TrainState,
          curves: Mapping[str, np.ndarray], logger, replicated: NamedSharding) -> None:
  manager.save(done, {"state": state, "curves": _global(dict(curves), replicated)},
               {"done": done, "log_size": loop.log_size(logger)})


def _resume(manager: ckpt_lib.Checkpoints, state: TrainState, curves: dict, logger,
            name: str, replicated: NamedSharding) -> tuple[TrainState, dict, int]:
  restored = manager.restore_latest({"state": state, "curves": _global(curves, replicated)})
  if restored is None:
    start = manager.read_start()
    if start is None:
      manager.write_start({"log_size": loop.log_size(logger)})
    else:
      loop.drop_log_after(logger, start.get("log_size"))
    return state, curves, 0
  dropped = loop.drop_log_after(logger, restored.extra.get("log_size"))
  note = f"; dropped {dropped} metric line(s) logged after it" if dropped else ""
  print(f"{name}: resumed from checkpoint step {restored.step} in {manager.directory}{note}",
        flush=True)
  tree = restored.state
  return tree["state"], {k: _host(v) for k, v in tree["curves"].items()}, restored.step
