"""The `jaxrep` command contract: list and bad input answered at once (one line, exit 2,
no jax), records, the scoreboard, and reproduce's budget at this machine's speed."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxrep import cli, registry
from jaxrep.commands import budget, reproduce
from jaxrep.commands import papers as papers_lib

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
ROOT = Path(__file__).resolve().parents[1]
FAST_S = 2.5  # the goal is < 1 s; CI machines are shared and slower
# Runs cli.main in a fresh interpreter and reports whether jax got imported.
WRAPPER = ("import sys; from jaxrep import cli; code = cli.main(sys.argv[1:]); "
           "print('jax imported' if 'jax' in sys.modules else 'jax-free'); sys.exit(code)")


def jaxrep(*args, timeout=120):
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=ROOT)
  return result, time.perf_counter() - start


def migrated_paper() -> str | None:
  """A paper whose get_config/quick/validate live in the jax-free experiments/configs."""
  for p in registry.PAPERS:
    if p.experiment and (ROOT / "experiments" / "configs" / f"{p.experiment}.py").is_file():
      return p.id
  return None


def test_list_json_contract():
  result = subprocess.run([sys.executable, "-m", "jaxrep.cli", "list", "--json"],
                          capture_output=True, text=True, env=ENV, timeout=60)
  assert result.returncode == 0
  papers = json.loads(result.stdout)
  assert len(papers) == len(registry.PAPERS) == 53
  assert {"id", "title", "family", "status", "runtime_s", "checks"} <= set(papers[0])
  assert {p["status"] for p in papers} <= set(registry.STATUSES)


def test_list_imports_no_jax_and_answers_at_once():
  result, wall = jaxrep("list")
  assert result.returncode == 0 and len(result.stdout.splitlines()) == 53 + 1
  assert result.stdout.splitlines()[-1] == "jax-free"
  assert wall < FAST_S, wall


MIGRATED = migrated_paper()
CONFIG_CASES = [
    (("--config.nope=1",), "unknown config key 'nope'"),
    (("--config.num_seeds=two",), "expects int"),
    (("--config.num_seeds=0",), "must be positive"),
]
BAD_INPUT = [
    (("run", "locality_dsx", "--workdir", "W"), "did you mean locality_dsd"),
    (("run", "kd3", "--workdir", "W"), "has no experiment yet"),
    (("run", "tinvnn", "--workdir", "W", "--seed", "-1"), "must be a non-negative integer"),
    (("run", "tinvnn", "--workdir", "FILE"), "is a file, not a directory"),
    (("run", "tinvnn", "--workdir", "FILE/sub"), "is a file, not a directory"),
    (("run", "tinvnn", "--workdir", "W", "--bogus"), "unrecognized arguments: --bogus"),
    (("reproduce", "--out", "FILE"), "is a file, not a directory"),
    (("reproduce", "tinvnx", "--out", "W"), "did you mean tinvnn"),
    (("scoreboard", "--out", "W", "--config.a=1"), "takes no --config overrides"),
    (("record", "W"), "is not a directory"),
    (("frobnicate",), "invalid choice"),
] + [(("run", MIGRATED or "SKIP", "--workdir", "W") + extra, fragment)
     for extra, fragment in CONFIG_CASES]


@pytest.mark.parametrize("args, fragment", BAD_INPUT,
                         ids=[" ".join(x for x in a if x not in ("W", "--workdir"))
                              for a, _ in BAD_INPUT])
def test_bad_input_answered_at_once_in_one_line_without_jax(tmp_path, args, fragment):
  if "SKIP" in args:
    pytest.skip("no paper has a jax-free experiments/configs module yet")
  (tmp_path / "file").write_text("x")
  args = tuple(a.replace("FILE", str(tmp_path / "file")).replace("W", str(tmp_path / "w"))
               if a in ("W", "FILE", "FILE/sub") else a for a in args)
  result, wall = jaxrep(*args)
  assert result.returncode == 2, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("jaxrep: error:"), result.stderr
  assert fragment in lines[0], lines[0]
  assert result.stdout.splitlines()[-1] == "jax-free"
  assert wall < FAST_S, wall
  assert not (tmp_path / "w").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only directories")
def test_unwritable_workdir_is_rejected(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  try:
    result, wall = jaxrep("run", "tinvnn", "--workdir", str(locked / "w"))
  finally:
    locked.chmod(0o700)
  assert result.returncode == 2 and "is not writable" in result.stderr
  assert wall < FAST_S


@pytest.mark.parametrize("override", ["--config.ks=3,0", "--config.margin=-1",
                                      "--config.n_min=999999"])
def test_bad_config_is_rejected_in_under_a_second(tmp_path, capsys, override):
  papers_lib.check_config(registry.get("locality_dsd"))  # module import is not part of the check
  start = time.perf_counter()
  code = cli.main(["run", "locality_dsd", "--workdir", str(tmp_path / "w"), override])
  assert code == 2 and time.perf_counter() - start < 1.0
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


def _payload(paper_id, *, quick=False, config=None, drop=0.5, runtime_s=3.0):
  from jaxrep.core import claims, results
  paper = registry.get(paper_id)
  measured = {"drop_tinvnn": [drop, drop], "drop_pointnet": [40.0, 50.0],
              "acc_transformed_tinvnn_minus_aug": [1.0, -1.0], "metric": [0.5, 0.7]}
  evaluation = claims.evaluate(paper.checks, measured, quick=quick) if paper.checks else None
  return results.results_payload(
      paper_id=paper_id, claim=paper.claim, passed=None, measured=measured, seeds=[0, 1],
      runtime_s=runtime_s, config=config or {}, quick=quick, evaluation=evaluation,
      headline=("metric",))


def _write(runs: Path, paper_id: str, payload) -> None:
  from jaxrep.core import results
  results.write_json_atomic(str(runs / paper_id / "results.json"), payload)


def test_scoreboard_is_rebuilt_from_results_on_disk(tmp_path, capsys):
  from jaxrep.core import results
  _write(tmp_path, "tinvnn", _payload("tinvnn", drop=3.0))
  _write(tmp_path, "pac_invariance", results.results_payload(
      paper_id="pac_invariance", claim="a claim", passed=True, measured={"metric": [0.5, 0.7]},
      seeds=[0, 1], runtime_s=3.0, config={}, quick=False))
  assert cli.main(["scoreboard", "--out", str(tmp_path)]) == 0
  rows = {r["paper_id"]: r for r in json.loads((tmp_path / "scoreboard.json").read_text())}
  assert rows["pac_invariance"]["verdict"] == "PASS" and rows["tinvnn"]["verdict"] == "FAIL"
  assert rows["tinvnn"]["seeds_holding"] == {"k": 0, "n": 2}
  board = (tmp_path / "SCOREBOARD.md").read_text()
  assert "metric = 0.6 ± 0.1 (n=2)" in board
  assert "drop_tinvnn 3 ± 0 ≤ 1 (ours): fails, margin -2, 0/2 seeds" in board
  assert "drop_pointnet 45 ± 5 ≥ 30 (ours): holds, margin +15, 2/2 seeds" in board
  assert "**FAIL** (0/2 seeds)" in board
  capsys.readouterr()
  assert cli.main(["scoreboard", "--out", str(tmp_path / "empty")]) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_record_copies_default_runs_and_refuses_quick_ones(tmp_path, capsys):
  paper_id = MIGRATED or "tinvnn"
  paper = registry.get(paper_id)
  default = papers_lib.check_config(paper).to_dict()
  runs, records = tmp_path / "runs", tmp_path / "records"
  _write(runs, paper_id, _payload(paper_id, quick=True, config=default))
  assert cli.main(["record", str(runs), "--records", str(records)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "a quick run" in err[0] and not records.exists()
  _write(runs, paper_id, _payload(paper_id, config={**default, "num_seeds": 99}))
  assert cli.main(["record", str(runs), paper_id, "--records", str(records)]) == 2
  assert "not the default config (num_seeds)" in capsys.readouterr().err
  payload = _payload(paper_id, config=default, runtime_s=42.0)
  _write(runs, paper_id, payload)
  assert cli.main(["record", str(runs), "--records", str(records), "--machine", "m"]) == 0
  record = json.loads((records / f"{paper_id}.json").read_text())
  assert record["verdict"] == payload["verdict"] and record["runtime_s"] == 42.0
  assert record["machine"] == "m" and record["quick"] is False and record["checks"]
  papers = {p.id: p for p in registry.load_papers(records_dir=str(records))}
  assert papers[paper_id].runtime_s == 42.0
  assert papers[paper_id].status == registry.VERDICT_STATUS[payload["verdict"]]


class FakeMachine:
  """A clock and a runner: each paper takes ``speed`` × its recorded runtime."""

  def __init__(self, recorded, speed):
    self.recorded, self.speed, self.now, self.ran = recorded, speed, 0.0, []

  def clock(self):
    return self.now

  def run(self, paper_id):
    self.ran.append(paper_id)
    self.now += self.speed * self.recorded[paper_id]
    return {"paper_id": paper_id, "verdict": "PASS"}


def test_budget_learns_the_machine_speed_and_skips_what_no_longer_fits():
  recorded = {budget.MAIN_PAPER: 100.0, "a": 50.0, "b": 200.0, "c": 30.0, "d": None}
  machine = FakeMachine(recorded, speed=2.0)
  lines = []
  rows, speed = budget.run_within_budget(["a", "b", budget.MAIN_PAPER, "c", "d"], 400.0,
                                         machine.run, recorded.get, clock=machine.clock,
                                         log=lines.append)
  # main first (200 s here), a (100 s), b would take 400 s with 100 s left: skipped, c fits.
  assert machine.ran == [budget.MAIN_PAPER, "a", "c"] and machine.now <= 400.0
  assert speed.factor == pytest.approx(2.0)
  by_id = {r["paper_id"]: r for r in rows}
  assert by_id["b"]["verdict"] == "SKIPPED"
  assert by_id["b"]["note"] == ("skipped: estimated 6.7 min on this machine, "
                                "budget left 1.7 min")
  assert by_id["d"]["verdict"] == "SKIPPED" and "no recorded runtime" in by_id["d"]["note"]
  assert by_id["a"]["speed_factor"] == pytest.approx(2.0)
  assert any("speed factor now 2.00×" in line for line in lines)
  # On the recorded machine everything but d fits in 400 s; on a 4× slower one only main.
  fast = FakeMachine(recorded, speed=1.0)
  budget.run_within_budget(list(recorded), 400.0, fast.run, recorded.get, clock=fast.clock,
                           log=lambda _: None)
  assert fast.ran == [budget.MAIN_PAPER, "a", "b", "c"] and fast.now == 380.0
  slow = FakeMachine(recorded, speed=4.0)
  budget.run_within_budget(list(recorded), 400.0, slow.run, recorded.get, clock=slow.clock,
                           log=lambda _: None)
  assert slow.ran == [budget.MAIN_PAPER] and slow.now <= 400.0


def test_reproduce_writes_skips_and_speed_into_the_scoreboard(tmp_path, monkeypatch, capsys):
  ids = [budget.MAIN_PAPER, "tinvnn", "pac_invariance"]
  recorded = {budget.MAIN_PAPER: 300.0, "tinvnn": 90.0, "pac_invariance": 60.0}
  clock = {"now": 0.0}

  def execute_paper(paper_id, workdir, **kwargs):
    clock["now"] += 1.5 * recorded[paper_id]
    return _payload("tinvnn") | {"paper_id": paper_id}

  monkeypatch.setattr(papers_lib, "implemented_ids", lambda: ids)
  monkeypatch.setattr(reproduce, "recorded_runtime", recorded.get)
  monkeypatch.setattr(reproduce, "execute_paper", execute_paper)
  monkeypatch.setattr(reproduce, "_now", lambda: clock["now"])
  assert cli.main(["reproduce", "--out", str(tmp_path), "--budget_s", "600"]) == 0
  # main: 450 s here (factor 1.5); tinvnn would take 135 s with 150 s left: runs;
  # pac_invariance would take 90 s with 15 s left: skipped.
  rows = json.loads((tmp_path / "scoreboard.json").read_text())
  assert [r["verdict"] for r in rows] == ["PASS", "PASS", "SKIPPED"]
  assert rows[1]["speed_factor"] == pytest.approx(1.5)
  board = (tmp_path / "SCOREBOARD.md").read_text()
  assert ("`pac_invariance` skipped: estimated 1.5 min on this machine, budget left 0.2 min"
          in board)
  assert "speed factor on this machine: 1.50×" in board
  assert "pac_invariance: skipped" in capsys.readouterr().out
