"""Checkpoints of a training run: periodic asynchronous saves, exact resume, preemption.

A checkpoint at step s (``directory/<s>/``, written with orbax-checkpoint) holds the
whole ``TrainState`` — params, optimizer state, step, PRNG key, model state — and a
small JSON record ``extra`` (the caller's: data iterator position, metrics-file
length, last logged metrics). Saves are asynchronous: the arrays are copied to the
host, then written while training continues; orbax writes each step into a
temporary folder and renames it when complete, so a process killed mid-save leaves
no half checkpoint. The newest ``keep`` steps are kept.

Each array is saved with its fingerprint, computed on device in uint32 arithmetic
(exact under any sharding),

    F(x) = Σ_i w_i · (i·2654435761 + 1)  mod 2³²,   w = the 32-bit words of x,

and checked after restoring. Restoring first checks that the checkpoint holds the
template's leaves with the same shapes and dtypes (else a one-line ``ConfigError``,
before anything compiles). If the newest checkpoint cannot be read or fails its
fingerprints while an older one restores, the newest is reported in one line and
moved aside to ``directory/corrupt-<s>`` (never deleted, never overwritten).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxrep.core.config import ConfigError

PyTree = Any
FORMAT_VERSION = 1
START_FILE = "start.json"
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
_GOLDEN = np.uint32(2654435761)


class _HideOrbaxInfo(logging.Filter):
  """Orbax logs dozens of INFO lines per save through absl; keep its warnings only."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


logging.getLogger("absl").addFilter(_HideOrbaxInfo())


class CheckpointError(RuntimeError):
  """A checkpoint problem that needs the user (one-line message)."""


class Preempted(SystemExit):
  """Raised after SIGTERM once the final checkpoint is saved; exits with 143."""

  def __init__(self, message: str):
    super().__init__(PREEMPTED_EXIT_CODE)
    self.message = message

  def __str__(self) -> str:
    return self.message


@dataclasses.dataclass(frozen=True)
class Restored:
  """A restored checkpoint: its step, the state (the template's type) and ``extra``."""

  step: int
  state: PyTree
  extra: dict


def _key_name(entry: Any) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute)).replace("/", "|")
  return str(entry)


def flatten_state(state: PyTree) -> tuple[dict[str, jax.Array], Any]:
  """``{'params.Dense_0.kernel': array, ...}`` and the treedef to rebuild ``state``.

  Typed PRNG keys are stored as their raw key data.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
  flat = {}
  for path, leaf in leaves:
    name = ".".join(_key_name(p) for p in path) or "value"
    if name in flat:
      raise ValueError(f"two state leaves share the checkpoint name '{name}'")
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    flat[name] = leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)
  return flat, treedef


def _unflatten_state(flat: Mapping[str, jax.Array], template: PyTree) -> PyTree:
  leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
  names = [".".join(_key_name(p) for p in path) or "value" for path, _ in leaves]
  values = []
  for name, (_, like) in zip(names, leaves):
    value = flat[name]
    if isinstance(like, jax.Array) and jnp.issubdtype(like.dtype, jax.dtypes.prng_key):
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
    values.append(value)
  return jax.tree_util.tree_unflatten(treedef, values)


def _words(x: jax.Array) -> jax.Array:
  if jnp.iscomplexobj(x):
    return jnp.concatenate([_words(jnp.real(x)), _words(jnp.imag(x))])
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32).reshape(-1)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


@jax.jit
def _fingerprints(flat: dict[str, jax.Array]) -> dict[str, jax.Array]:
  def one(x):
    words = _words(x)
    index = jnp.arange(words.size, dtype=jnp.uint32)
    return jnp.sum(words * (index * _GOLDEN + jnp.uint32(1)), dtype=jnp.uint32)

  return {name: one(x) for name, x in flat.items()}


def fingerprints(flat: Mapping[str, jax.Array]) -> dict[str, int]:
  """F(x) per array (see the module docstring), as Python ints."""
  return {k: int(v) for k, v in jax.device_get(_fingerprints(dict(flat))).items()}


def _abstract(x: jax.Array) -> jax.ShapeDtypeStruct:
  sharding = getattr(x, "sharding", None)
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _describe_shape(shape, dtype) -> str:
  return f"{tuple(shape)} {np.dtype(dtype).name}"


def check_compatible(saved: Mapping[str, Any], flat: Mapping[str, jax.Array],
                     where: str) -> None:
  """Raises a one-line ``ConfigError`` unless ``saved`` (name → shape/dtype
  metadata) has exactly the leaves, shapes and dtypes of ``flat``."""
  missing = sorted(set(flat) - set(saved))
  extra = sorted(set(saved) - set(flat))
  if missing or extra:
    parts = []
    if missing:
      parts.append(f"this model has {missing[0]!r}" + (f" (+{len(missing) - 1} more)"
                                                      if len(missing) > 1 else ""))
    if extra:
      parts.append(f"the checkpoint has {extra[0]!r}" + (f" (+{len(extra) - 1} more)"
                                                        if len(extra) > 1 else ""))
    raise ConfigError(f"checkpoint {where} was saved from a different model: "
                      f"{' and '.join(parts)} that the other lacks; use a new workdir "
                      "or move the checkpoint away to start over")
  for name, x in flat.items():
    meta = saved[name]
    if tuple(meta.shape) != tuple(x.shape) or np.dtype(meta.dtype) != np.dtype(x.dtype):
      raise ConfigError(
          f"checkpoint {where} does not fit this model: '{name}' is "
          f"{_describe_shape(meta.shape, meta.dtype)} there but "
          f"{_describe_shape(x.shape, x.dtype)} here; use a new workdir or move the "
          "checkpoint away to start over")


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


class Checkpoints:
  """The checkpoints of one training in ``directory`` (create it as needed).

  ``save(step, state, extra)`` starts an asynchronous save; ``restore_latest(template)``
  returns the newest good checkpoint as ``Restored`` (or ``None`` when there is
  none); ``close()`` waits for pending saves. Use it as a context manager.
  """

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    if keep < 1:
      raise ConfigError(f"checkpoint keep must be ≥ 1, got {keep}")
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=1, create=True,
        cleanup_tmp_directories=True, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def __enter__(self) -> Checkpoints:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def steps(self) -> list[int]:
    """Steps with a complete checkpoint, oldest first."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: PyTree, extra: Mapping[str, Any] | None = None) -> None:
    """Starts saving ``state`` and the JSON-able ``extra`` as step ``step``.

    Raises ``CheckpointError`` rather than overwrite an existing step.
    """
    step = int(step)
    if step in self.steps() or os.path.exists(os.path.join(self.directory, str(step))):
      raise CheckpointError(f"checkpoint step {step} already exists in {self.directory}; "
                            "refusing to overwrite it")
    flat, _ = flatten_state(state)
    meta = {"format": FORMAT_VERSION, "step": step, "fingerprints": fingerprints(flat),
            "extra": dict(extra or {})}
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)), force=True)
    if not saved:
      raise CheckpointError(f"orbax declined to save step {step} in {self.directory}")

  def _read(self, step: int, flat_template: Mapping[str, jax.Array]) -> tuple[dict, dict]:
    where = os.path.join(self.directory, str(step))
    metadata = self._manager.item_metadata(step)
    tree = getattr(metadata["state"], "tree", metadata["state"])
    if not isinstance(tree, Mapping):
      raise CheckpointError(f"no readable array metadata in {where}")
    check_compatible(tree, flat_template, where)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore({k: _abstract(v) for k, v in flat_template.items()}),
        meta=ocp.args.JsonRestore()))
    flat, meta = dict(restored["state"]), restored["meta"]
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT_VERSION:
      raise CheckpointError(f"{where} is not a jaxrep checkpoint (format {FORMAT_VERSION})")
    actual = fingerprints(flat)
    bad = sorted(k for k, v in meta["fingerprints"].items() if actual.get(k) != v)
    if bad:
      raise CheckpointError(f"array '{bad[0]}' does not match its saved fingerprint")
    return flat, dict(meta["extra"])

  def _set_aside(self, step: int, reason: str) -> None:
    source = os.path.join(self.directory, str(step))
    target = os.path.join(self.directory, f"corrupt-{step}")
    suffix = 1
    while os.path.exists(target):
      suffix += 1
      target = os.path.join(self.directory, f"corrupt-{step}-{suffix}")
    if jax.process_index() == 0:
      os.rename(source, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"jaxrep-checkpoint-set-aside-{step}")
    print(f"checkpoint step {step} in {self.directory} is unreadable ({reason}); "
          f"moved it to {os.path.basename(target)} and resumed from the previous one",
          flush=True)

  def restore_latest(self, template: PyTree) -> Restored | None:
    """The newest checkpoint that restores, as ``template``'s type and shardings.

    A newest checkpoint that fails while an older one restores is moved aside
    with a one-line report; ``ConfigError`` if the model does not fit;
    ``CheckpointError`` if no checkpoint restores.
    """
    steps = self.steps()
    if not steps:
      return None
    flat_template, _ = flatten_state(template)
    failures: list[tuple[int, str]] = []
    for step in reversed(steps):
      try:
        flat, extra = self._read(step, flat_template)
      except ConfigError:
        raise
      except Exception as error:  # orbax/tensorstore/json raise many types
        failures.append((step, _one_line(error)))
        continue
      for bad_step, reason in failures:
        self._set_aside(bad_step, reason)
      self._manager.reload()
      return Restored(step, _unflatten_state(flat, template), extra)
    newest, reason = failures[0]
    raise CheckpointError(f"no checkpoint in {self.directory} restores (newest, step "
                          f"{newest}: {reason}); move the folder away to start over")

  def read_start(self) -> dict | None:
    """The JSON record written when this training first started (``None`` if none)."""
    try:
      with open(os.path.join(self.directory, START_FILE)) as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def write_start(self, record: Mapping[str, Any]) -> None:
    """Records how things stood before step one (e.g. the metrics-file length), so
    a restart before the first checkpoint can undo the interrupted attempt."""
    if jax.process_index() == 0:
      path = os.path.join(self.directory, START_FILE)
      with open(path + ".tmp", "w") as f:
        json.dump(dict(record), f)
      os.replace(path + ".tmp", path)

  def wait(self) -> None:
    """Blocks until pending saves are written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


@contextlib.contextmanager
def sigterm_flag() -> Iterator[threading.Event]:
  """Within the block, SIGTERM sets the yielded event instead of ending the process.

  If the block ends normally after a SIGTERM it did not act on (by raising
  ``Preempted``), the signal is re-sent once the previous handler is back.
  Outside the main thread the event is never set (signals go to the main thread).
  """
  flag = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
  ended = "error"
  try:
    yield flag
    ended = "normally"
  except Preempted:
    ended = "preempted"
    raise
  finally:
    signal.signal(signal.SIGTERM, previous)
    if flag.is_set() and ended == "normally":
      os.kill(os.getpid(), signal.SIGTERM)


def last_good(manager: Checkpoints | None) -> str:
  """``'last good checkpoint: step 10 in DIR'`` (after pending saves), for error lines."""
  if manager is None:
    return "no checkpointing"
  manager.wait()
  last = manager.latest_step()
  if last is None:
    return f"no checkpoint saved yet in {manager.directory}"
  return f"last good checkpoint: step {last} in {manager.directory}"


def preempt(manager: Checkpoints, name: str, step: int) -> None:
  """After a SIGTERM save: waits for it, prints how to resume, raises ``Preempted``."""
  manager.wait()
  message = (f"{name}: SIGTERM: saved checkpoint step {step} in {manager.directory}; "
             "rerun the same command to resume")
  print(message, flush=True)
  raise Preempted(message)

