"""The `jaxrep` command contract and bad-input handling (one line, fast, before compiling)."""
import json
import os
import subprocess
import sys
import time

import pytest

from jaxrep import cli, registry

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def jaxrep(*args, timeout=120):
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", "jaxrep.cli", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout)
  return result, time.perf_counter() - start


def test_list_json_contract():
  result, _ = jaxrep("list", "--json")
  assert result.returncode == 0
  papers = json.loads(result.stdout)
  assert len(papers) == len(registry.PAPERS) == 53
  assert {"id", "title", "family", "status"} <= set(papers[0])


@pytest.mark.parametrize("args, fragment", [
    (("run", "locality_dsx", "--workdir", "W"), "did you mean locality_dsd"),
    (("run", "locality_dsd", "--workdir", "W", "--config.nope=1"), "unknown config key 'nope'"),
    (("run", "locality_dsd", "--workdir", "W", "--config.num_seeds=two"), "expects int"),
    (("run", "locality_dsd", "--workdir", "W", "--config.num_seeds=0"), "must be positive"),
    (("run", "locality_dsd", "--workdir", "W", "--config.n_max=-5"), "must be positive"),
])
def test_bad_input_fails_fast_in_one_line(tmp_path, args, fragment):
  args = tuple(str(tmp_path / "w") if a == "W" else a for a in args)
  result, _ = jaxrep(*args)
  assert result.returncode == 2
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and fragment in lines[0], result.stderr
  assert not (tmp_path / "w" / "results.json").exists()


@pytest.mark.parametrize("override", ["--config.ks=3,0", "--config.margin=-1",
                                      "--config.n_min=999999"])
def test_bad_config_is_rejected_in_under_a_second(tmp_path, capsys, override):
  cli.load_experiment("locality_dsd")  # module import is not part of the check
  start = time.perf_counter()
  code = cli.main(["run", "locality_dsd", "--workdir", str(tmp_path / "w"), override])
  assert code == 2 and time.perf_counter() - start < 1.0
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


def test_budget_selection_respects_budget():
  ids = cli.implemented_ids()
  chosen = cli.select_within_budget(ids, 10**9)
  assert chosen[0] == cli.MAIN_PAPER and sorted(chosen) == sorted(ids)
  assert cli.select_within_budget(ids, 0.0) == []
  default = cli.select_within_budget(ids, cli.DEFAULT_BUDGET_S)
  assert default[0] == cli.MAIN_PAPER
  assert sum(cli.load_experiment(i).runtime_s for i in default) <= cli.DEFAULT_BUDGET_S


def test_scoreboard_is_rebuilt_from_results_on_disk(tmp_path, capsys):
  from jaxrep.core import results
  for paper_id, passed, values in (("pac_invariance", True, [0.5, 0.7]),
                                   ("tinvnn", False, [2.0, 4.0])):
    payload = results.results_payload(
        paper_id=paper_id, claim="a claim", passed=passed, measured={"metric": values},
        seeds=[0, 1], runtime_s=3.0, config={}, quick=False)
    os.makedirs(tmp_path / paper_id)
    results.write_json_atomic(str(tmp_path / paper_id / "results.json"), payload)
  assert cli.main(["scoreboard", "--out", str(tmp_path)]) == 0
  rows = {r["paper_id"]: r for r in json.loads((tmp_path / "scoreboard.json").read_text())}
  assert rows["pac_invariance"]["verdict"] == "PASS" and rows["tinvnn"]["verdict"] == "FAIL"
  assert rows["tinvnn"]["measured"]["metric"]["mean"] == pytest.approx(3.0)
  assert "metric = 3 ± 1 (n=2)" in (tmp_path / "SCOREBOARD.md").read_text()
  capsys.readouterr()
  assert cli.main(["scoreboard", "--out", str(tmp_path / "empty")]) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
