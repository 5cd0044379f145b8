"""Seeded sweeps (jaxrep.core.sweep, `jaxrep sweep`) on a tiny experiment defined here."""
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxrep import cli
from jaxrep.core import experiment, results, sweep, train

EXECUTED = []  # (seed, replicate_offset, num_seeds) of every run that actually ran


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
  losses, w0 = _fit(ctx.seed_keys("fit", c.num_seeds), c.lr, c.noise, c.num_steps)
  return experiment.Outcome(measured={"final_loss": losses, "w0": w0},
                            passed=bool(np.all(np.asarray(losses) < 0.5)),
                            details={"per_seed_w0": np.asarray(w0)})


TINY = experiment.Experiment(paper_id="tiny_sweep", claim="-", get_config=_config, run=_run,
                             quick=lambda c: c, runtime_s=1.0)


def _by_slug(summary):
  return {p["slug"]: p for p in summary["points"]}


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


def test_finished_runs_are_skipped_and_cli_writes_the_table(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(cli, "load_experiment", lambda paper_id: TINY)
  out = str(tmp_path / "sweep")
  argv = ["sweep", "tiny_sweep", "--out", out, "--grid", "lr=0.1,0.05", "--seeds", "2",
          "--config.num_steps=10"]
  EXECUTED.clear()
  assert cli.main(argv) == 0
  assert len(EXECUTED) == 4
  first = json.loads(open(os.path.join(out, "sweep.json")).read())
  assert cli.main(argv) == 0 and len(EXECUTED) == 4  # relaunch: nothing reruns
  assert json.loads(open(os.path.join(out, "sweep.json")).read()) == first
  os.remove(os.path.join(out, "lr-0.05_num_steps-10", "seed1", "results.json"))
  assert cli.main(argv) == 0 and len(EXECUTED) == 5  # only the unfinished run
  assert EXECUTED[-1][1:] == (1, 1)
  assert json.loads(open(os.path.join(out, "sweep.json")).read()) == first
  table = open(os.path.join(out, "sweep.md")).read()
  assert "| lr=0.1, num_steps=10 |" in table and "final_loss" in table

  capsys.readouterr()
  assert cli.main(["sweep", "tiny_sweep", "--out", out, "--grid", "num_seeds=1,2"]) == 2
  error = capsys.readouterr().err.strip()
  assert "\n" not in error and "--seeds" in error
  assert cli.main(["sweep", "tiny_sweep", "--out", out, "--grid", "lr=fast"]) == 2


def test_aggregation_is_mean_and_std_over_seeds():
  values = np.array([0.25, 0.5, 1.5])
  payloads = [{"measured": {"acc": results.summarize(v), "n_star": {"mean": "inf",
                                                                   "std": "nan", "n": 1}},
               "passed": bool(v < 1)} for v in values]
  table = sweep.aggregate_point(payloads)
  assert table["acc"]["mean"] == pytest.approx(values.mean())
  assert table["acc"]["std"] == pytest.approx(values.std())
  assert table["acc"]["n"] == 3 and table["acc"]["per_seed"] == values.tolist()
  # as in results.json: inf (beyond a grid) propagates to the mean, the std is undefined
  assert table["n_star"]["n"] == 3 and table["n_star"]["mean"] == np.inf
  assert np.isnan(table["n_star"]["std"])
  run = sweep.SweepRun("p", "lr-0.1", {"lr": "0.1"}, {"lr": 0.1}, 7, 0, 1, False, "w0")
  runs = [dataclasses.replace(run, replicate_offset=i, workdir=f"w{i}") for i in range(3)]
  summary = sweep.summarize_sweep(runs, {f"w{i}": p for i, p in enumerate(payloads)}, {},
                                  num_seeds=3, grid={"lr": ["0.1"]}, seeds_in_one_program=False)
  markdown = sweep.format_markdown(summary)
  row = [line for line in markdown.splitlines() if line.startswith("| lr=0.1")][0]
  assert f"{values.mean():.4g} ± {values.std():.2g} (n=3)" in row and "| 2/3 |" in row


def test_seeds_in_one_program_equal_one_by_one(tmp_path):
  grid = {"lr": ["0.1"]}
  one_by_one = sweep.run_sweep(TINY, str(tmp_path / "single"), grid, 3, verbose=False)
  together = sweep.run_sweep(TINY, str(tmp_path / "vmapped"), grid, 3, verbose=False,
                             seeds_in_one_program=True)
  single, vmapped = one_by_one["points"][0], together["points"][0]
  assert vmapped["workdirs"] == [str(tmp_path / "vmapped" / "lr-0.1" / "seeds0-2")]
  per_seed = [json.loads(open(os.path.join(w, "results.json")).read())["details"]["per_seed_w0"]
              for w in single["workdirs"]]
  joint = json.loads(open(os.path.join(vmapped["workdirs"][0], "results.json")).read())
  # Replicate r gets the key fold_in(key, r) in both modes and XLA's CPU code for
  # this program does not depend on the vmapped batch size, so values agree exactly.
  assert np.concatenate(per_seed).tolist() == joint["details"]["per_seed_w0"]
  for name in ("final_loss", "w0"):
    assert single["measured"][name]["mean"] == vmapped["measured"][name]["mean"]
    assert single["measured"][name]["std"] == vmapped["measured"][name]["std"]
