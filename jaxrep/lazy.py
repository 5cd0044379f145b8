"""Lazy package exports (PEP 562): a name loads its submodule on first use.

A package whose submodules import jax but whose users may only need a jax-free
part (the CLI reads ``jaxrep.core.config``; sweeps read ``jaxrep.shift.hparams``)
lists its exports as ``{name: submodule}`` and binds::

    __getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, globals())
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def exports(package: str, names: Mapping[str, str], namespace: dict[str, Any]
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
  """The module-level ``__getattr__`` and ``__dir__`` of ``package``: ``names[name]``
  is the submodule that defines ``name``; a loaded name is cached in ``namespace``."""

  def __getattr__(name: str) -> Any:
    if name in names:
      value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
      namespace[name] = value
      return value
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def __dir__() -> list[str]:
    return sorted(set(namespace) | set(names))

  return __getattr__, __dir__
