r"""Invariance-constrained augmentation (primal–dual + Metropolis–Hastings) on MNIST-1D.

Paper: Hounie, Chamon, Ribeiro, "Automatic Data Augmentation via
Invariance-Constrained Learning", ICML 2023 (code: ihounie/daug).

Command, runtime and expected result: ``experiments/configs/constrained_augmentation.py``.

Protocol. MNIST-1D (the stored 4,000/1,000 split), a random subset of
``num_train`` = 1,000 training signals per seed, the full test set. A small
1-D CNN (three conv layers of 32 channels, kernels 5/3/3, strides 1/2/2, a
linear head) is trained by Adam for ``num_steps`` on minibatches of 64 drawn
with replacement (i.i.d. uniform indices, the protocol of the first runs) with
four objectives, seeds on the mesh:

* ``erm``        mean CE on clean signals;
* ``uniform``    mean CE on signals moved by one uniformly drawn (op, level)
                 per example and step (identity, shift, scale, flip, noise,
                 erase × 10 levels) — the TrivialAugment-style baseline;
* ``pd``         the primal–dual step of
                 ``jaxrep.symmetry.constrained_augmentation`` with one
                 independent-MH step (the official "MH steps = 2"), γ₀ = 0;
* ``pd_loose``   the same with a loose margin ε_loose, started at γ₀ = 1.

Hyperparameters (fixed before the first run, not tuned on results): the
margin ε = 0.6 is the official CIFAR setting; the dual step size keeps the
official run's total dual budget η_γ × steps = 1e-4 × 78,200 (200 epochs of
391 steps), i.e. η_γ = 7.82 / num_steps; Adam lr 1e-3 and 3,000 steps (192
epochs of the 1,000-signal subset) from a pilot of the ERM loss curve.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

from experiments.configs import constrained_augmentation as configs
from jaxrep import data
from jaxrep.core import experiment, figures, tasks
from jaxrep.core.evaluate import accuracy
from jaxrep.nn import PatchConv1D
from jaxrep.symmetry import constrained_augmentation as ca

METHODS = ("erm", "uniform", "pd", "pd_loose")
OFFICIAL_DUAL_BUDGET = 1e-4 * 200 * 391


class ConvNet1D(nn.Module):
  """x (n, length) → logits (n, classes): three ReLU conv layers and a linear head."""

  num_classes: int = 10
  channels: int = 32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x[..., None]
    for kernel, stride in ((5, 1), (3, 2), (3, 2)):
      h = nn.relu(PatchConv1D(self.channels, kernel, stride)(h))
    return nn.Dense(self.num_classes)(h.reshape(h.shape[0], -1))


def dual_lr(c) -> float:
  return OFFICIAL_DUAL_BUDGET / c.num_steps if c.dual_lr < 0 else c.dual_lr


def make_task(method: str, model: ConvNet1D, c) -> tasks.Task:
  """The training task of one method; all draw minibatches with replacement."""
  optimizer = optax.adam(c.learning_rate)
  magnitudes = {"max_shift": c.max_shift, "max_log_scale": c.max_log_scale,
                "noise_std": c.noise_std, "max_erase": c.max_erase}
  if method == "erm":
    return tasks.classifier_task(model.init, model.apply, optimizer, batch_size=c.batch_size,
                                 replace=True)
  if method == "uniform":
    return tasks.minibatch_task(lambda key, rows: model.init(key, rows["x"]),
                                ca.uniform_augmentation_loss(model.apply, c.num_levels,
                                                             **magnitudes),
                                optimizer, batch_size=c.batch_size, replace=True)
  loose = method == "pd_loose"
  return ca.primal_dual_task(
      model.init, model.apply, optimizer, batch_size=c.batch_size, replace=True,
      margin=c.loose_margin if loose else c.margin, dual_lr=dual_lr(c),
      init_dual=c.loose_init_dual if loose else 0.0, num_mh_steps=c.num_mh_steps,
      num_levels=c.num_levels, **magnitudes)


def train_method(ctx, method: str, c, runs, test) -> dict:
  """Trains one network per seed (seeds on the mesh): per-seed test accuracy (%),
  the final multiplier (PD) and every training curve (seeds, steps, ...)."""
  model = ConvNet1D(10, c.channels)
  result = ctx.fit(method, make_task(method, model, c), runs, c.num_steps)
  test_acc = jax.jit(jax.vmap(lambda p: 100 * accuracy(model.apply(p, test.x), test.y)))
  dual = result.state.model_state
  return {"test_accuracy": np.asarray(test_acc(result.state.params)),
          "final_dual": np.zeros(c.num_seeds) if dual is None else np.asarray(dual),
          **result.curves}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train_set = data.load("mnist1d", "train", ctx.data_dir)
  test_set = data.load("mnist1d", "test", ctx.data_dir)
  keys = jax.vmap(jax.random.split)(ctx.seed_keys("training", c.num_seeds))
  subsets = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, len(train_set.y)))(
      keys[:, 0]))[:, :c.num_train]
  runs = {"key": keys[:, 1], "examples": {"x": train_set.x[subsets], "y": train_set.y[subsets]}}
  results = {m: ctx.stage(f"train-{m}", lambda: train_method(ctx, m, c, runs, test_set))
             for m in METHODS}

  accuracy_of = {m: results[m]["test_accuracy"] for m in METHODS}
  gain = accuracy_of["pd"] - accuracy_of["uniform"]
  measured = {f"test_acc_{m}": accuracy_of[m] for m in METHODS}
  measured.update(gain_pd_over_uniform=gain,
                  gain_pd_over_erm=accuracy_of["pd"] - accuracy_of["erm"],
                  final_dual_pd=results["pd"]["final_dual"],
                  final_dual_pd_loose=results["pd_loose"]["final_dual"])
  loose_zero_step = [int(np.argmax(d == 0)) if np.any(d == 0) else -1
                     for d in results["pd_loose"]["dual"]]
  window = max(1, c.num_steps // 10)
  details = {
      "dual_lr": dual_lr(c),
      "pd_loose_first_step_at_zero": loose_zero_step,
      "mh_op_frequency_last_10pct": {
          m: dict(zip(ca.OPS, results[m]["op_frequency"][:, -window:].mean((0, 1)).tolist()))
          for m in ("pd", "pd_loose")},
      "mh_acceptance_mean": {m: float(results[m]["acceptance"].mean())
                             for m in ("pd", "pd_loose")},
      "final_constraint_loss": {m: float(results[m]["constraint_loss"][:, -window:].mean())
                                for m in ("pd", "pd_loose")},
  }
  ctx.save_figure(plot(c, results))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, results):
  fig, (ax_curves, ax_bars, ax_dual, ax_ops) = figures.panels(4)
  figures.plot_curves(ax_curves, {m: results[m].get("clean_loss", results[m]["loss"])
                                  for m in METHODS},
                      title="training CE (batch; augmented for uniform)")
  figures.bars_with_seeds(ax_bars, {m: results[m]["test_accuracy"] for m in METHODS},
                          ylabel="test accuracy (%)", title=f"MNIST-1D, {c.num_train} "
                          f"training signals, {c.num_seeds} seeds")
  for method, color in (("pd", "tab:blue"), ("pd_loose", "tab:red")):
    ax_dual.plot(results[method]["dual"].mean(0), color=color, label=f"γ ({method})")
    ax_dual.plot(results[method]["constraint_loss"].mean(0), color=color, ls=":", alpha=0.6,
                 label=f"MH constraint loss ({method})")
  ax_dual.axhline(c.margin, color="k", ls="--", lw=0.8, label="ε")
  ax_dual.set(xlabel="step", title="multiplier and constraint", yscale="symlog")
  ax_dual.legend(fontsize=7)
  window = max(1, c.num_steps // 10)
  ax_ops.bar(range(len(ca.OPS)), results["pd"]["op_frequency"][:, -window:].mean((0, 1)),
             color="tab:blue", label="PD (MH ∝ loss)")
  ax_ops.axhline(1 / len(ca.OPS), color="k", ls="--", label="uniform proposal")
  ax_ops.set_xticks(range(len(ca.OPS)), ca.OPS)
  ax_ops.set(ylabel="frequency", title="ops in the MH sample (last 10% of steps)")
  ax_ops.legend()
  for ax in (ax_dual, ax_ops):
    ax.grid(alpha=0.3)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="invariance_constrained_augmentation", get_config=configs.get_config,
    run=run, quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
