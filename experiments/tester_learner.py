r"""Tester-learner for halfspaces: accept Gaussian+Massart, never accept a bad output.

Paper: Gollakota, Klivans, Stavropoulos & Vasilyan, "An Efficient
Tester-Learner for Halfspaces", ICLR 2024.

Command, runtime and expected result: ``experiments/configs/tester_learner.py``.

Protocol. d = 10, N = 50,000 samples per run (half to learn, half to select
and test); 200 independent Gaussian runs and 60 per adversarial case (every run
draws its own w*, noise direction, sample and PSGD initialisation). Errors
and opt are measured on 100,000 fresh samples of the same distribution; opt
is estimated as min(err(w*), min over the run's candidates) (w* is Bayes
optimal under Massart noise; the barrier case is built so that w* is the best
halfspace too). Reported per case: acceptance rate, the rate of bad outputs
(error > opt + 0.1) regardless of the test, the bad-and-accepted rate, and the
rejection rate of each test; for Gaussian runs, the angle ∠(ŵ, w*) against the
tolerance the label-aware test certifies, τ b/(1 − 2η).

Decision (ours, fixed before the run): completeness holds when the one-sided
95% Clopper–Pearson *lower* bound on P(accept ∧ error ≤ opt + 0.03) is ≥ 0.95
over the 200 Gaussian runs; soundness holds per adversarial case when the
one-sided 95% *upper* bound on P(accept ∧ error > opt + 0.1) is ≤ 0.05 over its
60 runs (0 bad acceptances of 60 give 0.049). The four tests share a total
false-rejection budget of 1% (Šidák: each at 1 − 0.99^{1/4} ≈ 0.0025), so a
perfect learner on Gaussian data is accepted ≈ 99% of the time and passes the
completeness rule with probability ≈ 0.99 (198/200 give a lower bound 0.97).

Choices (fixed from one pilot of 16 runs on other seeds, before the first
reported run): σ = 0.05, step size 0.02, 3,000 steps of batch 256, a candidate
every 100 steps; test band b = 0.5; T1 degree k = 4 (1,000 Hermite moments in
d = 10); the label-aware tolerance τ = b/6 certifies an angle ≲ τ b/(1 − 2η)
≈ 0.1 rad. The barrier fraction p = 0.05 was picked as the adversary's, to make
PSGD stall on the wrong hemisphere (it does in about 60% of runs).

History. Sessions 2–4 ran 40 runs per case with each test at level 0.01 (a
4% budget) and compared point estimates with the thresholds: Gaussian
acceptance 0.925 (37/40), FAIL. With each test at 0.01 and 40 trials a
perfect learner passes "≥ 95% accepted" only ≈ 79% of the time, so that FAIL
was not evidence against the paper (issue 12); the budget, the trial count
and the rule above replace it.

Training: the learner (PSGD on the sphere, ``tl.psgd_task``) of every run of
every case goes through one ``fit`` with run axes (cases, runs); its minibatches
are drawn with replacement (i.i.d. uniform indices), as in the old scan and
the SGD analysis the paper builds on. The candidates are every
``record_every``-th iterate of the fit's ``w`` curve. Selection, the four tests
and the evaluation run afterwards (one compiled program for every run, the case
a traced switch), regenerating each run's sample from its key.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs import tester_learner as configs
from jaxrep import registry, stats
from jaxrep.core import experiment, figures
from jaxrep.nn import l2_normalize
from jaxrep.theory import tester_learner as tl

GOOD_EXCESS = 0.03  # a good output: error ≤ opt + GOOD_EXCESS
BAD_EXCESS = 0.1    # a bad output: error > opt + BAD_EXCESS
CASES = ("gaussian", "heavy_tails", "uniform_cube", "band_barrier")


def per_test_level(total_level: float, num_tests: int = 4) -> float:
  """Šidák split of the false-rejection budget: four independent-enough tests at
  this level reject a Gaussian sample with probability ≤ ``total_level``."""
  return 1 - (1 - total_level) ** (1 / num_tests)


def tester_config(c) -> tl.TesterConfig:
  fields = {name: c[name] for name in tl.TesterConfig._fields if name != "level"}
  return tl.TesterConfig(level=per_test_level(c.total_level), **fields)


def sample_case(case_index: jax.Array, key: jax.Array, n: int, w_star, noise_direction, c):
  """(x, y) of case ``CASES[case_index]``: Massart labels on every marginal but the
  barrier, which adds its own flipped points. One traced switch, so every case
  shares one compiled program."""
  key_x, key_y = jax.random.split(key)

  def with_massart(x):
    return x, tl.massart_labels(key_y, x, w_star, noise_direction, c.eta_max)

  branches = [
      lambda: with_massart(tl.gaussian_marginal(key_x, n, c.dim)),
      lambda: with_massart(tl.student_t_marginal(key_x, n, c.dim, c.student_dof)),
      lambda: with_massart(tl.uniform_cube_marginal(key_x, n, c.dim)),
      lambda: tl.band_barrier_sample(key_x, n, w_star, noise_direction, c.eta_max,
                                     c.barrier_fraction),
  ]
  assert len(branches) == len(CASES)
  return jax.lax.switch(case_index, branches)


def draw(case_index: jax.Array, key: jax.Array, c) -> dict:
  """One run's w*, Massart noise direction u ⊥ w*, sample (x, y) and keys."""
  key_w, key_u, key_data, key_learner, key_eval = jax.random.split(key, 5)
  w_star = l2_normalize(jax.random.normal(key_w, (c.dim,)))
  u = l2_normalize(jax.random.normal(key_u, (c.dim,)))
  u = l2_normalize(u - (u @ w_star) * w_star)
  x, y = sample_case(case_index, key_data, c.num_samples, w_star, u, c)
  return {"w_star": w_star, "u": u, "x": x, "y": y, "key_learner": key_learner,
          "key_eval": key_eval}


def case_runs(ctx: experiment.Context, c) -> dict[str, np.ndarray]:
  """Every run as (case index, key): ``num_seeds`` Gaussian runs, then
  ``num_adversarial_runs`` per adversarial case (keys ``tester_learner/<case>``)."""
  counts = [c.num_seeds] + [c.num_adversarial_runs] * (len(CASES) - 1)
  keys = [ctx.seed_keys(f"tester_learner/{case}", n) for case, n in zip(CASES, counts)]
  return {"case": np.repeat(np.arange(len(CASES)), counts), "key": jnp.concatenate(keys)}


def train(ctx: experiment.Context, c, runs: dict) -> dict:
  """PSGD for every run of every case in one fit: candidates (runs, C, d), curves."""
  half = c.num_samples // 2

  @jax.jit
  def learning_split(case_index, keys):
    # lax.map, not vmap: a vmapped switch would draw every case's sample for every run
    drawn = jax.lax.map(lambda a: draw(*a, c), (case_index, keys))
    return {"key": drawn["key_learner"], "x": drawn["x"][:, :half], "y": drawn["y"][:, :half]}

  result = ctx.fit("psgd", tl.psgd_task(tester_config(c)),
                   learning_split(jnp.asarray(runs["case"]), runs["key"]), c.num_steps)
  return {"candidates": tl.candidates(result.curves["w"], c.record_every),
          "loss": result.curves["loss"]}


def make_evaluate(c):
  """A compiled ``(case_indices, keys, candidates) -> per-run results``."""
  config, half = tester_config(c), c.num_samples // 2

  def one(case_index, key, candidate_ws):
    run = draw(case_index, key, c)
    out = tl.select_and_test(candidate_ws, run["x"][half:], run["y"][half:], config)
    x_eval, y_eval = sample_case(case_index, run["key_eval"], c.num_eval, run["w_star"],
                                 run["u"], c)
    err = lambda w: tl.zero_one_error(w, x_eval, y_eval)
    error = err(out.w_hat)
    opt = jnp.minimum(err(run["w_star"]), jnp.min(jax.vmap(err)(candidate_ws)))
    return {"accept": out.accept, "excess": error - opt, "error": error, "opt": opt,
            "angle": jnp.arccos(jnp.clip(out.w_hat @ run["w_star"], -1.0, 1.0)),
            "reject_t1_moments": out.reject_moments,
            "reject_t2_band_mass": out.reject_band_mass,
            "reject_t3a_band_moments": out.reject_band_moments,
            "reject_t3b_label_moments": out.reject_label_moments,
            "band_mass": out.band_mass, "label_deviation": out.label_deviation}

  @jax.jit
  def evaluate(case_indices, keys, candidate_ws):
    return jax.lax.map(lambda a: one(*a), (case_indices, keys, candidate_ws),
                       batch_size=c.runs_per_batch)

  return evaluate


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  runs = case_runs(ctx, c)
  trained = ctx.stage("psgd", lambda: train(ctx, c, runs))
  evaluate = make_evaluate(c)
  flat = ctx.stage("evaluate", lambda: {k: np.asarray(v) for k, v in evaluate(
      jnp.asarray(runs["case"]), runs["key"], jnp.asarray(trained["candidates"])).items()})
  results = {case: {k: v[runs["case"] == i] for k, v in flat.items()}
             for i, case in enumerate(CASES)}

  measured, details = {}, {"per_test_level": per_test_level(c.total_level)}
  gauss = results["gaussian"]
  good_accept = gauss["accept"] & (gauss["excess"] <= GOOD_EXCESS)
  measured["gaussian_accept_rate"] = gauss["accept"].astype(float)
  measured["gaussian_good_accept_rate"] = good_accept.astype(float)
  measured["gaussian_good_accept_lower_cp"] = np.asarray(stats.clopper_pearson_lower(
      int(good_accept.sum()), good_accept.size, c.confidence))
  measured["gaussian_excess_error"] = gauss["excess"]
  measured["gaussian_angle"] = gauss["angle"]
  certified = c.label_tolerance * c.band_width / (1 - 2 * c.eta_max)
  accepted_angles = gauss["angle"][gauss["accept"]]
  details["gaussian_angle"] = {
      "certified_tolerance_rad": certified,
      "accepted_runs_within_tolerance": int(np.sum(accepted_angles <= certified)),
      "accepted_runs": int(accepted_angles.size),
      "median_angle_rad": float(np.median(gauss["angle"]))}
  for case in CASES[1:]:
    r = results[case]
    bad = r["excess"] > BAD_EXCESS
    measured[f"{case}_bad_accept_rate"] = (bad & r["accept"]).astype(float)
    measured[f"{case}_bad_accept_upper_cp"] = np.asarray(stats.clopper_pearson_upper(
        int((bad & r["accept"]).sum()), bad.size, c.confidence))
    measured[f"{case}_bad_rate"] = bad.astype(float)
    measured[f"{case}_accept_rate"] = r["accept"].astype(float)
  for case, r in results.items():
    details[case] = {name: float(np.mean(v)) for name, v in r.items()}
  ctx.save_figure(plot(results, {case: trained["loss"][runs["case"] == i]
                                 for i, case in enumerate(CASES)}))
  return experiment.Outcome(measured=measured, details=details)


def plot(results, loss):
  fig, axes = figures.panels(3, width=5.5, height=4.2)
  names = list(results)
  rows = {"accept": lambda r: r["accept"],
          "bad (> opt+0.1)": lambda r: r["excess"] > BAD_EXCESS,
          "bad ∧ accept": lambda r: (r["excess"] > BAD_EXCESS) & r["accept"],
          "T1 rejects": lambda r: r["reject_t1_moments"],
          "T2 rejects": lambda r: r["reject_t2_band_mass"],
          "T3a rejects": lambda r: r["reject_t3a_band_moments"],
          "T3b rejects": lambda r: r["reject_t3b_label_moments"]}
  width = 0.8 / len(rows)
  for j, (label, fn) in enumerate(rows.items()):
    axes[0].bar(np.arange(len(names)) + j * width, [np.mean(fn(results[n])) for n in names],
                width, label=label)
  axes[0].axhline(registry.threshold("tester_learner", "gaussian_good_accept_lower_cp"),
                  color="k", ls=":", lw=1)
  axes[0].axhline(registry.threshold("tester_learner", "heavy_tails_bad_accept_upper_cp"),
                  color="k", ls="--", lw=1)
  axes[0].set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=15)
  axes[0].set(ylabel="fraction of runs", title="acceptance, bad outputs, per-test rejections")
  axes[0].legend(fontsize=7, ncol=2)
  for i, n in enumerate(names):
    r = results[n]
    jitter = i + 0.15 * np.random.default_rng(i).standard_normal(r["excess"].shape)
    axes[1].scatter(jitter, r["excess"], c=np.where(r["accept"], "tab:green", "tab:red"), s=12)
  axes[1].axhline(BAD_EXCESS, color="k", ls="--", lw=1, label="opt + 0.1")
  axes[1].axhline(GOOD_EXCESS, color="gray", ls=":", lw=1, label="opt + 0.03")
  axes[1].set_xticks(range(len(names)), names, rotation=15)
  axes[1].set(ylabel="error − opt", title="runs (green = accepted, red = rejected)")
  axes[1].legend()
  figures.plot_curves(axes[2], loss, ylabel="surrogate loss (batch)",
                      title="PSGD (learning split)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="tester_learner", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
