"""Exclusive claims on run folders in a shared directory, so no run runs twice.

A process runs a run only after claiming it: it creates
``<run>/sweep_claim.json`` (host, pid, time, worker) with
``os.open(O_CREAT | O_EXCL)``, which succeeds for one process only (also on NFS
v3+), and removes it when the run ends (also on an error, Ctrl-C or SIGTERM).
A claim left by a process that died (SIGKILL, a crashed node) is stale: one of
a dead pid on this host is taken over by the one process that creates
``sweep_claim.json.takeover-<pid>-<time>`` exclusively; one from another host is
never guessed dead: delete the file (a run with a claim and no ``results.json``
whose process is gone). So concurrent workers, overlapping relaunches and a
plain sweep over the same folder never run one run twice. Imports no jax.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from typing import Any, Mapping

from jaxrep.core import results as results_lib
from jaxrep.core.run_state import read_json

CLAIM_FILE = "sweep_claim.json"


def claimant(worker_label: str) -> dict[str, Any]:
  """This process as a claim names it: host, pid, UTC time and worker label."""
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "worker": worker_label}


def _create_exclusive(path: str, payload: Mapping[str, Any]) -> bool:
  """Creates ``path`` holding ``payload``; False if it exists (atomic: O_EXCL)."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    json.dump(dict(payload), f)
  return True


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OverflowError, ValueError):
    return True  # exists (another user's) or not a pid we can judge
  return True


def _is_mine(holder: Any) -> bool:
  return (isinstance(holder, dict) and holder.get("pid") == os.getpid()
          and holder.get("host") == socket.gethostname())


def claim_holder(workdir: str) -> dict | None:
  """Who claimed the run (``sweep_claim.json``), or None."""
  path = os.path.join(workdir, CLAIM_FILE)
  holder = read_json(path)
  if holder is None and os.path.exists(path):
    return {"host": "?", "pid": None, "time": None, "worker": "?"}  # being written
  return holder


def is_stale(holder: Mapping[str, Any]) -> bool:
  """A claim of a dead process on this host (never guessed for other hosts)."""
  return (holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int)
          and holder["pid"] != os.getpid() and not _pid_alive(holder["pid"]))


def claim_run(workdir: str, worker_label: str = "") -> bool:
  """True if this process now holds the run's claim: created it, found it
  released meanwhile, or took over a stale one."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CLAIM_FILE)
  me = claimant(worker_label)
  if _create_exclusive(path, me):
    return True
  holder = claim_holder(workdir)
  if holder is None:  # released meanwhile: try once more
    return _create_exclusive(path, me)
  if not is_stale(holder):
    return False
  stamp = re.sub(r"[^0-9A-Za-z]", "", str(holder.get("time")))
  if not _create_exclusive(f"{path}.takeover-{holder['pid']}-{stamp}", me):
    return False  # another process took it over first
  results_lib.write_json_atomic(path, me)
  return True


def release_claim(workdir: str) -> None:
  """Removes this process's claim (a no-op when it holds none). Takeover markers
  stay: a process that read the stale claim long ago must not take it over again."""
  path = os.path.join(workdir, CLAIM_FILE)
  if _is_mine(read_json(path)):
    with contextlib.suppress(OSError):
      os.remove(path)
