r"""Out-of-domain unlabeled data improves a linear classifier (RSS training).

Paper: Saberi et al., "Out-Of-Domain Unlabeled Data Improves Generalization",
ICLR 2024 (poster table: 0.59 → 0.81 at m = 10 labeled, n = 10⁴ shifted
unlabeled samples).

Command, runtime and expected result: ``experiments/configs/ood_unlabeled.py``.

Protocol (the paper's simulation): d = 200, ‖μ₀‖ = 1, σ = 1, μ₁ = μ₀ + 0.5 v
(the "different distribution" column of the poster); m ∈ {10, 20, 40}; the n grid
is the authors' {m, 10m, 100m, 10⁴}; 20 seeds, each drawing μ₀, v and both
samples. Accuracy is the exact in-domain accuracy Φ(θᵀμ₀/‖θ‖). ERM minimises the
plain truncated hinge by full-batch heavy-ball GD from θ = 0; RSS minimises the
RSS objective from the ERM solution. Both trainings go through ``fit``
(``rss.linear_gd_task``, seeds as runs): ERM once per m (the labeled sample does
not depend on n: the seed keys are shared across the n grid), RSS once per
(m, n) cell — the cells' unlabeled samples differ in size, so each is its own
``fit`` (padding every cell to n = 10⁴ with zero weights would make one fit of
seeds × n but multiply the work by ~3). Full batch: no minibatches, as in the
old code and the authors' simulation.

Hyperparameters (fixed for every (m, n), chosen once from a pilot on 8 other
seeds at m = 10, n ∈ {10², 10³}, over γ ∈ {1, 10}, γ' ∈ {0.01, 0.03, 0.1, 1},
λ ∈ {1, 5}, κ ∈ {0, 0.01}, by mean RSS accuracy): γ = 1, γ' = 0.03, λ = 5,
κ = 0; GD step 0.5, momentum 0.9, 300 steps (1,000 steps changed nothing).
Unlike the authors' notebook, which picks each cell's hyperparameters by a
random search scored on the test set, nothing here sees test data.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs import ood_unlabeled as configs
from jaxrep.causal import robust_self_supervised as rss
from jaxrep.core import experiment, figures

def unlabeled_grid(m: int, n_max: int) -> list[int]:
  """The authors' grid {m, 10m, 100m, n_max} (capped at n_max, no repeats)."""
  return sorted({min(m * f, n_max) for f in (1, 10, 100)} | {n_max})


def train_labeled_size(ctx: experiment.Context, c, m: int) -> dict:
  """ERM and RSS (every n of the grid) for m labeled samples: per-seed in-domain
  accuracies and training curves."""
  keys = ctx.seed_keys(f"ood_unlabeled/m{m}", c.num_seeds)    # same draws across n
  sample = lambda n: jax.jit(jax.vmap(functools.partial(
      rss.sample_problem, dim=c.dim, num_labeled=m, num_unlabeled=n, alpha=c.alpha,
      std=c.std)))(keys)
  task = lambda objective: rss.linear_gd_task(objective, learning_rate=c.learning_rate,
                                              momentum=c.momentum)
  accuracy = jax.vmap(functools.partial(rss.population_accuracy, std=c.std))
  grid = unlabeled_grid(m, c.n_max)
  problem = sample(grid[0])
  erm = ctx.fit(f"erm_m{m}", task(functools.partial(rss.erm_objective,
                                                    weight_decay=c.weight_decay)),
                {"theta0": jnp.zeros((c.num_seeds, c.dim)),
                 "batch": {k: problem["batch"][k] for k in ("x", "y")}}, c.num_steps)
  theta_erm = erm.state.params["theta"]
  out = {"erm": np.asarray(accuracy(theta_erm, problem["mean"])),
         "erm_curve": erm.curves["loss"], "rss": {}, "rss_curve": {},
         "bayes": np.asarray(jax.vmap(rss.bayes_accuracy, (0, None))(problem["mean"], c.std)),
         "shifted_direction": np.asarray(accuracy(problem["mean_unlabeled"],
                                                  problem["mean"]))}
  rss_objective = functools.partial(
      rss.rss_objective, gamma=c.gamma, gamma_unlabeled=c.gamma_unlabeled, lam=c.lam,
      weight_decay=c.weight_decay)
  for n in grid:
    problem = sample(n)
    result = ctx.fit(f"rss_m{m}_n{n}", task(rss_objective),
                     {"theta0": theta_erm, "batch": problem["batch"]}, c.num_steps)
    out["rss"][n] = np.asarray(accuracy(result.state.params["theta"], problem["mean"]))
    out["rss_curve"][n] = result.curves["loss"]
  return out


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  results = {m: ctx.stage(f"m{m}", lambda: train_labeled_size(ctx, c, m))
             for m in c.labeled_sizes}
  measured, details, steps = {}, {"curves": {}}, []
  for m, r in results.items():
    grid = unlabeled_grid(m, c.n_max)
    means = np.asarray([r["rss"][n].mean() for n in grid])
    steps.append(np.min(np.diff(means), initial=np.inf))
    measured[f"erm_accuracy_m{m}"] = r["erm"]
    for n in grid:
      measured[f"rss_accuracy_m{m}_n{n}"] = r["rss"][n]
    measured[f"gain_m{m}_n{c.n_max}"] = r["rss"][c.n_max] - r["erm"]
    details["curves"][f"m{m}"] = {"n": grid, "rss_mean": means, "erm_mean": r["erm"].mean()}
  measured["min_rss_step_along_n"] = float(np.min(steps))
  first = results[c.labeled_sizes[0]]
  details["bayes_accuracy"] = float(first["bayes"].mean())
  details["shifted_direction_accuracy"] = float(first["shifted_direction"].mean())
  ctx.save_figure(plot(c, results, details))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, results, details):
  fig, (ax, ax_erm, ax_rss) = figures.panels(3)
  colors = ("tab:blue", "tab:red", "tab:green", "tab:purple")
  for (m, r), color in zip(results.items(), colors):
    grid = unlabeled_grid(m, c.n_max)
    acc = np.stack([r["rss"][n] for n in grid])        # (n grid, seeds)
    ax.errorbar(grid, acc.mean(1), yerr=acc.std(1), fmt="o--", color=color, capsize=3,
                label=f"RSS, m = {m}")
    ax.axhline(r["erm"].mean(), color=color, lw=1, label=f"ERM, m = {m}")
  ax.axhline(details["shifted_direction_accuracy"], color="gray", ls=":",
             label="direction of μ₁ (ceiling)")
  ax.axhline(details["bayes_accuracy"], color="k", ls="-.", label="Bayes")
  ax.set_xscale("log")
  ax.set(xlabel="unlabeled out-of-domain samples n", ylabel="in-domain accuracy",
         title=f"d = {c.dim}, shift α = {c.alpha} (mean ± std, {c.num_seeds} seeds)")
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3, which="both")
  figures.plot_curves(ax_erm, {f"ERM, m = {m}": r["erm_curve"] for m, r in results.items()},
                      ylabel="training objective", logy=False,
                      title="ERM (truncated hinge; reaches 0 when separable)")
  figures.plot_curves(ax_rss, {f"m = {m}, n = {n}": curve for m, r in results.items()
                               for n, curve in r["rss_curve"].items()},
                      ylabel="training objective", title="RSS objective")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="ood_unlabeled", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
