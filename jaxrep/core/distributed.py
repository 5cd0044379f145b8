"""Multi-host runs: one process per host, started from the environment.

Every process runs the same entrypoint. ``initialize_from_env()`` calls
``jax.distributed.initialize`` when the environment describes several processes:

* explicitly: ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``;
* or a cluster JAX detects itself: a Cloud TPU pod slice (``TPU_WORKER_HOSTNAMES``
  lists several hosts), SLURM (``SLURM_NTASKS`` > 1), Open MPI
  (``OMPI_COMM_WORLD_SIZE`` > 1) or ``JAX_DISTRIBUTED=auto`` for any other cluster
  JAX recognises;
* otherwise it does nothing (one process).

On CPU-only processes the cross-process collectives use gloo
(``jax_cpu_collectives_implementation='gloo'``). Each process then loads only
its shard of the data (``process_batch_slice``) and ``global_batch_from_local``
assembles the global batch with ``jax.make_array_from_process_local_data``. Only
the main process (``is_main_process()``) writes logs and figures (the jaxrep
logger and harness already check ``jax.process_index()``); checkpoints are written
by every process together.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrep.core.config import ConfigError

PyTree = Any
_INITIALIZED = False


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
  process_id: int
  num_processes: int
  coordinator_address: str | None


def _int_env(env: Mapping[str, str], name: str) -> int:
  try:
    return int(env[name])
  except KeyError:
    raise ConfigError(f"JAX_COORDINATOR_ADDRESS is set but {name} is missing") from None
  except ValueError:
    raise ConfigError(f"{name} must be an integer, got {env[name]!r}") from None


def _cluster_detected(env: Mapping[str, str]) -> bool:
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
  return (len(hosts) > 1 or int(env.get("SLURM_NTASKS", "1") or 1) > 1
          or int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1
          or env.get("JAX_DISTRIBUTED", "").lower() == "auto")


def process_info_from_env(env: Mapping[str, str] | None = None) -> ProcessInfo | None:
  """The explicit (address, count, id) from the environment; None if not given.

  Raises ``ConfigError`` (one line) for an incomplete or inconsistent setting.
  """
  env = os.environ if env is None else env
  address = env.get("JAX_COORDINATOR_ADDRESS")
  if not address:
    return None
  num_processes = _int_env(env, "JAX_NUM_PROCESSES")
  process_id = _int_env(env, "JAX_PROCESS_ID")
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ConfigError(f"JAX_PROCESS_ID={process_id} must be in [0, JAX_NUM_PROCESSES="
                      f"{num_processes})")
  return ProcessInfo(process_id, num_processes, address)


def _uses_cpu_only() -> bool:
  platforms = os.environ.get("JAX_PLATFORMS", jax.config.jax_platforms or "")
  return platforms.strip().lower() == "cpu"


def initialize_from_env(env: Mapping[str, str] | None = None) -> ProcessInfo:
  """Joins the multi-process job the environment describes (no-op for one process).

  Must run before anything else touches JAX devices. Returns this process's id
  and the process count.
  """
  global _INITIALIZED
  env = os.environ if env is None else env
  info = process_info_from_env(env)
  if not _INITIALIZED and (info is not None and info.num_processes > 1
                           or info is None and _cluster_detected(env)):
    if _uses_cpu_only():
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if info is not None:
      jax.distributed.initialize(coordinator_address=info.coordinator_address,
                                 num_processes=info.num_processes,
                                 process_id=info.process_id)
    else:
      jax.distributed.initialize()
    _INITIALIZED = True
  return ProcessInfo(jax.process_index(), jax.process_count(),
                     info.coordinator_address if info else None)


def is_main_process() -> bool:
  """True on process 0: the one that writes logs, figures and results."""
  return jax.process_index() == 0


def process_batch_slice(global_batch_size: int) -> slice:
  """This process's rows of a global batch (contiguous, in process order)."""
  count, index = jax.process_count(), jax.process_index()
  if global_batch_size % count:
    raise ConfigError(f"global batch {global_batch_size} is not divisible by the "
                      f"{count} processes")
  local = global_batch_size // count
  return slice(index * local, (index + 1) * local)


def global_batch_from_local(local_batch: PyTree, mesh: Mesh, axis: str = "data") -> PyTree:
  """Global arrays, leading axis split over ``axis``, from each process's rows.

  Every process passes its own (B/num_processes, ...) part; the result is one
  (B, ...) global array per leaf (``jax.make_array_from_process_local_data``).
  """
  sharding = NamedSharding(mesh, P(axis))
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)
