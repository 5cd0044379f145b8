"""Seeded sweeps (jaxrep.core.sweep, `jaxrep sweep`, `jaxrep run --replicate`) on a
tiny experiment defined here (also used by tests/test_collect.py)."""
import dataclasses
import functools
import json
import os
import shlex
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxrep import cli, registry
from jaxrep.commands import papers
from jaxrep.core import experiment, pooling, results, sweep, train

EXECUTED = []  # (seed, replicate_offset, num_seeds) of every run that actually ran
CHECKS = (registry.Check("final_loss", "<=", 0.5),
          registry.Check("w0", ">", -3.0, aggregate="all"))


def _config():
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.lr = 0.1
  c.num_steps = 15
  c.noise = 0.1
  return c


@functools.partial(jax.jit, static_argnames="num_steps")
def _fit(keys, lr, noise, num_steps):
  """Least squares by SGD per key: final loss and first weight, shape (seeds,)."""

  def loss_fn(w, batch, rng):
    x, y = batch
    return jnp.mean((x @ w - y) ** 2), {}

  def one(key):
    key_x, key_w, key_noise, key_init = jax.random.split(key, 4)
    x = jax.random.normal(key_x, (32, 4))
    y = x @ jax.random.normal(key_w, (4,)) + noise * jax.random.normal(key_noise, (32,))
    optimizer = optax.sgd(lr)
    state = train.init_train_state(0.1 * jax.random.normal(key_init, (4,)), optimizer, key_init)
    step = train.make_train_step(loss_fn, optimizer, jit=False)
    state, metrics = train.scan_steps(step, state, lambda i: (x, y), num_steps)
    return metrics["loss"][-1], state.params[0]

  return jax.vmap(one)(keys)


def _run(c, ctx):
  EXECUTED.append((ctx.seed, ctx.replicate_offset, c.num_seeds))
  if os.environ.get("TINY_SWEEP_LOG"):  # worker tests: who ran what
    with open(os.environ["TINY_SWEEP_LOG"], "a") as f:
      f.write(f"{os.getpid()} {os.path.relpath(ctx.workdir, os.environ['TINY_SWEEP_ROOT'])}\n")
  time.sleep(float(os.environ.get("TINY_SWEEP_SLEEP", "0")))
  keys = ctx.seed_keys("fit", c.num_seeds)
  losses, w0 = _fit(keys, c.lr, c.noise, c.num_steps)
  return experiment.Outcome(measured={"final_loss": losses, "w0": w0},
                            passed=bool(np.all(np.asarray(losses) < 0.5)),
                            details={"per_seed_w0": np.asarray(w0),
                                     "keys": np.asarray(jax.random.key_data(keys))})


TINY = experiment.Experiment(paper_id="tiny_sweep", claim="-", get_config=_config, run=_run,
                             quick=lambda c: c)


def main_with_tiny(argv):
  """``jaxrep`` with the id ``tiny_sweep`` meaning TINY (checked by CHECKS)."""
  papers.load_experiment = lambda paper_id: TINY
  pooling.paper_checks = lambda paper_id: CHECKS
  return cli.main(argv)


@pytest.fixture
def tiny(monkeypatch):
  monkeypatch.setattr(papers, "load_experiment", lambda paper_id: TINY)
  monkeypatch.setattr(pooling, "paper_checks", lambda paper_id: CHECKS)


def _by_slug(summary):
  return {p["slug"]: p for p in summary["points"]}


def _stable(payload):
  """results.json without what differs between two runs of the same thing."""
  return {k: v for k, v in payload.items() if k not in ("date", "runtime_s", "env")}


def test_run_seeds_hash_the_config_and_not_the_launch_order(tmp_path):
  forward = sweep.plan_sweep(TINY, "out", {"lr": ["0.1", "0.05"]}, 2)
  backward = sweep.plan_sweep(TINY, "out", {"lr": ["0.050", "0.1"]}, 2)
  seeds = {r.slug: r.seed for r in forward}
  assert seeds == {r.slug: r.seed for r in backward} and len(set(seeds.values())) == 2
  assert seeds["lr-0.1"] == sweep.run_seed("tiny_sweep", {"lr": 0.1})
  assert sweep.run_seed("tiny_sweep", {"lr": 0.1}, base_seed=1) != seeds["lr-0.1"]
  assert sweep.run_seed("other", {"lr": 0.1}) != seeds["lr-0.1"]
  assert [r.replicate_offset for r in forward if r.slug == "lr-0.1"] == [0, 1]

  a = sweep.run_sweep(TINY, str(tmp_path / "a"), {"lr": ["0.1", "0.05"]}, 2, verbose=False)
  b = sweep.run_sweep(TINY, str(tmp_path / "b"), {"lr": ["0.05", "0.1"]}, 2, verbose=False)
  for slug, point in _by_slug(a).items():
    assert point["measured"] == _by_slug(b)[slug]["measured"]  # bitwise: same floats
  payload = json.loads((tmp_path / "a" / "lr-0.1" / "seed1" / "results.json").read_text())
  assert payload["seeds"] == [seeds["lr-0.1"] * 1000 + 1]
  assert len(payload["measured"]["w0"]["values"]) == 1  # per-seed values are stored


def test_paired_seeds_give_every_grid_point_the_same_keys(tmp_path):
  grid = {"lr": ["0.1", "0.05"], "noise": ["0.1", "0.2"]}
  runs = sweep.plan_sweep(TINY, "out", grid, 2, paired_seeds=True,
                          base_overrides={"num_steps": "10"})
  assert len({r.seed for r in runs}) == 1  # the hash of (id, --seed, the fixed overrides)
  assert runs[0].seed == sweep.run_seed("tiny_sweep", {"num_steps": 10})
  assert len({r.seed for r in sweep.plan_sweep(TINY, "out", grid, 2)}) == 4  # the default

  def keys(summary):
    return {(p["slug"], i): json.loads(open(os.path.join(w, "results.json")).read())[
        "details"]["keys"] for p in summary["points"] for i, w in enumerate(p["workdirs"])}

  paired = keys(sweep.run_sweep(TINY, str(tmp_path / "p"), {"lr": ["0.1", "0.05"]}, 2,
                                paired_seeds=True, verbose=False))
  assert paired[("lr-0.1", 0)] == paired[("lr-0.05", 0)] != paired[("lr-0.1", 1)]
  assert paired[("lr-0.1", 1)] == paired[("lr-0.05", 1)]
  hashed = keys(sweep.run_sweep(TINY, str(tmp_path / "h"), {"lr": ["0.1", "0.05"]}, 2,
                                verbose=False))
  assert hashed[("lr-0.1", 0)] != hashed[("lr-0.05", 0)]


def test_finished_runs_are_skipped_and_cli_writes_the_table(tmp_path, tiny, capsys):
  out = str(tmp_path / "sweep")
  argv = ["sweep", "tiny_sweep", "--out", out, "--grid", "lr=0.1,0.05", "--seeds", "2",
          "--config.num_steps=10"]
  EXECUTED.clear()
  assert cli.main(argv) == 0
  assert len(EXECUTED) == 4
  first = json.loads(open(os.path.join(out, "sweep.json")).read())
  assert first["ended"] and first["finished"] == 4
  assert cli.main(argv) == 0 and len(EXECUTED) == 4  # relaunch: nothing reruns
  assert json.loads(open(os.path.join(out, "sweep.json")).read()) == first
  os.remove(os.path.join(out, "lr-0.05_num_steps-10", "seed1", "results.json"))
  assert cli.main(argv) == 0 and len(EXECUTED) == 5  # only the unfinished run
  assert EXECUTED[-1][1:] == (1, 1)
  assert json.loads(open(os.path.join(out, "sweep.json")).read()) == first
  table = open(os.path.join(out, "sweep.md")).read()
  assert "| lr=0.1, num_steps=10 |" in table and "final_loss" in table
  run_file = json.loads(open(os.path.join(out, "lr-0.1_num_steps-10", "seed0",
                                          sweep.RUN_FILE)).read())
  assert run_file["ran_by"]["pid"] == os.getpid() and run_file["replicate_offset"] == 0
  assert not [f for _, _, files in os.walk(out) for f in files if "claim" in f]

  capsys.readouterr()
  assert cli.main(["sweep", "tiny_sweep", "--out", out, "--grid", "num_seeds=1,2"]) == 2
  error = capsys.readouterr().err.strip()
  assert "\n" not in error and "--seeds" in error
  assert cli.main(["sweep", "tiny_sweep", "--out", out, "--grid", "lr=fast"]) == 2
  assert cli.main(argv + ["--worker", "2", "--num_workers", "2"]) == 2
  assert cli.main(argv + ["--worker", "0"]) == 2
  assert cli.main(argv + ["--list", "--summarize"]) == 2


def test_list_lines_through_jaxrep_run_give_the_sweep_bitwise(tmp_path, tiny, capsys):
  common = ["tiny_sweep", "--grid", "lr=0.1,0.05", "--seeds", "2", "--config.num_steps=10"]
  reference = str(tmp_path / "sweep")
  assert cli.main(["sweep", "--out", reference, *common]) == 0
  listed = str(tmp_path / "listed")
  capsys.readouterr()
  assert cli.main(["sweep", "--out", listed, *common, "--list"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 4 and not os.path.exists(listed)  # --list runs and writes nothing
  runs = sweep.plan_sweep(TINY, listed, {"lr": ["0.1", "0.05"]}, 2,
                          base_overrides={"num_steps": "10"})
  assert lines[1] == (f"jaxrep run tiny_sweep --workdir {listed}/lr-0.1_num_steps-10/seed1 "
                      f"--seed {runs[1].seed} --replicate 1 --config.num_steps=10 "
                      f"--config.lr=0.1 --config.num_seeds=1")
  for line in lines:
    assert cli.main(shlex.split(line)[1:]) == 0
  for run in runs:
    ours = json.loads(open(os.path.join(run.workdir, "results.json")).read())
    theirs = json.loads(open(os.path.join(
        reference, os.path.relpath(run.workdir, listed), "results.json")).read())
    assert _stable(ours) == _stable(theirs)  # bitwise: same floats, seeds, checks
  # the plain sweep (or --summarize) then finds every run finished and only summarises
  EXECUTED.clear()
  assert cli.main(["sweep", "--out", listed, *common, "--summarize"]) == 0
  assert cli.main(["sweep", "--out", listed, *common]) == 0 and not EXECUTED
  assert (open(os.path.join(listed, "sweep.md")).read()
          == open(os.path.join(reference, "sweep.md")).read())
  capsys.readouterr()
  assert cli.main(["sweep", "--out", listed, *common, "--list", "--worker", "1",
                   "--num_workers", "3"]) == 0
  assert capsys.readouterr().out.splitlines() == [lines[1]]  # worker 1 of 3: run 1 only


def test_pooled_statistics_and_verdict_come_from_per_seed_values():
  values = np.array([0.25, 0.5, 1.5])
  payloads = [{"measured": {"acc": results.measured_stats(v[None]),
                            "n_star": {"mean": "inf", "std": "nan", "n": 1}},
               "passed": bool(v < 1)} for v in values]
  table = sweep.aggregate_point(payloads)
  assert table["acc"]["mean"] == pytest.approx(values.mean())
  assert table["acc"]["std"] == pytest.approx(values.std())
  assert table["acc"]["n"] == 3 and table["acc"]["values"] == values.tolist()
  # old results.json without values: one value per run, its mean; inf propagates
  assert table["n_star"]["n"] == 3 and table["n_star"]["mean"] == np.inf
  assert np.isnan(table["n_star"]["std"])
  # two values per seed (e.g. per seed × grid): pooled along the seed axis
  two = [{"measured": {"acc": results.measured_stats(np.array([[v, v + 1]]))}} for v in values]
  assert sweep.aggregate_point(two)["acc"]["values"] == [[v, v + 1] for v in values]

  run = sweep.SweepRun("p", "lr-0.1", {"lr": "0.1"}, {"lr": 0.1}, 7, 0, 1, False, "w0")
  runs = [dataclasses.replace(run, replicate_offset=i, workdir=f"w{i}") for i in range(3)]
  checks = [registry.Check("acc", "<=", 1.0), registry.Check("acc", "<=", 1.0, aggregate="all")]
  summary = sweep.summarize_sweep(runs, {f"w{i}": p for i, p in enumerate(payloads)}, {},
                                  num_seeds=3, grid={"lr": ["0.1"]}, seeds_in_one_program=False,
                                  checks=checks)
  point = summary["points"][0]
  assert point["verdict"] == "FAIL" and point["seeds_holding"] == {"k": 2, "n": 3}
  assert [c["holds"] for c in point["checks"]] == [True, False]  # mean 0.75; worst 1.5
  row = [line for line in sweep.format_markdown(summary).splitlines()
         if line.startswith("| lr=0.1")][0]
  assert f"{values.mean():.4g} ± {values.std():.2g} (n=3)" in row and "FAIL (2/3 seeds)" in row
  unchecked = sweep.summarize_sweep(runs[:2], {"w0": payloads[0], "w1": payloads[1]}, {},
                                    num_seeds=3, grid={}, seeds_in_one_program=False,
                                    checks=())
  assert "2/2 runs pass" in sweep.format_markdown(unchecked)
  partial = sweep.summarize_sweep(runs, {"w0": payloads[0]}, {"w1": "ValueError: x"},
                                  num_seeds=3, grid={}, seeds_in_one_program=False, checks=())
  assert partial["finished"] == 1 and partial["failed"] == 1 and not partial["ended"]
  assert "ERROR (1)" in sweep.format_markdown(partial)


def test_seeds_in_one_program_give_the_same_table(tmp_path):
  grid = {"lr": ["0.1", "0.05"]}
  one_by_one = sweep.run_sweep(TINY, str(tmp_path / "single"), grid, 3, verbose=False,
                               checks=CHECKS)
  together = sweep.run_sweep(TINY, str(tmp_path / "vmapped"), grid, 3, verbose=False,
                             seeds_in_one_program=True, checks=CHECKS)
  assert together["points"][0]["workdirs"] == [
      str(tmp_path / "vmapped" / "lr-0.1" / "seeds0-2")]
  # Replicate r gets the key fold_in(key, r) in both modes and XLA's CPU code for
  # this program does not depend on the vmapped batch size, so values agree exactly,
  # and every statistic and check is recomputed from them.
  for single, vmapped in zip(one_by_one["points"], together["points"]):
    assert single["measured"] == vmapped["measured"]
    assert single["checks"] == vmapped["checks"] and single["verdict"] == vmapped["verdict"]
    assert single["seeds_holding"] == vmapped["seeds_holding"]
    assert single["measured"]["w0"]["n"] == 3
  rows = [[line for line in sweep.format_markdown(s).splitlines() if line.startswith("| lr")]
          for s in (one_by_one, together)]
  assert rows[0] == rows[1]


def test_claims_are_exclusive_and_stale_local_claims_are_taken_over(tmp_path):
  workdir = str(tmp_path / "run")
  assert sweep.claim_run(workdir, "0/2")
  holder = sweep.claim_holder(workdir)
  assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
  assert not sweep.claim_run(workdir)  # held (by this live process)
  sweep.release_claim(workdir)
  assert sweep.claim_holder(workdir) is None

  path = os.path.join(workdir, sweep.CLAIM_FILE)
  for holder, stale in (({"host": "elsewhere", "pid": 1, "time": "t"}, False),
                        ({"host": socket.gethostname(), "pid": os.getppid(), "time": "t"},
                         False)):
    with open(path, "w") as f:
      json.dump(holder, f)
    assert sweep.is_stale(holder) == stale and not sweep.claim_run(workdir)
    sweep.release_claim(workdir)  # not ours: left alone
    assert sweep.claim_holder(workdir) == holder
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with open(path, "w") as f:
    json.dump({"host": socket.gethostname(), "pid": dead.pid, "time": "2026-01-01T00:00:00Z"},
              f)
  assert sweep.claim_run(workdir)  # a dead local process's claim is taken over
  assert sweep.claim_holder(workdir)["pid"] == os.getpid()
  assert any(".takeover-" in name for name in os.listdir(workdir))
  sweep.release_claim(workdir)
  assert sweep.claim_holder(workdir) is None
  os.remove(path + f".takeover-{dead.pid}-20260101T000000Z")  # the marker stays: no retakes
  assert os.listdir(workdir) == []


def test_a_failing_run_is_reported_and_retried_on_relaunch(tmp_path):
  def failing(exp, workdir, **kwargs):
    if kwargs["replicate_offset"] == 1:
      raise ValueError("diverged\nat step 3")
    return experiment.execute(exp, workdir, **kwargs)

  out = tmp_path / "sweep"
  summary = sweep.run_sweep(TINY, str(out), {"lr": ["0.1"]}, 2, verbose=False,
                            execute=failing)
  assert summary["worker_errors"] == ["ValueError: diverged"] and summary["ended"]
  assert (out / "lr-0.1" / "seed1" / sweep.ERROR_FILE).read_text() == "ValueError: diverged\n"
  assert "ERROR (1)" in (out / "sweep.md").read_text()
  assert not list(out.glob("*/*/" + sweep.CLAIM_FILE))  # released after the error too
  again = sweep.run_sweep(TINY, str(out), {"lr": ["0.1"]}, 2, verbose=False)
  assert again["worker_errors"] == [] and again["finished"] == 2 and again["failed"] == 0
  assert not (out / "lr-0.1" / "seed1" / sweep.ERROR_FILE).exists()


def test_only_process_zero_writes_sweep_and_run_files(tmp_path, monkeypatch):
  calls = []

  def fake_execute(exp, workdir, **kwargs):
    calls.append(workdir)
    return {"measured": {}, "passed": None}

  monkeypatch.setattr(sweep, "_process_index", lambda: 1)
  monkeypatch.setattr(sweep, "_agree", lambda code: sweep._RUN)  # process 0 said: run
  out = tmp_path / "sweep"
  sweep.run_sweep(TINY, str(out), {"lr": ["0.1"]}, 2, verbose=False, execute=fake_execute)
  assert len(calls) == 2 and not out.exists()  # no claims, run files or summary

  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "results.json").write_text("{}")
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  experiment.execute(TINY, str(workdir), overrides=("num_seeds=1",), verbose=False)
  assert sorted(os.listdir(workdir)) == ["results.json"]  # not removed, nothing written
  assert (workdir / "results.json").read_text() == "{}"


if __name__ == "__main__":  # a worker process of tests/test_collect.py
  sys.exit(main_with_tiny(sys.argv[1:]))
