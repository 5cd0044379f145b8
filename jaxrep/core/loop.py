"""The outer training loop: feeds batches to a compiled step, logs, reports progress."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import jax

from jaxrep.core import logging as log_lib
from jaxrep.core.train import StepFn, TrainState


def train_loop(step: StepFn, state: TrainState,
               batches: Iterator[Any] | Callable[[int], Any], num_steps: int, *,
               logger: log_lib.MetricLogger | None = None, log_every: int = 100,
               run: str = "", progress: bool = True) -> tuple[TrainState, dict]:
  """Runs ``num_steps`` of ``step`` from the state's current step.

  ``batches`` is an iterator or a function of the step index. Metrics are
  logged every ``log_every`` steps (and at the last); progress lines show
  rate and ETA. Returns the final state and the last logged metrics.
  """
  next_batch = batches if callable(batches) else (lambda _: next(batches))
  meter = log_lib.Progress(run or "train", num_steps, unit="steps") if progress else None
  start = int(state.step)
  metrics: dict = {}
  for i in range(start, num_steps):
    state, step_metrics = step(state, next_batch(i))
    if (i + 1) % log_every == 0 or i + 1 == num_steps:
      metrics = jax.device_get(step_metrics)
      if logger is not None:
        logger.log(i + 1, metrics, run=run)
      if meter is not None:
        meter.update(i + 1, f"loss={float(metrics['loss']):.4g}")
  return state, metrics
