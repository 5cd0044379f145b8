r"""Interaction basis on MLPs with injected degeneracies (modular addition, MNIST-1D).

Paper: Bushnaq et al., "Using Degeneracy in the Loss Landscape for Mechanistic
Interpretability", 2024 (arXiv:2405.10927); the interaction basis (plain
Jacobians) of ApolloResearch/rib.

Command, runtime, expected and measured result: ``experiments/configs/interaction_basis.py``.

Protocol. ``num_seeds`` ReLU MLPs (2 hidden layers of ``hidden`` units) are
trained per task by one ``fit`` over seeds (Adam): modular addition a + b mod p
(p = 31, inputs one-hot(a) ⊕ one-hot(b)), trained by full-batch steps and
evaluated on the full 31 × 31 table (the object of study is the trained
function, not generalisation), and MNIST-1D (train split, minibatches drawn
without replacement within a step, the original run's protocol, kept; bases on
``num_basis_examples`` training inputs, accuracies on the test split). The
analysis runs in float64.

Degeneracies (function-preserving, checked) are injected into every hidden
layer: ``num_duplicate`` duplicated units with split outgoing weights and
``num_dead`` units that never fire ("activation" variant); the "all" variant
also adds ``num_unused`` live units with zero outgoing weights (a gradient
degeneracy that PCA cannot see). The true rank of a layer is
rank(M'^{1/2} G^{1/2}) of the ORIGINAL network by SVD (no whitening, no
truncation), with the same relative threshold ``rtol`` as the basis.

Top-k retention (on the "activation" variant): keep the top-k directions of a
basis and set the others to their training mean; k* is the smallest k whose
accuracy is ≥ 99% of the unablated accuracy. Bases: interaction (sorted by Λ,
over [f, 1]), PCA (centred, sorted by variance), neurons (sorted by
Var(f_i)·E[‖∂f̂_next/∂f_i‖²], the variance-weighted gradient the next layer
passes back — a strong neuron ranking).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import interaction_basis as configs
from jaxrep import data
from jaxrep.core import experiment, figures, tasks
from jaxrep.core.evaluate import accuracy
from jaxrep.probe import interaction_basis as ib

RETAINED_FRACTION = 0.99
TASKS = ("modadd", "mnist1d")
BASES = ("interaction", "pca", "neuron")


class MLP(nn.Module):
  """ReLU MLP: x (n, d) → logits (n, K)."""

  hidden: tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def dense_layers(params) -> list[tuple[jax.Array, jax.Array]]:
  """[(kernel, bias)] of the MLP's Dense layers in order."""
  inner = params["params"]
  return [(inner[f"Dense_{i}"]["kernel"], inner[f"Dense_{i}"]["bias"])
          for i in range(len(inner))]


def modular_addition(p: int) -> tuple[np.ndarray, np.ndarray]:
  """All p² pairs: x = one-hot(a) ⊕ one-hot(b) (p², 2p), y = (a + b) mod p."""
  a, b = np.divmod(np.arange(p * p), p)
  eye = np.eye(p, dtype=np.float32)
  return np.concatenate([eye[a], eye[b]], axis=1), ((a + b) % p).astype(np.int32)


def load_task(task: str, c, data_dir):
  """(x_train, y_train, x_eval, y_eval, num_classes)."""
  if task == "modadd":
    x, y = modular_addition(c.modulus)
    return x, y, x, y, c.modulus
  train_set = data.load("mnist1d", "train", data_dir)
  test_set = data.load("mnist1d", "test", data_dir)
  mean, std = train_set.x.mean(), train_set.x.std()
  return ((train_set.x - mean) / std, train_set.y, (test_set.x - mean) / std, test_set.y,
          train_set.num_classes)


def train_networks(ctx, task: str, c, x, y, num_classes) -> tuple[dict, np.ndarray]:
  """Params of one MLP per seed, trained by one ``fit``, and the loss curves."""
  model = MLP(tuple(c.hidden), num_classes)
  full_batch = task == "modadd"
  learning_rate = c.modadd_learning_rate if full_batch else c.mnist1d_learning_rate
  train_task = tasks.classifier_task(model.init, model.apply, optax.adam(learning_rate),
                                     batch_size=None if full_batch else c.mnist1d_batch_size,
                                     replace=False)
  result = ctx.fit(f"train-{task}", train_task,
                   {"key": ctx.seed_keys(f"train-{task}", c.num_seeds)},
                   c.modadd_steps if full_batch else c.mnist1d_steps,
                   data={"examples": {"x": x, "y": y}})
  return result.state.params, result.curves["loss"]


@functools.partial(jax.jit, static_argnames=("rtol",))
def bases_and_ranks(layers, x, rtol):
  """Interaction bases and grams of every node layer, rank(M'^{1/2} G^{1/2}) and the
  rank of E[f̃ f̃ᵀ] (the activation-only count) of the hidden node layers."""
  bases, grams = ib.interaction_bases_and_grams(ib.mlp_sections(layers), x, rtol)
  hidden = range(1, len(layers))
  ranks = jnp.stack([ib.nondegenerate_rank(*grams[k], rtol) for k in hidden])
  gram_ranks = jnp.stack([ib.numerical_rank(grams[k][0], rtol) for k in hidden])
  return bases, grams, ranks, gram_ranks


@functools.partial(jax.jit, static_argnames=("variant", "c"))
def inject(layers, key, x, variant: str, c):
  """Degenerate units in every hidden layer (see the module docstring)."""
  return ib.inject_into_hidden_layers(layers, key, x, num_duplicate=c.num_duplicate,
                                      num_dead=c.num_dead,
                                      num_unused=c.num_unused if variant == "all" else 0)


@functools.partial(jax.jit, static_argnames=("layer", "rtol"))
def retention_curves(layers, bases, grams, x_basis, x_eval, y_eval, layer, rtol):
  return ib.retention_curves(ib.mlp_sections(layers), layer, bases[layer], grams[layer][1],
                             x_basis, x_eval, y_eval, rtol)


def smallest_sufficient_k(curve: np.ndarray, full: float) -> int:
  """The smallest k with accuracy ≥ RETAINED_FRACTION · full."""
  return int(np.flatnonzero(curve >= RETAINED_FRACTION * full - 1e-12)[0])


@jax.jit
def logits_of(layers, x):
  return ib.node_layers(ib.mlp_sections(layers), x)[-1]


def analyse_seed(params, key, task_data, c) -> dict:
  """Counts, true ranks and retention curves of one trained network (float64)."""
  x_train, _, x_eval, y_eval, _ = task_data
  x_basis = jnp.asarray(x_train[:c.num_basis_examples], jnp.float64)
  x_eval, y_eval = jnp.asarray(x_eval, jnp.float64), jnp.asarray(y_eval)
  base = [(jnp.asarray(k, jnp.float64), jnp.asarray(b, jnp.float64))
          for k, b in dense_layers(params)]
  both = jnp.concatenate([x_basis, x_eval])
  frozen = ml_collections.FrozenConfigDict(c)
  _, _, true_ranks, _ = bases_and_ranks(base, x_basis, c.rtol)
  out = {"true_rank": np.asarray(true_ranks)}
  base_logits = logits_of(base, both)
  out["full_accuracy"] = float(accuracy(base_logits[len(x_basis):], y_eval))
  for variant in c.variants:
    layers = inject(base, key, both, variant, frozen)
    logits = logits_of(layers, both)
    out[f"max_output_change_{variant}"] = float(jnp.max(jnp.abs(logits - base_logits)))
    bases, grams, ranks, gram_ranks = bases_and_ranks(layers, x_basis, c.rtol)
    out[f"count_interaction_{variant}"] = np.array(
        [int(bases[k].num_directions) for k in range(1, len(layers))])
    out[f"count_pca_{variant}"] = np.asarray(gram_ranks)  # activation degeneracy only
    out[f"count_neuron_{variant}"] = np.array([layers[k][0].shape[0] + 1
                                               for k in range(1, len(layers))])
    out[f"rank_{variant}"] = np.asarray(ranks)
    if variant == "activation":
      out["curves"] = [np.asarray(retention_curves(layers, bases, grams, x_basis, x_eval, y_eval,
                                                   k, c.rtol)) for k in range(1, len(layers))]
  out["kstar"] = np.array([[smallest_sufficient_k(curve[b], out["full_accuracy"])
                            for b in range(len(BASES))] for curve in out["curves"]])
  return out


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  measured, details, results, loss_curves = {}, {}, {}, {}
  meter = ctx.progress("tasks", len(TASKS) * (1 + c.num_seeds), unit="parts")
  for t, task in enumerate(TASKS):
    task_data = load_task(task, c, ctx.data_dir)
    x_train, y_train, _, _, num_classes = task_data
    params, loss_curves[task] = ctx.stage(f"fit-{task}", lambda: train_networks(
        ctx, task, c, x_train, y_train, num_classes))
    inject_keys = ctx.seed_keys(f"inject-{task}", c.num_seeds)
    results[task] = []
    for s in range(c.num_seeds):
      seed_params = jax.tree.map(lambda a: a[s], params)
      with jax.enable_x64(True):
        results[task].append(ctx.stage(f"analyse-{task}-{s}", lambda: analyse_seed(
            seed_params, inject_keys[s], task_data, c)))
      meter.update(t * (1 + c.num_seeds) + s + 2, f"{task} seed {s}: analysed")

  count_error = np.zeros(c.num_seeds)  # per seed: max |interaction count − true rank|
  savings = {"pca": [], "neuron": []}  # seed-mean k*(basis) − k*(interaction) per layer
  for task, per_seed in results.items():
    measured[f"full_accuracy_{task}"] = np.array([r["full_accuracy"] for r in per_seed])
    for layer in range(len(per_seed[0]["true_rank"])):
      name = f"{task}_L{layer + 1}"
      true_rank = np.array([r["true_rank"][layer] for r in per_seed])
      measured[f"true_rank_{name}"] = true_rank
      for variant in c.variants:
        count = np.array([r[f"count_interaction_{variant}"][layer] for r in per_seed])
        measured[f"count_interaction_{name}_{variant}"] = count
        measured[f"count_pca_{name}_{variant}"] = np.array(
            [r[f"count_pca_{variant}"][layer] for r in per_seed])
        details[f"count_neuron_{name}_{variant}"] = int(per_seed[0][f"count_neuron_{variant}"][layer])
        count_error = np.maximum(count_error, np.abs(count - true_rank))
      kstar = np.array([r["kstar"][layer] for r in per_seed])  # (seeds, bases)
      for b, basis in enumerate(BASES):
        measured[f"kstar_{basis}_{name}"] = kstar[:, b]
      savings["pca"].append(kstar[:, 1].mean() - kstar[:, 0].mean())
      savings["neuron"].append(kstar[:, 2].mean() - kstar[:, 0].mean())
    for variant in c.variants:
      details[f"max_output_change_{task}_{variant}"] = max(
          r[f"max_output_change_{variant}"] for r in per_seed)
    details[f"curves_{task}"] = np.mean([np.stack(r["curves"]) for r in per_seed], axis=0)
  measured["max_count_error_interaction"] = count_error
  for basis, values in savings.items():
    measured[f"min_kstar_saving_vs_{basis}"] = float(np.min(values))
  ctx.save_figure(plot(results, loss_curves, c))
  return experiment.Outcome(measured=measured, details=details)


def plot(results, loss_curves, c):
  num_hidden = len(c.hidden)
  fig, axes = figures.panels(len(results) * num_hidden + 1, width=4.6)
  colors = {"interaction": "tab:red", "pca": "tab:blue", "neuron": "tab:gray"}
  for row, (task, per_seed) in enumerate(results.items()):
    full = np.mean([r["full_accuracy"] for r in per_seed])
    for layer in range(num_hidden):
      ax = axes[row * num_hidden + layer]
      curves = np.stack([r["curves"][layer] for r in per_seed])  # (seeds, bases, ks)
      for b, basis in enumerate(BASES):
        kstar = np.mean([r["kstar"][layer][b] for r in per_seed])
        ax.plot(curves[:, b].mean(0), color=colors[basis], label=f"{basis} (k*≈{kstar:.1f})")
      ax.axhline(RETAINED_FRACTION * full, color="k", ls=":", label="99% of full accuracy")
      rank = np.mean([r["true_rank"][layer] for r in per_seed])
      ax.axvline(rank, color="tab:red", ls="--", alpha=0.5, label=f"true rank ≈ {rank:.1f}")
      ax.set(xscale="symlog", xlabel="directions kept k", ylabel="accuracy",
             title=f"{task}, layer {layer + 1} + duplicated, dead units")
      ax.legend(fontsize=8)
      ax.grid(alpha=0.3)
  figures.plot_curves(axes[-1], loss_curves, title="training (loss; modadd full batch)")
  fig.tight_layout()
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="interaction_basis", get_config=configs.get_config, run=run, quick=configs.quick,
    validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
