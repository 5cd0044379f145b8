"""Run logging: a JSONL metrics file, TensorBoard summaries and progress lines.

Only JAX process 0 writes; other processes get a logger that does nothing, so
multi-host runs need no special cases in experiment code.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

import jax
import numpy as np

from jaxrep.core.results import format_duration


def _to_python(value: Any) -> Any:
  array = np.asarray(value)
  return array.item() if array.size == 1 else array.tolist()


class Progress:
  """Prints ``label done/total, rate, ETA`` at most every ``every_s`` seconds."""

  def __init__(self, label: str, total: int, every_s: float = 10.0, unit: str = "it"):
    self.label, self.total, self.every_s, self.unit = label, total, every_s, unit
    self.start = self.last = time.perf_counter()

  def update(self, done: int, extra: str = "") -> None:
    now = time.perf_counter()
    if done < self.total and now - self.last < self.every_s:
      return
    self.last = now
    elapsed = now - self.start
    rate = done / elapsed if elapsed > 0 else float("nan")
    eta = (self.total - done) / rate if rate > 0 else float("nan")
    eta_text = format_duration(eta) if np.isfinite(eta) else "?"
    line = (f"{self.label}: {done}/{self.total} {self.unit} "
            f"({rate:.3g} {self.unit}/s, elapsed {format_duration(elapsed)}, ETA {eta_text})")
    if extra:
      line += f" {extra}"
    if jax.process_index() == 0:
      print(line, flush=True)


class MetricLogger:
  """Appends ``{"step", "run", **metrics}`` lines to ``workdir/metrics.jsonl``
  and mirrors scalars to TensorBoard under ``workdir/tensorboard``."""

  def __init__(self, workdir: str | None, tensorboard: bool = True):
    self.active = workdir is not None and jax.process_index() == 0
    self._writer = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    if tensorboard:
      from tensorboardX import SummaryWriter  # imported lazily: slow import
      self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def log(self, step: int, metrics: Mapping[str, Any], run: str = "") -> None:
    if not self.active:
      return
    record = {"step": int(step), **({"run": run} if run else {}),
              **{k: _to_python(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._writer is not None:
      prefix = f"{run}/" if run else ""
      for key, value in record.items():
        if key not in ("step", "run") and isinstance(value, (int, float)):
          self._writer.add_scalar(prefix + key, value, int(step))

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
