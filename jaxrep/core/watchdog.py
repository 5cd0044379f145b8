"""Stack dumps for runs that crash or hang, so a stuck run says where it is.

``enable_stack_dumps()`` is called first thing by ``jaxrep`` and by every
``python -m experiments.NAME``. It turns on :mod:`faulthandler`:

* a fatal signal (SIGSEGV, SIGABRT, ...) prints every Python thread's stack;
* ``kill -USR1 PID`` prints every Python thread's stack and the run goes on;
* ``JAXREP_HANG_DUMP_S=N`` prints them every N seconds (a run that sits at
  0% CPU shows the same frames each time).

These are Python frames: a hang inside XLA shows the Python line that waits
(e.g. ``block_until_ready``). For the native threads of a stuck process use
``gdb -p PID -batch -ex 'thread apply all bt'`` or ``py-spy dump --native --pid PID``.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys

HANG_DUMP_ENV = "JAXREP_HANG_DUMP_S"


def enable_stack_dumps() -> None:
  """Fatal errors, SIGUSR1 and (with ``JAXREP_HANG_DUMP_S`` > 0) a periodic timer
  print all thread stacks to stderr. Idempotent; keeps a faulthandler that is
  already on (e.g. pytest's); does nothing where stderr has no file descriptor;
  a value of the variable that is not a number is reported and ignored."""
  stream = sys.__stderr__
  try:
    stream.fileno()
  except (AttributeError, OSError, ValueError):
    return
  if not faulthandler.is_enabled():
    faulthandler.enable(file=stream, all_threads=True)
  if hasattr(signal, "SIGUSR1") and hasattr(faulthandler, "register"):
    faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True)
  every = os.environ.get(HANG_DUMP_ENV, "").strip()
  if every:
    try:
      seconds = float(every)
    except ValueError:
      print(f"jaxrep: warning: ignoring {HANG_DUMP_ENV}={every!r} (not a number of seconds)",
            file=stream)
      return
    if seconds > 0:
      faulthandler.dump_traceback_later(seconds, repeat=True, file=stream)
