r"""PER soft-equivariance regularizers with auto-tuned strengths on modified inertia.

Paper: Kim, Lee, Yang, Lee, "Regularizing Towards Soft Equivariance Under Mixed
Symmetries", ICML 2023 (synthetic inertia task, from kim-hyunsu/PER).

Command:   jaxrep run soft_equivariance --workdir runs/soft_equivariance
           (= python -m experiments.soft_equivariance --workdir=runs/soft_equivariance)
Runtime:   5 min 19 s measured on 2 CPU cores (shared the cores with another run) (quick mode: seconds).
Expected:  test MSE(PER) < MSE(MLP) and < MSE(exact O(3) model); after
           auto-tuning, the largest λ is O(2) about z.

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
R_j averaged over the preceding ``window`` steps. All train with Adam (lr 1e-3,
cosine decay) on batches of 500 (2 steps per epoch), vmapped over seeds, for
16,000 steps = the repo's 8,000 epochs.

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

from jaxrep.core import experiment, train
from jaxrep.symmetry import soft_equivariance as se

CLAIM = ("On modified inertia, PER (projection regularizers with auto-tuned strengths) has "
         "lower test MSE than an MLP and than an exactly O(3)-equivariant model, and auto-"
         "tuning gives the largest strength to the exact symmetry O(2) about z.")
GROUPS = (se.o3(), se.o2_about(2), se.o2_about(0), se.o2_about(1))
GROUP_NAMES = ("O3", "O2_z", "O2_x", "O2_y")
EXACT_SYMMETRY = "O2_z"
MODELS = ("mlp", "emlp_o3", "per", "emlp_o2z")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_train = 1000
  c.num_test = 1000
  c.alpha = 0.3
  c.hidden_counts = (16, 8, 4)
  c.num_layers = 3
  c.mlp_width = 128
  c.batch_size = 500
  c.learning_rate = 1e-3
  c.num_steps = 16000
  c.adjust_at = 4000
  c.window = 100
  c.initial_lambda = (0.0, 100.0, 100.0, 100.0)
  c.adjust_power = 2.0
  c.weight_decay = 2e-4
  c.o2z_reference = False
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_train = 100
  c.num_test = 100
  c.hidden_counts = (4, 2, 1)
  c.num_layers = 1
  c.mlp_width = 16
  c.batch_size = 50
  c.num_steps = 20
  c.adjust_at = 10
  c.window = 5
  c.o2z_reference = False
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 < c.window <= c.adjust_at < c.num_steps:
    raise experiment.ConfigError("need 0 < window ≤ adjust_at < num_steps")
  if len(c.initial_lambda) != len(GROUPS) or min(c.initial_lambda) < 0:
    raise experiment.ConfigError(f"'initial_lambda' needs {len(GROUPS)} non-negative values")
  if c.batch_size > c.num_train:
    raise experiment.ConfigError("'batch_size' must be ≤ 'num_train'")
  if len(c.hidden_counts) != 3 or min(c.hidden_counts) < 1:
    raise experiment.ConfigError("'hidden_counts' must be 3 positive channel counts (ranks 0-2)")


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


def train_and_test(name: str, c, x, y, x_test, y_test, seed_keys):
  """Per-seed test MSE, training curve and (PER) the strengths and penalties.

  One ``lax.scan`` over all steps carries (train state, λ, penalty sum); at
  step ``adjust_at`` − 1 the strengths are retuned from the mean penalties of
  the preceding ``window`` steps (PER only).
  """
  model = make_model(name, c)
  optimizer = optax.adam(optax.cosine_decay_schedule(c.learning_rate, c.num_steps))
  soft = name == "per"

  def loss_fn(params, batch, rng):
    del rng
    xb, yb, lambdas = batch
    mse = jnp.mean((model.apply(params, xb) - yb) ** 2)
    if not soft:
      return mse, {"mse": mse, "penalties": jnp.zeros(len(GROUPS), mse.dtype)}
    penalties = se.network_penalties(params, model, GROUPS)
    linear = [v for k, v in params["params"].items() if k.startswith("linear_")]
    decay = sum(0.5 * jnp.sum(v**2) for v in linear)
    loss = mse + jnp.dot(lambdas, penalties) + c.weight_decay * decay
    return loss, {"mse": mse, "penalties": penalties}

  def one(key):
    key_init, key_batches, key_state = jax.random.split(key, 3)
    params = model.init(key_init, x[:1])
    state = train.init_train_state(params, optimizer, key_state)
    step = train.make_train_step(loss_fn, optimizer, jit=False)
    lambda0 = jnp.asarray(c.initial_lambda, x.dtype)

    def body(carry, i):
      state, lambdas, total = carry
      idx = jax.random.choice(jax.random.fold_in(key_batches, i), c.num_train,
                              (c.batch_size,), replace=False)
      state, metrics = step(state, (x[idx], y[idx], lambdas))
      in_window = (i >= c.adjust_at - c.window) & (i < c.adjust_at)
      total = total + jnp.where(in_window, metrics["penalties"], 0.0)
      if soft:
        retuned = se.auto_lambda(lambda0, total / c.window, c.adjust_power)
        lambdas = jnp.where(i == c.adjust_at - 1, retuned, lambdas)
      return (state, lambdas, total), metrics["mse"]

    init = (state, lambda0, jnp.zeros(len(GROUPS), x.dtype))
    (state, lambdas, total), curve = jax.lax.scan(body, init, jnp.arange(c.num_steps))
    mse = jnp.mean((model.apply(state.params, x_test) - y_test) ** 2)
    final_penalties = (se.network_penalties(state.params, model, GROUPS) if soft
                       else jnp.zeros(len(GROUPS)))
    return {"test_mse": mse, "curve": curve, "lambda": lambdas,
            "penalties_at_adjust": total / c.window, "final_penalties": final_penalties}

  out = jax.jit(jax.vmap(one))(seed_keys)
  return jax.tree_util.tree_map(np.asarray, out)


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  x, y = se.modified_inertia(ctx.key("train"), c.num_train, alpha=c.alpha)
  x_test, y_test = se.modified_inertia(ctx.key("test"), c.num_test, alpha=c.alpha)
  seed_keys = ctx.seed_keys("training", c.num_seeds)
  models = MODELS if c.o2z_reference else MODELS[:-1]
  results = {}
  meter = ctx.progress("models", len(models), unit="models")
  for i, name in enumerate(models):
    results[name] = ctx.stage(f"train-{name}", lambda: train_and_test(
        name, c, x, y, x_test, y_test, seed_keys))
    curve = results[name]["curve"].mean(0)
    for s in range(0, c.num_steps, max(1, c.num_steps // 100)):
      ctx.logger.log(s, {"train_mse": float(curve[s])}, run=name)
    meter.update(i + 1, f"{name}: test MSE {results[name]['test_mse'].mean():.4g}")

  per = results["per"]
  measured = {f"test_mse_{name}": results[name]["test_mse"] for name in models}
  for j, group in enumerate(GROUP_NAMES):
    measured[f"lambda_{group}"] = per["lambda"][:, j]
  largest = [GROUP_NAMES[j] for j in np.argmax(per["lambda"], axis=1)]
  measured["largest_lambda_is_exact_symmetry"] = np.array(
      [g == EXACT_SYMMETRY for g in largest], float)
  mse = {name: results[name]["test_mse"].mean() for name in models}
  passed = bool(mse["per"] < mse["mlp"] and mse["per"] < mse["emlp_o3"]
                and all(g == EXACT_SYMMETRY for g in largest))
  details = {"largest_lambda_group_per_seed": largest,
             "penalties_at_adjust": {g: per["penalties_at_adjust"][:, j]
                                     for j, g in enumerate(GROUP_NAMES)},
             "final_penalties": {g: per["final_penalties"][:, j]
                                 for j, g in enumerate(GROUP_NAMES)},
             "target_variance": float(jnp.var(y_test)),
             "note": "emlp_o2z (exactly O(2)_z-equivariant) is a reference, not part of the claim"}
  ctx.save_figure(plot(c, results))
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(c, results):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  colors = {"mlp": "tab:gray", "emlp_o3": "tab:orange", "per": "tab:blue",
            "emlp_o2z": "tab:green"}
  for k, name in enumerate(results):
    curve = results[name]["curve"].mean(0)
    axes[0].semilogy(np.arange(curve.size), curve, color=colors[name], label=name)
    values = results[name]["test_mse"]
    axes[1].bar(k, values.mean(), yerr=values.std(), color=colors[name])
    axes[1].scatter(np.full(values.shape, k), values, color="k", s=10, zorder=3)
  axes[0].axvline(c.adjust_at, color="k", ls=":", label="λ auto-tuned")
  axes[0].set(xlabel="step", ylabel="training MSE (batch)", title="training")
  axes[0].legend()
  axes[1].set_xticks(range(len(results)), list(results))
  axes[1].set(ylabel="test MSE", yscale="log", title=f"modified inertia ({c.num_seeds} seeds)")
  lambdas = results["per"]["lambda"]
  for s in range(lambdas.shape[0]):
    axes[2].plot(range(len(GROUP_NAMES)), np.maximum(lambdas[s], 1e-6), "o-", alpha=0.7,
                 label=f"seed {s}")
  axes[2].set_xticks(range(len(GROUP_NAMES)), GROUP_NAMES)
  axes[2].set(yscale="log", ylabel="λ after auto-tuning (0 shown at 1e-6)",
              title="PER strengths")
  axes[2].legend()
  for ax in axes:
    ax.grid(alpha=0.3)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="soft_equivariance", claim=CLAIM, get_config=get_config, run=run, quick=quick,
    validate=validate, runtime_s=330,
    headline=("test_mse_mlp", "test_mse_emlp_o3", "test_mse_per", "lambda_O2_z"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
