"""A paper id to its registry entry, experiment and config, checked before jax loads.

A paper's ``get_config``/``quick``/``validate`` live in the jax-free
``experiments.configs.<experiment>`` module, or, for a paper not migrated to it
yet, on the experiment's ``EXPERIMENT`` (importing the experiment, and jax).
Unknown ids and papers without an experiment are ``UsageError``s with close
matches.
"""
from __future__ import annotations

import importlib
import importlib.util
import types
from typing import Any, Sequence

from jaxrep import registry
from jaxrep.commands.usage import UsageError


def paper_for(paper_id: str) -> registry.Paper:
  """The registry entry; UsageError with close matches for an unknown id."""
  try:
    return registry.get(paper_id)
  except KeyError:
    raise UsageError(f"unknown paper id '{paper_id}'; {registry.hint(paper_id)}") from None


def started_paper(paper_id: str) -> registry.Paper:
  """The registry entry of a paper that has an experiment module."""
  paper = paper_for(paper_id)
  if paper.experiment is None:
    raise UsageError(f"paper '{paper_id}' has no experiment yet (status: {paper.status})")
  return paper


def is_registered(paper_id: str) -> bool:
  return paper_id in {p.id for p in registry.PAPERS}


def _module_exists(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except ModuleNotFoundError:  # a parent package is missing
    return False


def implemented_ids() -> list[str]:
  """Papers whose experiment module exists, in registry order."""
  return [p.id for p in registry.PAPERS
          if p.experiment is not None and _module_exists(f"experiments.{p.experiment}")]


def load_experiment(paper_id: str) -> Any:
  """The ``EXPERIMENT`` object of a paper's experiment module (imports jax)."""
  paper = started_paper(paper_id)
  return importlib.import_module(f"experiments.{paper.experiment}").EXPERIMENT


def config_source(paper: registry.Paper) -> Any:
  """What plans and checks the paper's config: an object with ``paper_id``,
  ``get_config``, ``quick`` and ``validate``: its ``experiments/configs`` module
  so wrapped (no jax), or else its ``EXPERIMENT``."""
  name = f"experiments.configs.{paper.experiment}"
  if not _module_exists(name):
    return load_experiment(paper.id)
  module = importlib.import_module(name)
  return types.SimpleNamespace(paper_id=paper.id, get_config=module.get_config,
                               quick=module.quick, validate=getattr(module, "validate", None))


def check_config(paper: registry.Paper, *, quick: bool = False,
                 overrides: Sequence[str] = ()):
  """The run's config, built and checked as ``experiment.build_config`` does
  (ConfigError, one line, on a bad key, type or value)."""
  from jaxrep.core import sweep_plan  # ml_collections: not needed by `list`
  return sweep_plan.build_config(config_source(paper), quick=quick, overrides=overrides)


def sweep_source(paper_id: str) -> Any:
  """What a sweep plans with: a registered paper's ``config_source``, else the
  experiment ``load_experiment`` gives."""
  if is_registered(paper_id):
    return config_source(started_paper(paper_id))
  return load_experiment(paper_id)
