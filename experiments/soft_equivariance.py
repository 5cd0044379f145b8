r"""PER soft-equivariance regularizers with auto-tuned strengths on modified inertia.

Paper: Kim, Lee, Yang, Lee, "Regularizing Towards Soft Equivariance Under Mixed
Symmetries", ICML 2023 (synthetic inertia task, from kim-hyunsu/PER).

Command, runtime and expected result: ``experiments/configs/soft_equivariance.py``.

Protocol (the repo's defaults where they fit the CPU): ModifiedInertia with 5
bodies and α = 0.3 about z; 1,000 training and 1,000 test examples (the repo
also holds out 1,000 for validation/early stopping, which we do not use: every
model is evaluated after its last step). Models: an MLP (3 hidden layers of
128, swish), the exactly O(3)-equivariant ``TensorMLP`` (every layer P_O(3) W,
EMLP-style), and PER (the same TensorMLP with free weights, regularized by
Σ_j λ_j R_j over j ∈ {O(3), O(2)_z, O(2)_x, O(2)_y} plus weight decay 2e-4 on
its linear weights); ``o2z_reference=True`` adds the exactly O(2)_z-equivariant
TensorMLP for reference. As in the repo, λ starts at 0 for O(3) and 100 for
each O(2), and at ``adjust_at`` (a quarter of training, as the repo's 2,000 of
8,000 epochs) the strengths are retuned once, λ_j ← λ_j (min R / R_j)², from
R_j averaged over the preceding ``window`` steps: PER trains in two ``fit``
phases, the second resuming the first's state with the retuned λ. All train
with Adam (lr 1e-3, cosine decay) on minibatches of 500 drawn without
replacement within a step (a uniform random subset per step, the protocol of
the first runs; 2 steps per epoch), seeds on the mesh, for 16,000 steps = the
repo's 8,000 epochs.

History (reported, not hidden): a first run with 4,000 steps (adjust at 1,000)
gave test MSE MLP 5.26 ± 0.20, exact-O(3) 2.18 ± 1.0, PER 8.56 ± 0.10, exact
O(2)_z 2.07 ± 0.14, with λ largest on O(2)_z for 3/3 seeds. Every tensor model
was still far from converged (PER's training MSE ≈ 7, O(3)'s ≈ 1.5), so the
training length was set once to the official 8,000 epochs; nothing else changed.
The hidden representation (16 scalars + 8 vectors + 4 matrices) is smaller than
the repo's uniform_rep(128), for CPU time.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import soft_equivariance as configs
from jaxrep.core import experiment, figures, tasks
from jaxrep.symmetry import soft_equivariance as se

GROUPS = (se.o3(), se.o2_about(2), se.o2_about(0), se.o2_about(1))
GROUP_NAMES = ("O3", "O2_z", "O2_x", "O2_y")
EXACT_SYMMETRY = "O2_z"
MODELS = ("mlp", "emlp_o3", "per", "emlp_o2z")


class MLP(nn.Module):
  width: int
  num_layers: int
  out: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.num_layers):
      x = nn.swish(nn.Dense(self.width)(x))
    return nn.Dense(self.out)(x)


def make_model(name: str, c):
  if name == "mlp":
    return MLP(c.mlp_width, c.num_layers, 9)
  exact = {"emlp_o3": se.o3(), "emlp_o2z": se.o2_about(2), "per": None}[name]
  return se.TensorMLP(se.TensorRep((5, 5)), se.TensorRep(tuple(c.hidden_counts)),
                      se.TensorRep((0, 0, 1)), c.num_layers, exact)


def mse_loss_fn(model):
  def loss_fn(params, batch, rng):
    mse = jnp.mean((model.apply(params, batch["x"]) - batch["y"]) ** 2)
    return mse, {"mse": mse}
  return loss_fn


def train_and_test(ctx, name: str, c, train: dict, test: dict) -> dict:
  """Per-seed test MSE, training curve and (PER) the strengths and penalties.

  PER trains in two phases: ``adjust_at`` steps at the initial λ, then the
  strengths are retuned from the mean penalties of the last ``window`` steps
  and training resumes from the first phase's state with the new λ.
  """
  model = make_model(name, c)
  soft = name == "per"
  loss_fn = se.per_loss_fn(model, GROUPS, c.weight_decay) if soft else mse_loss_fn(model)
  task = tasks.minibatch_task(lambda key, rows: model.init(key, rows["x"]), loss_fn,
                              optax.adam(optax.cosine_decay_schedule(c.learning_rate,
                                                                     c.num_steps)),
                              batch_size=c.batch_size, replace=False)
  runs = {"key": ctx.seed_keys("training", c.num_seeds)}
  if not soft:
    result = ctx.fit(name, task, runs, c.num_steps, data={"examples": train})
    state, curve, out = result.state, result.curves["mse"], {}
  else:
    lambda0 = jnp.broadcast_to(jnp.asarray(c.initial_lambda, jnp.float32),
                               (c.num_seeds, len(GROUPS)))
    first = ctx.fit("per_before_tuning", task, {**runs, "hparams": {"lambdas": lambda0}},
                    c.adjust_at, data={"examples": train})
    penalties_at_adjust = first.curves["penalties"][:, -c.window:].mean(1)
    lambdas = jax.vmap(se.auto_lambda, (0, 0, None))(lambda0, penalties_at_adjust,
                                                     c.adjust_power)
    resume = tasks.Task(lambda inputs: inputs["state"], task.step)
    second = ctx.fit(name, resume, {**runs, "state": first.state, "hparams": {"lambdas": lambdas}},
                     c.num_steps - c.adjust_at, data={"examples": train})
    state = second.state
    curve = np.concatenate([first.curves["mse"], second.curves["mse"]], axis=1)
    out = {"lambda": np.asarray(lambdas), "penalties_at_adjust": penalties_at_adjust,
           "final_penalties": np.asarray(jax.jit(jax.vmap(
               lambda p: se.network_penalties(p, model, GROUPS)))(state.params))}
  test_mse = jax.jit(jax.vmap(lambda p: jnp.mean((model.apply(p, test["x"]) - test["y"]) ** 2)))
  return {"test_mse": np.asarray(test_mse(state.params)), "curve": curve, **out}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train = dict(zip("xy", se.modified_inertia(ctx.key("train"), c.num_train, alpha=c.alpha)))
  test = dict(zip("xy", se.modified_inertia(ctx.key("test"), c.num_test, alpha=c.alpha)))
  models = MODELS if c.o2z_reference else MODELS[:-1]
  results = {name: ctx.stage(f"train-{name}", lambda: train_and_test(ctx, name, c, train, test))
             for name in models}

  per = results["per"]
  measured = {f"test_mse_{name}": results[name]["test_mse"] for name in models}
  measured["mse_per_minus_mlp"] = per["test_mse"] - results["mlp"]["test_mse"]
  measured["mse_per_minus_emlp_o3"] = per["test_mse"] - results["emlp_o3"]["test_mse"]
  for j, group in enumerate(GROUP_NAMES):
    measured[f"lambda_{group}"] = per["lambda"][:, j]
  largest = [GROUP_NAMES[j] for j in np.argmax(per["lambda"], axis=1)]
  measured["largest_lambda_is_exact_symmetry"] = np.array(
      [g == EXACT_SYMMETRY for g in largest], float)
  details = {"largest_lambda_group_per_seed": largest,
             "penalties_at_adjust": {g: per["penalties_at_adjust"][:, j]
                                     for j, g in enumerate(GROUP_NAMES)},
             "final_penalties": {g: per["final_penalties"][:, j]
                                 for j, g in enumerate(GROUP_NAMES)},
             "target_variance": float(jnp.var(test["y"])),
             "note": "emlp_o2z (exactly O(2)_z-equivariant) is a reference, not part of the claim"}
  ctx.save_figure(plot(c, results))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, results):
  fig, (ax_curves, ax_bars, ax_lambda) = figures.panels(3)
  figures.plot_curves(ax_curves, {name: r["curve"] for name, r in results.items()},
                      ylabel="training MSE (batch)", title="training")
  ax_curves.axvline(c.adjust_at, color="k", ls=":", label="λ auto-tuned")
  ax_curves.legend(fontsize="small")
  figures.bars_with_seeds(ax_bars, {name: r["test_mse"] for name, r in results.items()},
                          ylabel="test MSE", title=f"modified inertia ({c.num_seeds} seeds)")
  ax_bars.set_yscale("log")
  lambdas = results["per"]["lambda"]
  for s in range(lambdas.shape[0]):
    ax_lambda.plot(range(len(GROUP_NAMES)), np.maximum(lambdas[s], 1e-6), "o-", alpha=0.7,
                   label=f"seed {s}")
  ax_lambda.set_xticks(range(len(GROUP_NAMES)), GROUP_NAMES)
  ax_lambda.set(yscale="log", ylabel="λ after auto-tuning (0 shown at 1e-6)",
                title="PER strengths")
  ax_lambda.legend()
  ax_lambda.grid(alpha=0.3)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="soft_equivariance", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
