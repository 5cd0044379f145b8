"""papers.toml matches the scraped paper list; checks, records and status rules are consistent."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrep import registry

ROOT = Path(__file__).resolve().parents[1]
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
  assert len(set(ids)) == len(ids) == 53
  for paper_id in ids:
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", paper_id), paper_id


def test_statuses_and_families_are_known():
  assert set(registry.STATUSES) == {"not started", "implemented", "reproduced", "failed",
                                    "not comparable"}
  for p in registry.PAPERS:
    assert p.status in registry.STATUSES, (p.id, p.status)
    assert p.family in FAMILIES, (p.id, p.family)
    assert p.claim.strip() and "\n" not in p.claim, p.id


def test_started_papers_name_module_experiment_headline_and_checks():
  for p in registry.PAPERS:
    if p.experiment is None:
      assert p.status == "not started" and p.module is None, p.id
      assert not p.checks and not p.headline, p.id
      continue
    assert p.module and p.module.startswith("jaxrep."), p.id
    assert (ROOT / (p.module.replace(".", "/") + ".py")).is_file(), p.module
    assert (ROOT / "experiments" / f"{p.experiment}.py").is_file(), p.experiment
    assert registry.by_experiment(p.experiment) is p
    assert p.headline, p.id
    claims = [c for c in p.checks if c.role == "claim"]
    assert claims, f"{p.id} has no claim check"
    for c in p.checks:
      assert c.op in registry.OPS and c.aggregate in registry.AGGREGATES
      assert c.source in registry.SOURCES and c.role in registry.ROLES
      assert re.fullmatch(r"[A-Za-z0-9_.]+", c.measure), (p.id, c.measure)


def _claim_constant(path: Path) -> str | None:
  if not path.is_file():
    return None
  for node in ast.parse(path.read_text(encoding="utf-8")).body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and getattr(node.targets[0], "id", None) == "CLAIM"):
      return ast.literal_eval(node.value)
  return None


def test_claim_text_matches_the_experiments_claim_constant():
  for p in registry.PAPERS:
    if p.experiment is None:
      continue
    for path in (ROOT / "experiments" / f"{p.experiment}.py",
                 ROOT / "experiments" / "configs" / f"{p.experiment}.py"):
      constant = _claim_constant(path)
      if constant is not None:
        assert constant == p.claim, f"{path}: CLAIM differs from papers.toml"


def test_committed_records_name_started_papers():
  names = sorted(os.listdir(registry.RECORDS_DIR))
  assert names, "no records"
  for name in names:
    assert name.endswith(".json"), name
    paper = registry.get(name.removesuffix(".json"))
    record = registry.load_record(paper.id)
    assert paper.experiment and record["paper_id"] == paper.id
    assert record["verdict"] in registry.VERDICT_STATUS and record["quick"] is False
    assert record["runtime_s"] > 0 and record["date"] and record["machine"]
    assert record["source"]
    assert paper.runtime_s == record["runtime_s"]
    assert paper.status == registry.VERDICT_STATUS[record["verdict"]]


def test_status_rules(tmp_path):
  assert registry.status_of(None, None) == "not started"
  assert registry.status_of("x", None) == "implemented"
  for verdict, status in (("PASS", "reproduced"), ("FAIL", "failed"),
                          ("NOT COMPARABLE", "not comparable")):
    assert registry.status_of("x", {"verdict": verdict}) == status
  (tmp_path / "tinvnn.json").write_text(json.dumps(
      {"paper_id": "tinvnn", "verdict": "NOT COMPARABLE", "runtime_s": 12.5}))
  papers = {p.id: p for p in registry.load_papers(records_dir=str(tmp_path))}
  assert papers["tinvnn"].status == "not comparable" and papers["tinvnn"].runtime_s == 12.5
  assert papers["locality_dsd"].status == "implemented"
  assert papers["locality_dsd"].runtime_s is None
  assert papers["pv_tuning"].status == "not started"


def test_malformed_checks_are_rejected(tmp_path):
  toml = tmp_path / "papers.toml"
  toml.write_text('[[paper]]\nid = "p"\ntitle = "T"\nfamily = "probe"\nclaim = "c"\n'
                  'module = "jaxrep.m"\nexperiment = "p"\n\n[[paper.checks]]\n'
                  'measure = "x"\nop = "=="\nthreshold = 1\n')
  with pytest.raises(registry.RegistryError, match="op must be one of"):
    registry.load_papers(str(toml), str(tmp_path))


def test_registry_imports_only_the_standard_library():
  code = ("import sys; before = set(sys.modules); import jaxrep.registry; "
          "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}"
          " - set(sys.stdlib_module_names) - {'jaxrep'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]", out.stdout


def test_lookup():
  assert registry.get("locality_dsd").experiment == "locality_dsd"
  assert registry.by_experiment("no_such_experiment") is None
  with pytest.raises(KeyError) as excinfo:
    registry.get("locality_dsx")
  message = str(excinfo.value)
  assert "locality_dsd" in message and "\n" not in message


def test_threshold():
  assert registry.threshold("dsimplex_compatibility", "ac_dsimplex") == 0.9
  assert registry.threshold("rich_representations", "in_distribution_gain", op="<=") == 0.01
  with pytest.raises(KeyError, match="pass op= to pick one"):
    registry.threshold("rich_representations", "in_distribution_gain")
  with pytest.raises(KeyError, match="no check on 'no_such_measure'.*ac_dsimplex"):
    registry.threshold("dsimplex_compatibility", "no_such_measure")
  with pytest.raises(KeyError, match="unknown paper id"):
    registry.threshold("no_such_paper", "ac_dsimplex")


def test_version_matches_pyproject():
  import tomllib
  from pathlib import Path
  import jaxrep
  project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
  assert jaxrep.__version__ == project["project"]["version"]
