"""The 53 papers jaxrep reimplements, loaded from ``jaxrep/papers.toml``.

``papers.toml`` is the one source of truth for each paper's id, title, family,
claim, code location and claim checks. A paper's status and runtime come from
its committed record ``jaxrep/records/<id>.json`` (the trimmed ``results.json``
of its latest default-config run, written by ``jaxrep record``):

* "not started"     no experiment;
* "implemented"     an experiment, no record yet;
* "reproduced" / "failed" / "not comparable"   the recorded verdict
  (PASS / FAIL / NOT COMPARABLE: a gate check failed).

This module imports only the standard library (the CLI imports it before jax).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
from typing import Any, Mapping

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PAPERS_TOML = os.path.join(PACKAGE_DIR, "papers.toml")
RECORDS_DIR = os.path.join(PACKAGE_DIR, "records")

STATUSES = ("not started", "implemented", "reproduced", "failed", "not comparable")
FAMILIES = ("symmetry", "ssl", "shift", "causal", "probe", "diffusion", "compression",
            "editing", "theory", "generative")
OPS = ("<=", ">=", "<", ">")
AGGREGATES = ("mean", "median", "all")
SOURCES = ("paper", "ours")
ROLES = ("claim", "gate", "sanity")
VERDICT_STATUS = {"PASS": "reproduced", "FAIL": "failed", "NOT COMPARABLE": "not comparable"}


@dataclasses.dataclass(frozen=True)
class Check:
  """One threshold of a claim: ``aggregate(measured[measure]) op threshold``."""
  measure: str
  op: str
  threshold: float
  aggregate: str = "mean"
  source: str = "ours"
  role: str = "claim"
  note: str = ""

  def describe(self) -> str:
    """``'mean drop_tinvnn <= 1 (ours)'``."""
    return (f"{self.aggregate} {self.measure} {self.op} {self.threshold:g}"
            + (" (ours)" if self.source == "ours" else ""))


@dataclasses.dataclass(frozen=True)
class Paper:
  """One paper: identity, the claim under test and its checks, implementation state."""
  id: str
  title: str
  family: str
  claim: str
  module: str | None
  experiment: str | None
  status: str
  headline: tuple[str, ...] = ()
  checks: tuple[Check, ...] = ()
  runtime_s: float | None = None  # from the record: the last default run's runtime


class RegistryError(ValueError):
  """papers.toml or a record is malformed; the message names the paper."""


def _check(paper_id: str, table: Mapping[str, Any]) -> Check:
  unknown = set(table) - {f.name for f in dataclasses.fields(Check)}
  if unknown or "measure" not in table or "op" not in table or "threshold" not in table:
    raise RegistryError(f"{paper_id}: a check needs measure, op, threshold "
                        f"(unknown keys: {sorted(unknown)})")
  check = Check(measure=str(table["measure"]), op=table["op"],
                threshold=float(table["threshold"]),
                aggregate=table.get("aggregate", "mean"), source=table.get("source", "ours"),
                role=table.get("role", "claim"), note=table.get("note", ""))
  for field, allowed in (("op", OPS), ("aggregate", AGGREGATES), ("source", SOURCES),
                         ("role", ROLES)):
    if getattr(check, field) not in allowed:
      raise RegistryError(f"{paper_id}: check {check.measure}: {field} must be one of "
                          f"{', '.join(allowed)}, got {getattr(check, field)!r}")
  return check


def load_record(paper_id: str, records_dir: str = RECORDS_DIR) -> dict[str, Any] | None:
  """The committed record of a paper's latest default-config run, or None."""
  path = os.path.join(records_dir, f"{paper_id}.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    record = json.load(f)
  if record.get("verdict") not in VERDICT_STATUS:
    raise RegistryError(f"{path}: verdict must be one of {', '.join(VERDICT_STATUS)}")
  return record


def status_of(experiment: str | None, record: Mapping[str, Any] | None) -> str:
  """The status rule: no experiment, no record, else the recorded verdict."""
  if experiment is None:
    return "not started"
  if record is None:
    return "implemented"
  return VERDICT_STATUS[record["verdict"]]


def load_papers(papers_toml: str = PAPERS_TOML,
                records_dir: str = RECORDS_DIR) -> tuple[Paper, ...]:
  """Every paper of ``papers_toml``, with status and runtime from ``records_dir``."""
  with open(papers_toml, "rb") as f:
    tables = tomllib.load(f)["paper"]
  papers = []
  for table in tables:
    paper_id = table["id"]
    experiment = table.get("experiment")
    record = load_record(paper_id, records_dir) if experiment else None
    runtime = record.get("runtime_s") if record else None
    papers.append(Paper(
        id=paper_id, title=table["title"], family=table["family"], claim=table["claim"],
        module=table.get("module"), experiment=experiment,
        status=status_of(experiment, record),
        headline=tuple(table.get("headline", ())),
        checks=tuple(_check(paper_id, c) for c in table.get("checks", ())),
        runtime_s=None if runtime is None else float(runtime)))
  return tuple(papers)


PAPERS: tuple[Paper, ...] = load_papers()
_BY_ID: dict[str, Paper] = {p.id: p for p in PAPERS}
_BY_EXPERIMENT: dict[str, Paper] = {p.experiment: p for p in PAPERS if p.experiment}


def get(paper_id: str) -> Paper:
  """The paper with this id; KeyError (naming close matches) if there is none."""
  try:
    return _BY_ID[paper_id]
  except KeyError:
    raise KeyError(f"unknown paper id '{paper_id}'; {hint(paper_id)}") from None


def hint(paper_id: str) -> str:
  """'did you mean a, b?' for a mistyped id, else a pointer to `jaxrep list`."""
  close = difflib.get_close_matches(paper_id, list(_BY_ID), n=3)
  return f"did you mean {', '.join(close)}?" if close else "see `jaxrep list`"


def by_experiment(name: str) -> Paper | None:
  """The paper whose experiment module is ``experiments.<name>``, or None."""
  return _BY_EXPERIMENT.get(name)


def threshold(paper_id: str, measure: str, op: str | None = None) -> float:
  """The threshold of ``paper_id``'s check on ``measure`` (e.g. for a figure's line).

  ``op`` picks one when several checks share the measure (a two-sided band).
  KeyError, naming the paper's checked measures, when there is no such check.
  """
  matches = [c for c in get(paper_id).checks
             if c.measure == measure and (op is None or c.op == op)]
  if len(matches) == 1:
    return matches[0].threshold
  if not matches:
    known = ", ".join(dict.fromkeys(c.measure for c in get(paper_id).checks)) or "none"
    raise KeyError(f"paper '{paper_id}' has no check on '{measure}'"
                   + (f" with op '{op}'" if op else "") + f" (its checked measures: {known})")
  raise KeyError(f"paper '{paper_id}' has {len(matches)} checks on '{measure}' "
                 f"({', '.join(c.op for c in matches)}); pass op= to pick one")


def record(paper_id: str) -> dict[str, Any] | None:
  """The committed record of ``paper_id`` (see ``load_record``)."""
  return load_record(paper_id)
