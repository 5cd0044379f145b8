"""The outer training loop: feeds batches to a compiled step, logs, checkpoints, guards.

With ``checkpoint_dir`` the loop saves the whole state every ``save_every`` steps
and at the end (asynchronously, keeping the newest ``keep``), resumes from the
newest good checkpoint when rerun — state, data iterator position and the
metrics log, so a resumed run ends bitwise identical to an uninterrupted one —
and on SIGTERM saves and exits with status 143 (``checkpoint.Preempted``).

The non-finite guard looks at the metrics of every step (the loss and each term
of ``train.weighted_sum``) whenever it logs or saves, so it costs one host
transfer per log step; it never saves a state whose step produced a NaN/inf.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.core import checkpoint as ckpt_lib
from jaxrep.core import logging as log_lib
from jaxrep.core.train import StepFn, TrainState

DEFAULT_SAVE_EVERY = 1000


class NonFiniteLossError(FloatingPointError):
  """A step produced a NaN or infinite metric; the message names the step and terms."""


def non_finite_terms(metrics: Mapping[str, Any]) -> list[str]:
  """``['loss=nan', 'reg=inf']``: the metrics with a NaN or infinite entry."""
  bad = []
  for name, value in metrics.items():
    array = np.asarray(value)
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
      bad.append(f"{name}={array.item() if array.size == 1 else 'non-finite'}")
  return bad


@jax.jit
def _state_is_finite(state: TrainState) -> jax.Array:
  leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True


def _metrics_to_json(metrics: Mapping[str, Any]) -> dict:
  return {k: {"dtype": np.asarray(v).dtype.name, "value": np.asarray(v).tolist()}
          for k, v in metrics.items()}


def _metrics_from_json(record: Mapping[str, Any] | None) -> dict:
  return {k: np.asarray(v["value"], dtype=jnp.dtype(v["dtype"]))
          for k, v in (record or {}).items()}


def log_size(logger: log_lib.MetricLogger | None) -> int | None:
  """Bytes in ``metrics.jsonl`` (0 before the first line; None without a log)."""
  if logger is None or not logger.active:
    return None
  return os.path.getsize(logger.path) if os.path.exists(logger.path) else 0


def drop_log_after(logger: log_lib.MetricLogger | None, size: int | None) -> int:
  """Cuts ``metrics.jsonl`` back to ``size`` bytes (lines logged after a checkpoint
  that the resumed run logs again); returns the number of lines dropped."""
  current = log_size(logger)
  if size is None or current is None or current <= size:  # nothing logged since (or no file)
    return 0
  with open(logger.path, "rb+") as f:
    f.seek(size)
    dropped = f.read().count(b"\n")
    f.truncate(size)
  return dropped


def _check_finite(pending: list[tuple[int, Any]], state: TrainState | None, run: str,
                  manager: ckpt_lib.Checkpoints | None) -> None:
  """Raises ``NonFiniteLossError`` at the first pending step with a non-finite metric
  (or if ``state``, about to be saved, holds a non-finite value)."""
  problem = None
  for done, metrics in jax.device_get(pending):
    bad = non_finite_terms(metrics)
    if bad:
      problem = f"non-finite loss at step {done}: {', '.join(bad)}"
      break
  if problem is None and state is not None and not bool(_state_is_finite(state)):
    problem = f"non-finite parameters or optimizer state after step {int(state.step)}"
  if problem is None:
    return
  raise NonFiniteLossError(
      f"{run or 'train'}: {problem}; stopped ({ckpt_lib.last_good(manager)})")


def _resume(manager: ckpt_lib.Checkpoints, state: TrainState, batches: Any,
            num_steps: int, logger: log_lib.MetricLogger | None, run: str,
            ) -> tuple[TrainState, dict]:
  restored = manager.restore_latest(state)
  if restored is None:  # a fresh start, or a restart before the first checkpoint
    start = manager.read_start()
    if start is None:
      manager.write_start({"log_size": log_size(logger)})
    else:
      dropped = drop_log_after(logger, start.get("log_size"))
      if dropped:
        print(f"{run or 'train'}: no checkpoint yet in {manager.directory}; starting over "
              f"and dropped {dropped} metric line(s) of the interrupted attempt", flush=True)
    return state, {}
  extra = restored.extra
  if hasattr(batches, "set_state") and extra.get("data") is not None:
    batches.set_state(extra["data"])
  elif not callable(batches):
    for _ in range(restored.step - int(state.step)):
      next(batches)
  note = ""
  if restored.step < num_steps:
    dropped = drop_log_after(logger, extra.get("log_size"))
    note = f"; dropped {dropped} metric line(s) logged after it" if dropped else ""
  print(f"{run or 'train'}: resumed from checkpoint step {restored.step} "
        f"in {manager.directory}{note}", flush=True)
  return restored.state, _metrics_from_json(extra.get("metrics"))


def _preemption_requested(flag, done: int) -> bool:
  """SIGTERM seen (one process) or, on several hosts, JAX's preemption sync point
  (every host stops at the same step; not exercised on this CPU-only machine)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return bool(multihost_utils.reached_preemption_sync_point(done))
  return flag.is_set()


def train_loop(step: StepFn, state: TrainState,
               batches: Iterator[Any] | Callable[[int], Any], num_steps: int, *,
               logger: log_lib.MetricLogger | None = None, log_every: int = 100,
               run: str = "", progress: bool = True,
               checkpoint_dir: str | None = None, save_every: int = DEFAULT_SAVE_EVERY,
               keep: int = 3, async_save: bool = True,
               check_finite: bool = True) -> tuple[TrainState, dict]:
  """Runs ``step`` until the state's step reaches ``num_steps``.

  ``batches`` is an iterator (one with ``get_state()``/``set_state()``, such as
  ``jaxrep.data.BatchIterator``, is checkpointed; another is fast-forwarded on
  resume) or a function of the step index. Metrics are logged every
  ``log_every`` steps and at the last; progress lines show rate and ETA.

  ``checkpoint_dir``: save every ``save_every`` steps, at the end and on SIGTERM
  (then raise ``checkpoint.Preempted``, exit status 143), keeping the newest
  ``keep``; a rerun resumes from the newest good checkpoint (``async_save=False``
  blocks at each save until it is written). ``check_finite``:
  raise ``NonFiniteLossError`` naming the first step and every metric that is
  NaN/inf; the newest checkpoint is then the last good one.

  Returns the final state and the last logged metrics.
  """
  if log_every < 1 or save_every < 1:
    raise ValueError(f"log_every and save_every must be ≥ 1, got {log_every}, {save_every}")
  next_batch = batches if callable(batches) else (lambda _: next(batches))
  manager = (ckpt_lib.Checkpoints(checkpoint_dir, keep=keep, async_save=async_save)
             if checkpoint_dir else None)
  try:
    metrics: dict = {}
    if manager is not None:
      state, metrics = _resume(manager, state, batches, num_steps, logger, run)
    start = int(state.step)
    meter = log_lib.Progress(run or "train", num_steps, unit="steps") if progress else None
    pending: list[tuple[int, Any]] = []
    own_sigterm = manager is not None and jax.process_count() == 1
    guard = ckpt_lib.sigterm_flag() if own_sigterm else contextlib.nullcontext()
    with guard as sigterm:
      for i in range(start, num_steps):
        state, step_metrics = step(state, next_batch(i))
        done = i + 1
        if check_finite:
          pending.append((done, step_metrics))
        stop = manager is not None and _preemption_requested(sigterm, done)
        log_now = done % log_every == 0 or done == num_steps
        save_now = manager is not None and (done % save_every == 0 or done == num_steps or stop)
        if check_finite and (log_now or save_now):
          _check_finite(pending, state if save_now else None, run, manager)
          pending = []
        if log_now:
          metrics = jax.device_get(step_metrics)
          if logger is not None:
            logger.log(done, metrics, run=run)
          if meter is not None:
            meter.update(done, f"loss={float(metrics.get('loss', np.nan)):.4g}")
        if save_now:
          manager.save(done, state, {
              "data": batches.get_state() if hasattr(batches, "get_state") else None,
              "log_size": log_size(logger), "metrics": _metrics_to_json(metrics)})
        if stop:
          ckpt_lib.preempt(manager, run or "train", done)
  finally:
    if manager is not None:
      manager.close()
  return state, metrics

