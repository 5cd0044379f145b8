"""Experiment configs: ``--config.KEY=VALUE`` overrides, checked before any work.

Every error is a ``ConfigError`` with a one-line message that says what is
wrong and how to fix it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from typing import Any, Iterable

import ml_collections

POSITIVE_KEY = re.compile(
    r"(^|_)(num|n)_|_size$|_steps$|^steps$|^epochs$|_epochs$|^width$|_width$|"
    r"_samples$|^samples$|^batch|(^|_)sizes$|^ks$|^ds$")


class ConfigError(ValueError):
  """A config that cannot work; the message is one line."""


def _parse_scalar(text: str, like: Any, key: str) -> Any:
  kind = type(like)
  try:
    if kind is bool:
      lowered = text.strip().lower()
      if lowered in ("true", "1", "yes"):
        return True
      if lowered in ("false", "0", "no"):
        return False
      raise ValueError
    if kind is int:
      return int(text)
    if kind is float:
      return float(text)
    if kind is str:
      return text
    if like is None:
      return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    pass
  raise ConfigError(f"config key '{key}' expects {kind.__name__}, got {text!r}")


def parse_value(text: str, like: Any, key: str) -> Any:
  """Parses ``text`` as the type of the default ``like``.

  Tuples and lists take comma-separated items (``--config.ks=4,8,16``), each
  parsed as the type of the default's first item.
  """
  if isinstance(like, (tuple, list)):
    items = [t for t in text.strip("()[] ").split(",") if t.strip()]
    item_like = like[0] if like else None
    return type(like)(_parse_scalar(t.strip(), item_like, key) for t in items)
  return _parse_scalar(text, like, key)


def flat_items(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """``{'a.b': value}`` for every leaf."""
  items = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      items.update(flat_items(value, name + "."))
    else:
      items[name] = value
  return items


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str],
                    name: str = "experiment") -> ml_collections.ConfigDict:
  """Returns a copy of ``config`` with ``KEY=VALUE`` overrides applied."""
  config = ml_collections.ConfigDict(config.to_dict())
  leaves = flat_items(config)
  for override in overrides:
    if "=" not in override:
      raise ConfigError(f"config override {override!r} must look like KEY=VALUE")
    key, text = override.split("=", 1)
    key = key.removeprefix("--config.").removeprefix("config.")
    if key not in leaves:
      raise ConfigError(f"unknown config key '{key}' for {name}; "
                        f"valid keys: {', '.join(sorted(leaves))}")
    value = parse_value(text, leaves[key], key)
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    with node.unlocked():
      node[leaf] = value
  return config


def check_positive_sizes(config: ml_collections.ConfigDict) -> None:
  """Sizes, counts and step numbers (by key name) must be positive."""
  for key, value in flat_items(config).items():
    leaf = key.split(".")[-1]
    if not POSITIVE_KEY.search(leaf):
      continue
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
        raise ConfigError(f"config key '{key}' must be positive, got {value!r}")


def config_hash(config: ml_collections.ConfigDict | dict) -> str:
  """A stable short hash of a config's contents."""
  as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  text = json.dumps(as_dict, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:12]
