r"""Invariance-constrained augmentation (primal–dual + Metropolis–Hastings) on MNIST-1D.

Paper: Hounie, Chamon, Ribeiro, "Automatic Data Augmentation via
Invariance-Constrained Learning", ICML 2023 (code: ihounie/daug).

Command:   jaxrep run invariance_constrained_augmentation --workdir runs/daug
           (= python -m experiments.constrained_augmentation --workdir=runs/daug)
Runtime:   51 s measured on 2 CPU cores (quick mode: seconds).
Expected:  primal–dual augmentation ≥ uniform (TrivialAugment-style)
           augmentation + 1 test-accuracy point; with a loose constraint
           (ε = 10 nats) the multiplier, started at γ = 1, ends at exactly 0.

Protocol. MNIST-1D (the stored 4,000/1,000 split), a random subset of
``num_train`` = 1,000 training signals per seed, the full test set. A small
1-D CNN (three conv layers of 32 channels, kernels 5/3/3, strides 1/2/2, a
linear head) is trained by Adam for ``num_steps`` on batches of 64 with four
objectives, vmapped over seeds:

* ``erm``        mean CE on clean signals;
* ``uniform``    mean CE on signals moved by one uniformly drawn (op, level)
                 per example and step (identity, shift, scale, flip, noise,
                 erase × 10 levels) — the TrivialAugment-style baseline;
* ``pd``         the primal–dual objective of
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

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxrep import data
from jaxrep.core import experiment, train
from jaxrep.core.evaluate import accuracy
from jaxrep.nn import PatchConv1D
from jaxrep.symmetry import constrained_augmentation as ca

CLAIM = ("On MNIST-1D with 1,000 training signals, primal-dual augmentation with "
         "Metropolis-Hastings sampling beats uniform augmentation by ≥ 1 test-accuracy point, "
         "and a loose constraint drives its multiplier to 0.")
MIN_GAIN_OVER_UNIFORM = 1.0   # accuracy points
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


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 5
  c.num_train = 1000
  c.channels = 32
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.num_steps = 3000
  c.num_levels = 10
  c.num_mh_steps = 1
  c.margin = 0.6
  c.dual_lr = -1.0          # < 0: OFFICIAL_DUAL_BUDGET / num_steps
  c.loose_margin = 10.0
  c.loose_init_dual = 1.0
  c.max_shift = 10
  c.max_log_scale = 0.4
  c.noise_std = 1.0
  c.max_erase = 16
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_train = 200
  c.channels = 8
  c.batch_size = 32
  c.num_steps = 40
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.num_train > 4000:
    raise experiment.ConfigError("'num_train' must be ≤ 4000 (the MNIST-1D training split)")
  if c.batch_size > c.num_train:
    raise experiment.ConfigError("'batch_size' must be ≤ 'num_train'")
  if c.margin < 0 or c.loose_margin < 0 or c.loose_init_dual < 0:
    raise experiment.ConfigError("margins and the initial multiplier must be non-negative")
  if c.learning_rate <= 0:
    raise experiment.ConfigError("'learning_rate' must be positive")
  if c.max_erase >= 40 or c.max_shift >= 40:
    raise experiment.ConfigError("'max_erase' and 'max_shift' must be < 40 (signal length)")


def dual_lr(c) -> float:
  return OFFICIAL_DUAL_BUDGET / c.num_steps if c.dual_lr < 0 else c.dual_lr


def magnitudes(c) -> dict:
  return {"max_shift": c.max_shift, "max_log_scale": c.max_log_scale,
          "noise_std": c.noise_std, "max_erase": c.max_erase}


def make_loss(kind: str, model: ConvNet1D, c, margin):
  """(loss_fn, has_model_state) for "erm", "uniform" or "pd" (margin may be traced)."""
  if kind == "erm":
    def erm(params, batch, rng):
      del rng
      loss = ca.per_example_cross_entropy(model.apply, params, *batch).mean()
      return loss, {"clean_loss": loss}
    return erm, False
  if kind == "uniform":
    return ca.uniform_augmentation_loss(model.apply, c.num_levels, **magnitudes(c)), False
  return ca.primal_dual_loss(model.apply, margin, dual_lr(c), c.num_mh_steps, c.num_levels,
                             **magnitudes(c)), True


@functools.partial(jax.jit, static_argnames=("kind", "c"))
def _train(seed_keys, x_all, y_all, x_test, y_test, margin, init_dual, *, kind: str, c):
  model = ConvNet1D(10, c.channels)
  optimizer = optax.adam(c.learning_rate)
  loss_fn, has_state = make_loss(kind, model, c, margin)

  def one(key):
    key_subset, key_init, key_batches, key_state = jax.random.split(key, 4)
    subset = jax.random.permutation(key_subset, x_all.shape[0])[:c.num_train]
    x, y = x_all[subset], y_all[subset]
    state = train.init_train_state(model.init(key_init, x[:1]), optimizer, key_state,
                                   model_state=init_dual if has_state else None)
    step = train.make_train_step(loss_fn, optimizer, has_model_state=has_state, jit=False)

    def batch_fn(i):
      idx = jax.random.randint(jax.random.fold_in(key_batches, i), (c.batch_size,), 0,
                               c.num_train)
      return x[idx], y[idx]

    state, metrics = train.scan_steps(step, state, batch_fn, c.num_steps)
    test_acc = accuracy(model.apply(state.params, x_test), y_test)
    final_dual = state.model_state if has_state else jnp.zeros(())
    return test_acc, final_dual, metrics

  return jax.vmap(one)(seed_keys)


def train_method(method: str, c, seed_keys, arrays) -> dict:
  kind = "pd" if method.startswith("pd") else method
  margin, init_dual = (c.loose_margin, c.loose_init_dual) if method == "pd_loose" else (
      c.margin, 0.0)
  acc, final_dual, metrics = _train(seed_keys, *arrays, jnp.float32(margin),
                                    jnp.float32(init_dual), kind=kind,
                                    c=ml_collections.FrozenConfigDict(c))
  out = {"test_accuracy": 100 * np.asarray(acc), "final_dual": np.asarray(final_dual)}
  for name, values in metrics.items():
    out[name] = np.asarray(values)      # (seeds, steps, ...)
  return out


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train_set = data.load("mnist1d", "train", ctx.data_dir)
  test_set = data.load("mnist1d", "test", ctx.data_dir)
  arrays = tuple(jnp.asarray(a) for a in (train_set.x, train_set.y, test_set.x, test_set.y))
  seed_keys = ctx.seed_keys("training", c.num_seeds)
  meter = ctx.progress("methods", len(METHODS), unit="methods")
  results = {}
  for i, method in enumerate(METHODS):
    results[method] = ctx.stage(f"train-{method}",
                                lambda: train_method(method, c, seed_keys, arrays))
    every = max(1, c.num_steps // 100)
    for s in range(0, c.num_steps, every):
      row = {k: float(v[:, s].mean()) for k, v in results[method].items()
             if v.ndim == 2}
      ctx.logger.log(s, row, run=method)
    meter.update(i + 1, f"{method}: test accuracy {results[method]['test_accuracy'].mean():.2f}%")

  measured = {f"test_acc_{m}": results[m]["test_accuracy"] for m in METHODS}
  gain = results["pd"]["test_accuracy"] - results["uniform"]["test_accuracy"]
  measured["gain_pd_over_uniform"] = gain
  measured["gain_pd_over_erm"] = results["pd"]["test_accuracy"] - results["erm"]["test_accuracy"]
  measured["final_dual_pd"] = results["pd"]["final_dual"]
  measured["final_dual_pd_loose"] = results["pd_loose"]["final_dual"]
  loose_zero_step = [int(np.argmax(d == 0)) if np.any(d == 0) else -1
                     for d in results["pd_loose"]["dual"]]
  passed = bool(gain.mean() >= MIN_GAIN_OVER_UNIFORM and np.all(results["pd_loose"]["final_dual"] == 0))
  window = max(1, c.num_steps // 10)
  details = {
      "threshold_gain": MIN_GAIN_OVER_UNIFORM, "dual_lr": dual_lr(c),
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
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(c, results):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(16, 4))
  for i, method in enumerate(METHODS):
    values = results[method]["test_accuracy"]
    axes[0].bar(i, values.mean(), yerr=values.std(), alpha=0.8)
    axes[0].scatter(np.full(values.shape, i), values, color="k", s=10, zorder=3)
  low = min(results[m]["test_accuracy"].min() for m in METHODS)
  axes[0].set_xticks(range(len(METHODS)), METHODS)
  axes[0].set(ylabel="test accuracy (%)", ylim=(max(0, low - 5), 100),
              title=f"MNIST-1D, {c.num_train} training signals, {c.num_seeds} seeds")
  for method, color in (("pd", "tab:blue"), ("pd_loose", "tab:red")):
    axes[1].plot(results[method]["dual"].mean(0), color=color, label=f"γ ({method})")
    axes[1].plot(results[method]["constraint_loss"].mean(0), color=color, ls=":", alpha=0.6,
                 label=f"MH constraint loss ({method})")
  axes[1].axhline(c.margin, color="k", ls="--", lw=0.8, label="ε")
  axes[1].set(xlabel="step", title="multiplier and constraint", yscale="symlog")
  axes[1].legend(fontsize=7)
  window = max(1, c.num_steps // 10)
  freq = results["pd"]["op_frequency"][:, -window:].mean((0, 1))
  axes[2].bar(range(len(ca.OPS)), freq, color="tab:blue", label="PD (MH ∝ loss)")
  axes[2].axhline(1 / len(ca.OPS), color="k", ls="--", label="uniform proposal")
  axes[2].set_xticks(range(len(ca.OPS)), ca.OPS)
  axes[2].set(ylabel="frequency", title="ops in the MH sample (last 10% of steps)")
  axes[2].legend()
  for ax in axes:
    ax.grid(alpha=0.3)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="invariance_constrained_augmentation", claim=CLAIM, get_config=get_config,
    run=run, quick=quick, validate=validate, runtime_s=60,
    headline=("test_acc_uniform", "test_acc_pd", "gain_pd_over_uniform", "final_dual_pd_loose"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
