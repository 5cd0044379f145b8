"""Sweeps across processes (`jaxrep sweep --worker`), `jaxrep collect`, and the
provenance in results.json's env block, on the tiny experiment of test_sweep.py."""
import collections
import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest

from jaxrep import cli
from jaxrep.commands import papers
from jaxrep.core import experiment, pooling, results, sweep

import test_sweep
from test_sweep import CHECKS, TINY

COMMON = ["tiny_sweep", "--grid", "lr=0.1,0.05", "--seeds", "3", "--config.num_steps=10"]


@pytest.fixture
def tiny(monkeypatch):
  monkeypatch.setattr(papers, "load_experiment", lambda paper_id: TINY)
  monkeypatch.setattr(pooling, "paper_checks", lambda paper_id: CHECKS)


def _points(path):
  summary = json.loads(open(os.path.join(path, "sweep.json")).read())
  return [{k: v for k, v in p.items() if k != "workdirs"} for p in summary["points"]]


def test_concurrent_workers_run_each_run_once_and_end_with_one_workers_table(tmp_path, tiny):
  shared, log = str(tmp_path / "shared"), str(tmp_path / "log")
  env = {**os.environ, "TINY_SWEEP_LOG": log, "TINY_SWEEP_ROOT": shared,
         "TINY_SWEEP_SLEEP": "0.2"}
  argv = [sys.executable, test_sweep.__file__, "sweep", "--out", shared, *COMMON]
  # two workers (a partition) and a plain sweep over every run, started together: the
  # claims decide who runs what
  workers = [subprocess.Popen(argv + extra, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for extra in (["--worker", "0", "--num_workers", "2"],
                           ["--worker", "1", "--num_workers", "2"], [])]
  outputs = [w.communicate(timeout=240)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0, 0], outputs
  ran = [line.split() for line in open(log).read().splitlines()]
  counts = collections.Counter(workdir for _, workdir in ran)
  assert len(counts) == 6 and set(counts.values()) == {1}, ran  # every run exactly once
  assert not [f for _, _, files in os.walk(shared) for f in files if "claim" in f]

  alone = str(tmp_path / "alone")
  assert cli.main(["sweep", "--out", alone, *COMMON, "--worker", "0", "--num_workers", "1"]) == 0
  assert _points(shared) == _points(alone)
  assert (open(os.path.join(shared, "sweep.md")).read()
          == open(os.path.join(alone, "sweep.md")).read())
  assert "| lr=0.1, num_steps=10 |" in open(os.path.join(alone, "sweep.md")).read()


def _collect(capsys, *argv):
  capsys.readouterr()
  assert cli.main(["collect", *argv]) == 0
  return capsys.readouterr().out


def test_collect_gathers_runs_into_one_table(tmp_path, tiny, capsys):
  out = str(tmp_path / "sweep")
  grid = {"lr": ["0.1", "0.05"]}
  summary = sweep.run_sweep(TINY, out, grid, 2, verbose=False, checks=CHECKS,
                            base_overrides={"num_steps": "10"})
  loose = str(tmp_path / "loose")  # a run outside the sweep, found as well
  experiment.execute(TINY, loose, overrides=("num_seeds=2", "lr=0.2", "num_steps=10"),
                     verbose=False)

  md = _collect(capsys, out, loose)
  lines = md.splitlines()
  assert lines[0] == "| run | paper | config | verdict | seeds | final_loss | w0 |"
  assert len(lines) == 2 + 5  # 4 sweep runs and the loose one
  assert any(line.startswith(f"| {loose} | tiny_sweep | lr=0.2 |") for line in lines)

  by_config = _collect(capsys, out, loose, "--by", "config").splitlines()
  assert len(by_config) == 2 + 3
  row = [line for line in by_config if "lr=0.1 " in line][0]
  point = [p for p in summary["points"] if p["slug"] == "lr-0.1_num_steps-10"][0]
  assert f"| {point['verdict']} ({point['seeds_holding']['k']}/2 seeds) |" in row
  assert pooling.stats_text(point["measured"]["final_loss"]) in row  # the sweep's own numbers

  text = _collect(capsys, out, "--format", "csv", "--by", "config",
                  "--columns", "w0,config.lr,runtime_s")
  table = list(csv.DictReader(io.StringIO(text)))
  assert list(table[0]) == ["runs", "paper", "config", "verdict", "seeds", "w0", "w0_std",
                            "w0_n", "config.lr", "runtime_s"]
  by_lr = {float(r["config.lr"]): r for r in table}
  assert float(by_lr[0.1]["w0"]) == point["measured"]["w0"]["mean"]  # repr round-trips
  assert by_lr[0.1]["w0_n"] == "2" and by_lr[0.1]["seeds"] == "2"

  target = tmp_path / "tables" / "runs.csv"
  assert _collect(capsys, out, "--format", "csv", "--out", str(target)) == ""
  assert len(target.read_text().splitlines()) == 1 + 4
  assert cli.main(["collect", str(tmp_path / "missing")]) == 2
  assert cli.main(["collect", out, "--columns", "no_such_value"]) == 2
  assert cli.main(["collect", str(tmp_path / "tables")]) == 2  # no results.json there


def test_env_records_code_versions_and_machine(tmp_path):
  payload = experiment.execute(TINY, str(tmp_path / "run"), overrides=("num_seeds=1",),
                               verbose=False)
  env = json.loads((tmp_path / "run" / "results.json").read_text())["env"]
  assert env == json.loads(json.dumps(results.to_jsonable(payload["env"])))
  assert {"devices", "device_kind", "platform", "processes", "mesh", "fits", "git_sha",
          "git_dirty", "versions", "python", "system"} <= set(env)
  assert {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint"} <= set(env["versions"])
  assert env["versions"]["jax"] and re.fullmatch(r"3\.\d+\.\d+.*", env["python"])
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(results.__file__))))
  head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                        text=True)
  if head.returncode == 0:  # a git checkout (CI's and ours)
    assert env["git_sha"] == head.stdout.strip() and isinstance(env["git_dirty"], bool)
  if env["git_sha"] is not None:
    assert re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", env["git_sha"])
  assert results.git_state(str(tmp_path)) == (None, None)  # not a checkout: null, no error
  assert results.git_state(str(tmp_path / "missing")) == (None, None)


def test_list_and_collect_import_no_jax(tmp_path):
  code = ("import sys; from jaxrep import cli\n"
          f"assert cli.main(['sweep', 'locality_dsd', '--out', {str(tmp_path)!r}, '--grid', "
          "'margin=0.03,0.05', '--seeds', '2', '--list']) == 0\n"
          f"assert cli.main(['collect', {str(tmp_path)!r}]) == 2\n"  # nothing there yet
          "assert 'jax' not in sys.modules, 'imported jax'\n")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=60)
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  assert len(lines) == 4 and all(line.startswith("jaxrep run locality_dsd --workdir ")
                                 for line in lines)
