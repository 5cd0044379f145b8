"""Bad command input: the one-line ``UsageError`` (exit status 2) and the output-folder check."""
from __future__ import annotations

import os


class UsageError(Exception):
  """A one-line message for the user; exit status 2."""


def check_output_dir(path: str, flag: str) -> None:
  """A directory we can create or write into; UsageError (one line) otherwise."""
  if not path:
    raise UsageError(f"{flag} must name a directory")
  full = os.path.abspath(path)
  if os.path.exists(full) and not os.path.isdir(full):
    raise UsageError(f"{flag} {path} is a file, not a directory")
  existing = full
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UsageError(f"{flag} {path}: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UsageError(f"{flag} {path}: {existing} is not writable")
