"""The paper registry matches the scraped paper list and is internally consistent."""
import os
import re
from pathlib import Path

import pytest

from jaxrep import registry

FAMILIES = {"symmetry", "ssl", "shift", "causal", "probe", "diffusion", "compression",
            "editing", "theory", "generative"}


def seed_titles() -> list[str]:
  """Titles from papers.txt: the lines at 1-based numbers 11, 15, ..., 219."""
  default = Path(__file__).resolve().parents[2] / "shared/seeds/papers.txt"
  path = Path(os.environ.get("JAXREP_PAPERS_TXT", default))
  if not path.is_file():
    pytest.skip(f"papers.txt not found at {path} (set JAXREP_PAPERS_TXT)")
  lines = path.read_text(encoding="utf-8").splitlines()
  return [lines[i - 1] for i in range(11, 220, 4)]


def test_titles_match_seed_file_in_order():
  titles = seed_titles()
  assert len(titles) == 53
  assert [p.title for p in registry.PAPERS] == titles


def test_ids_unique_and_snake_case():
  ids = [p.id for p in registry.PAPERS]
  assert len(set(ids)) == len(ids)
  for paper_id in ids:
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", paper_id), paper_id


def test_statuses_and_families_are_known():
  assert set(registry.STATUSES) == {"not started", "implemented", "reproduced", "failed"}
  for p in registry.PAPERS:
    assert p.status in registry.STATUSES, (p.id, p.status)
    assert p.family in FAMILIES, (p.id, p.family)
    assert p.claim.strip() and "\n" not in p.claim, p.id


def test_started_papers_name_module_and_experiment():
  for p in registry.PAPERS:
    if p.status == "not started":
      assert p.module is None and p.experiment is None, p.id
    else:
      assert p.module and p.module.startswith("jaxrep."), p.id
      assert p.experiment, p.id
      assert registry.by_experiment(p.experiment) is p


def test_lookup():
  assert registry.get("locality_dsd").experiment == "locality_dsd"
  assert registry.by_experiment("no_such_experiment") is None
  with pytest.raises(KeyError) as excinfo:
    registry.get("locality_dsx")
  message = str(excinfo.value)
  assert "locality_dsd" in message and "\n" not in message
