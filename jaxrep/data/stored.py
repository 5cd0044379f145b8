"""Stored datasets: built-ins prepared locally on first use, real TFDS ones read offline.

``load`` reads a whole split into numpy arrays; ``source`` gives the random-access
TFDS data source (for datasets too large for memory). Nothing here downloads: a real
dataset must already be prepared as ``array_record`` under ``data_dir``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
import pathlib
import tempfile
import threading
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from jaxrep.core.config import ConfigError
from jaxrep.data import builders

BUILTIN = ("digits", "mnist1d")
_DATA_DIR_ENV = "JAXREP_DATA_DIR"
_PREPARE_LOCK = threading.Lock()


def default_data_dir() -> str:
  """``$JAXREP_DATA_DIR`` if set, else ``~/.cache/jaxrep/tensorflow_datasets``."""
  return os.environ.get(_DATA_DIR_ENV) or os.path.expanduser(
      "~/.cache/jaxrep/tensorflow_datasets")


DEFAULT_DATA_DIR = default_data_dir()


class DatasetMissingError(ConfigError):
  """A real dataset is not prepared (as ``array_record``) in the data dir."""


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A split in memory: ``x`` (N, ...), ``y`` (N,) (int32 class labels), ``num_classes``.

  Built-ins hold float32 ``x`` (digits (N, 8, 8, 1) in [0, 16]; mnist1d (N, 40));
  real datasets keep the stored dtype (uint8 images). No normalisation is applied.
  ``load`` returns read-only arrays (they are shared through its cache): normalise
  into new arrays (``ds.x / 16``), not in place.
  """

  x: np.ndarray
  y: np.ndarray
  num_classes: int | None

  def __post_init__(self) -> None:
    if len(self.x) != len(self.y):
      raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")

  def __len__(self) -> int:
    return len(self.y)


def load(name: str, split: str = "train", data_dir: str | None = None) -> ArrayDataset:
  """Reads a whole split into memory (read-only arrays, cached per process).

  ``name`` is a built-in (``"digits"``, ``"mnist1d"``, ``"mnist1d/shifted"``; prepared
  under ``data_dir`` on first use) or any TFDS name already prepared there. ``split``
  accepts TFDS split expressions (``"train[:90%]"``). ``data_dir`` defaults to
  ``default_data_dir()``, read at call time. Repeated calls with the same arguments
  return the same object; ``clear_cache()`` forgets them.
  """
  return _load_cached(name, split, _resolve(data_dir))


@functools.lru_cache(maxsize=32)
def _load_cached(name: str, split: str, data_dir: str) -> ArrayDataset:
  builder = _builder(name, data_dir)
  x_key, y_key = _keys(builder, name)
  x, y = _read_all(_data_source(builder, name, split), x_key, y_key)
  if _base_name(name) in BUILTIN:
    x = x.astype(np.float32, copy=False)
  x.setflags(write=False)
  y.setflags(write=False)
  return ArrayDataset(x=x, y=y, num_classes=getattr(builder.info.features[y_key],
                                                    "num_classes", None))


def clear_cache() -> None:
  """Forgets the splits ``load`` holds in memory (the prepared files stay)."""
  _load_cached.cache_clear()


def source(name: str, split: str = "train", data_dir: str | None = None) -> Sequence[Any]:
  """The random-access TFDS data source of a split (examples are feature dicts)."""
  return _data_source(_builder(name, _resolve(data_dir)), name, split)


def _is_prepared(dataset_dir: str | os.PathLike) -> bool:
  """Whether ``<data_dir>/<name>`` holds a finished ``[config/]version`` folder."""
  return bool(_prepared_info_files(dataset_dir))


def _prepared_info_files(dataset_dir: str | os.PathLike) -> list[str]:
  """The ``dataset_info.json`` files of finished versions under ``<data_dir>/<name>``."""
  root = pathlib.Path(dataset_dir)
  return [str(p) for pattern in ("*/dataset_info.json", "*/*/dataset_info.json")
          for p in root.glob(pattern) if not p.parent.name.startswith("incomplete.")]


def _resolve(data_dir: str | None) -> str:
  return os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))


def _base_name(name: str) -> str:
  return name.split("/")[0].split(":")[0]


def _builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  if _base_name(name) in BUILTIN:
    return _builtin_builder(name, data_dir)
  if not _is_prepared(os.path.join(data_dir, _base_name(name))):
    raise DatasetMissingError(
        f"dataset {name!r} is not prepared in {data_dir}: run `tfds build "
        f"{_base_name(name)} --data_dir {data_dir} --file_format array_record` on a "
        f"machine with internet and copy it here, or pass data_dir (or set "
        f"${_DATA_DIR_ENV}) to where it is prepared")
  builder = tfds.builder(name, data_dir=data_dir)
  if not os.path.isdir(os.path.join(data_dir, *builder.info.full_name.split("/"))):
    found = sorted(os.path.relpath(os.path.dirname(p), data_dir)
                   for p in _prepared_info_files(os.path.join(data_dir, _base_name(name))))
    raise DatasetMissingError(
        f"dataset {name!r} has no prepared version {builder.version} in {data_dir} "
        f"(found {', '.join(found)}): name one, e.g. '{':'.join(found[0].rsplit(os.sep, 1))}'"
        f", or run `tfds build {name} --data_dir {data_dir} --file_format array_record`")
  return builder


def _builtin_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The built-in's builder, reading from ``data_dir``; prepares it first if needed.

  Concurrent callers serialise on a file lock; where ``flock`` is not shared (some
  network file systems) the losing writer's ``FileExistsError`` is ignored.
  """
  base, _, config = name.partition("/")
  cls = builders.BUILDERS[base]
  configs = [c.name for c in cls.BUILDER_CONFIGS]
  if ":" in name or (config and config not in configs):
    options = ", ".join(f"{base}/{c}" for c in configs) or base
    raise ValueError(f"unknown built-in dataset {name!r}: use one of {options}")
  builder = cls(data_dir=data_dir, config=config or None)
  if builder.data_path.exists():
    return builder
  os.makedirs(data_dir, exist_ok=True)
  with _file_lock(os.path.join(data_dir, f".{base}.lock")):
    try:
      if not builder.data_path.exists():
        _prepare(builder)
    except FileExistsError:
      if not builder.data_path.exists():
        raise
  return cls(data_dir=data_dir, config=config or None)


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
  """An exclusive ``flock`` on ``path``: one process prepares, the others wait."""
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _prepare(builder: tfds.core.DatasetBuilder) -> None:
  """Writes the dataset as array_record without progress bars or a downloads folder.

  TFDS writes into ``incomplete.*`` and renames it into place, so readers never see a
  partial dataset; a second writer would fail on that rename (``FileExistsError``),
  which the file lock in ``_builtin_builder`` prevents.
  """
  with _PREPARE_LOCK:
    was_active = getattr(tfds.core.utils.tqdm_utils, "_active", True)
    tfds.display_progress_bar(False)
    try:
      with tempfile.TemporaryDirectory(prefix="jaxrep-tfds-") as download_dir:
        builder.download_and_prepare(download_dir=download_dir,
                                     file_format="array_record")
    finally:
      tfds.display_progress_bar(was_active)


def _keys(builder: tfds.core.DatasetBuilder, name: str) -> tuple[str, str]:
  """The (input, label) feature names: the supervised keys, else image/label."""
  keys = builder.info.supervised_keys
  if not (isinstance(keys, tuple) and len(keys) == 2
          and all(isinstance(k, str) for k in keys)):
    keys = ("image", "label")
  features = list(builder.info.features.keys())
  if any(k not in features for k in keys):
    raise ValueError(f"dataset {name!r} has features {features}, not {list(keys)}")
  return keys


def _data_source(builder: tfds.core.DatasetBuilder, name: str,
                 split: str) -> Sequence[Any]:
  try:
    return builder.as_data_source(split=split)
  except NotImplementedError as e:
    raise DatasetMissingError(
        f"dataset {name!r} in {builder.data_dir} is stored as "
        f"{builder.info.file_format}, not array_record: rebuild it with `tfds build "
        f"{_base_name(name)} --file_format array_record` or convert it with `tfds "
        f"convert_format --dataset_version_dir {builder.data_dir} --out_file_format "
        f"array_record`") from e
  except ValueError as e:
    if "Unknown split" not in str(e):
      raise
    raise ValueError(f"unknown split {split!r} of {name!r}: available splits are "
                     f"{sorted(builder.info.splits)}") from None


def _read_all(data_source: Sequence[Any], x_key: str,
              y_key: str) -> tuple[np.ndarray, np.ndarray]:
  """Stacks every example of a data source.

  Reads one example at a time: as fast as ``__getitems__`` on local array_record
  files, and ``tfds.testing.mock_data`` (4.9.10) only mocks ``__getitem__`` correctly.
  """
  n = len(data_source)
  if n == 0:
    raise ValueError("the split is empty")
  examples = [data_source[i] for i in range(n)]
  x = np.stack([np.asarray(e[x_key]) for e in examples])
  y = np.asarray([e[y_key] for e in examples])
  return x, y.astype(np.int32) if y.dtype.kind in "iu" else y
