"""Deterministic, resumable minibatches over in-memory arrays, optionally per-process.

Epoch ``e`` visits the examples in the order ``epoch_permutation(seed, e, n)``, so the
stream is a pure function of the seed and its position is a small JSON-able state.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np


class Arrays(Protocol):
  """Anything with equal-length ``x`` and ``y`` arrays (e.g. ``ArrayDataset``)."""

  x: Any
  y: Any


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of epoch ``epoch``: ``default_rng([seed, epoch]).permutation(n)``."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def process_shard(batch: Mapping[str, np.ndarray], process_index: int,
                  process_count: int) -> dict[str, np.ndarray]:
  """Process ``process_index``'s contiguous slice of a global batch."""
  return {k: v[_shard_slice(len(v), process_index, process_count)]
          for k, v in batch.items()}


def _shard_slice(size: int, index: int, count: int) -> slice:
  if not 0 <= index < count:
    raise ValueError(f"shard index {index} not in [0, {count})")
  if size % count:
    raise ValueError(f"batch of {size} does not split into {count} equal shards")
  per = size // count
  return slice(index * per, (index + 1) * per)


class BatchIterator:
  """Endless ``{"x", "y"}`` numpy batches, epoch after epoch; batches never span epochs.

  ``shard=(index, count)`` yields only process ``index``'s slice of each global batch
  of ``batch_size`` (concatenating the shards of all processes gives the global batch).
  ``get_state()``/``set_state()`` (or ``state=``) resume at the next example.
  """

  def __init__(self, dataset: Arrays, batch_size: int, seed: int,
               drop_remainder: bool = True, shuffle: bool = True,
               shard: tuple[int, int] = (0, 1),
               state: Mapping[str, int] | None = None):
    self._x, self._y = dataset.x, dataset.y
    self._n = len(self._y)
    if len(self._x) != self._n:
      raise ValueError(f"x has {len(self._x)} examples but y has {self._n}")
    if not 0 < batch_size <= self._n:
      raise ValueError(f"batch_size must be in [1, {self._n}] (the dataset size), "
                       f"got {batch_size}")
    if seed < 0:
      raise ValueError(f"seed must be non-negative, got {seed}")
    index, count = shard
    _shard_slice(batch_size, index, count)
    if count > 1 and not drop_remainder:
      raise ValueError("sharding needs drop_remainder=True: every batch must split")
    self.batch_size, self.seed = int(batch_size), int(seed)
    self.drop_remainder, self.shuffle = drop_remainder, shuffle
    self.shard = (index, count)
    self._epoch, self._position, self._order_epoch, self._order = 0, 0, -1, None
    if state is not None:
      self.set_state(state)

  @property
  def steps_per_epoch(self) -> int:
    """Batches in one epoch."""
    full, rest = divmod(self._n, self.batch_size)
    return full + (1 if rest and not self.drop_remainder else 0)

  def get_state(self) -> dict[str, int]:
    """``{"epoch", "position", "seed"}``: where the next batch starts."""
    return {"epoch": self._epoch, "position": self._position, "seed": self.seed}

  def set_state(self, state: Mapping[str, int]) -> None:
    """Continues from a ``get_state()`` of an iterator with the same seed."""
    epoch, position, seed = (int(state[k]) for k in ("epoch", "position", "seed"))
    if seed != self.seed:
      raise ValueError(f"state is for seed {seed}, this iterator has seed {self.seed}")
    if epoch < 0 or not 0 <= position <= self._n:
      raise ValueError(f"invalid state {dict(state)} for {self._n} examples")
    self._epoch, self._position = epoch, position

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    remaining = self._n - self._position
    if remaining == 0 or (self.drop_remainder and remaining < self.batch_size):
      self._epoch, self._position = self._epoch + 1, 0
    size = min(self.batch_size, self._n - self._position)
    start = self._position
    rows = self._epoch_order()[start:start + size]
    if self.shard[1] > 1:
      rows = rows[_shard_slice(size, *self.shard)]
    self._position = start + size
    return {"x": self._x[rows], "y": self._y[rows]}

  def _epoch_order(self) -> np.ndarray:
    if self._order_epoch != self._epoch:
      self._order = (epoch_permutation(self.seed, self._epoch, self._n) if self.shuffle
                     else np.arange(self._n))
      self._order_epoch = self._epoch
    return self._order
