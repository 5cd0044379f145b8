r"""Interaction basis on MLPs with injected degeneracies (modular addition, MNIST-1D).

Paper: Bushnaq et al., "Using Degeneracy in the Loss Landscape for Mechanistic
Interpretability", 2024 (arXiv:2405.10927); the interaction basis (plain
Jacobians) of ApolloResearch/rib.

Command:   jaxrep run interaction_basis --workdir runs/interaction_basis
           (= python -m experiments.interaction_basis --workdir=runs/interaction_basis)
Runtime:   1 min 14 s measured on 2 CPU cores (quick mode: seconds).
Expected:  on every hidden layer, the interaction basis of the network with
           injected duplicated, dead (and unused) units has exactly as many
           non-degenerate directions as the original network's true rank; the
           top-k interaction directions keep 99% of the accuracy at a smaller k
           than the top-k principal components or the top-k neurons.
Measured (3 seeds, 128-unit layers + 16 duplicated, 16 dead, 16 unused units):
           counts equal the true rank everywhere (e.g. modadd layer 2: 31, the
           logit dimension; MNIST-1D layer 2: 10); k* interaction / PCA / neuron:
           modadd L1 31 / 74 / 116, L2 14 / 47 / 89; MNIST-1D L1 32 / 83 / 126,
           L2 6 / 54 / 117 → PASS.

Protocol. ``num_seeds`` ReLU MLPs (2 hidden layers of ``hidden`` units) are
trained per task as one vmapped program: modular addition a + b mod p (p = 31,
inputs one-hot(a) ⊕ one-hot(b)), trained and evaluated on the full 31 × 31
table (the object of study is the trained function, not generalisation), and
MNIST-1D (train split; bases on ``num_basis_examples`` training inputs,
accuracies on the test split). The analysis runs in float64.

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

from jaxrep import data
from jaxrep.core import experiment, train
from jaxrep.core.evaluate import accuracy
from jaxrep.probe import interaction_basis as ib

CLAIM = ("On MLPs with injected degeneracies, the interaction basis counts exactly the true "
         "number of non-degenerate directions per layer, and its top-k directions keep 99% of "
         "accuracy at smaller k than the PCA or neuron basis.")
RETAINED_FRACTION = 0.99
TASKS = ("modadd", "mnist1d")
BASES = ("interaction", "pca", "neuron")
VARIANTS = ("activation", "all")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.modulus = 31
  c.hidden = (128, 128)
  c.modadd_steps = 2000
  c.modadd_learning_rate = 3e-3
  c.mnist1d_steps = 3000
  c.mnist1d_batch_size = 128
  c.mnist1d_learning_rate = 1e-3
  c.num_basis_examples = 2000
  c.num_duplicate = 16
  c.num_dead = 16
  c.num_unused = 16
  c.rtol = 1e-8
  c.variants = VARIANTS
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.modulus = 7
  c.hidden = (16,)
  c.modadd_steps = 200
  c.mnist1d_steps = 100
  c.num_basis_examples = 200
  c.num_duplicate = 2
  c.num_dead = 2
  c.num_unused = 2
  c.variants = ("activation",)
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.modulus < 2:
    raise experiment.ConfigError("'modulus' must be ≥ 2")
  if len(c.hidden) < 1 or min(c.hidden) < 1:
    raise experiment.ConfigError("'hidden' must list at least one positive width")
  if c.num_duplicate > min(c.hidden):
    raise experiment.ConfigError("'num_duplicate' must not exceed the smallest hidden width")
  if "activation" not in c.variants or not set(c.variants) <= set(VARIANTS):
    raise experiment.ConfigError(f"'variants' must include 'activation' and lie in {VARIANTS}")
  if not 0 < c.rtol < 1:
    raise experiment.ConfigError("'rtol' must be in (0, 1)")


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


def train_networks(task: str, c, seed_keys, x, y, num_classes):
  """Params of one MLP per seed key, trained as one vmapped program."""
  model = MLP(tuple(c.hidden), num_classes)
  full_batch = task == "modadd"
  optimizer = optax.adam(c.modadd_learning_rate if full_batch else c.mnist1d_learning_rate)
  steps = c.modadd_steps if full_batch else c.mnist1d_steps
  batch_size = None if full_batch else c.mnist1d_batch_size
  x, y = jnp.asarray(x), jnp.asarray(y)

  def one(key):
    state, _ = train.fit_classifier(key, model.init, model.apply, optimizer, x, y,
                                    num_steps=steps, batch_size=batch_size)
    return state.params

  return jax.jit(jax.vmap(one))(seed_keys)


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
  unused = c.num_unused if variant == "all" else 0
  for hidden in range(len(layers) - 1):
    inputs = ib.node_layers(ib.mlp_sections(layers), x)[hidden]
    layers = ib.inject_degenerate_units(
        layers, hidden, jax.random.fold_in(key, hidden), inputs, num_duplicate=c.num_duplicate,
        num_dead=c.num_dead, num_unused=unused)
  return layers


@functools.partial(jax.jit, static_argnames=("layer", "rtol"))
def retention_curves(layers, bases, grams, x_basis, x_eval, y_eval, layer, rtol):
  """Accuracy (3, width + 2) when keeping the top k = 0 .. width + 1 directions of
  the interaction, PCA and neuron bases of hidden node layer ``layer``."""
  sections = ib.mlp_sections(layers)
  node_basis = ib.node_layers(sections, x_basis)[layer]
  node_eval = ib.node_layers(sections, x_eval)[layer]
  ks = jnp.arange(node_eval.shape[1] + 2)
  basis = bases[layer]
  mean_hat = ib.features_in_basis(basis, node_basis).mean(0)
  pca, _ = ib.pca_basis(node_basis, rtol)
  neurons = ib.neuron_basis(node_basis, grams[layer][1])

  def acc_interaction(k):
    kept = ib.ablate_to_top_k(basis, ib.augment(node_eval), k, mean_hat)
    return accuracy(ib.run_from_augmented(sections, layer, kept), y_eval)

  def acc_orthonormal(b, k):
    mean = (node_basis @ b.rotation).mean(0)
    return accuracy(ib.run_from(sections, layer, ib.ablate_to_top_k(b, node_eval, k, mean)),
                    y_eval)

  return jnp.stack([jax.lax.map(acc_interaction, ks),
                    jax.lax.map(lambda k: acc_orthonormal(pca, k), ks),
                    jax.lax.map(lambda k: acc_orthonormal(neurons, k), ks)])


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
  measured, details, results = {}, {}, {}
  meter = ctx.progress("tasks", len(TASKS) * (1 + c.num_seeds), unit="parts")
  done = 0
  for task in TASKS:
    task_data = load_task(task, c, ctx.data_dir)
    x_train, y_train, _, _, num_classes = task_data
    params = ctx.stage(f"train-{task}", lambda: train_networks(
        task, c, ctx.seed_keys(f"train-{task}", c.num_seeds), x_train, y_train, num_classes))
    done += 1
    meter.update(done, f"{task}: trained")
    inject_keys = ctx.seed_keys(f"inject-{task}", c.num_seeds)
    per_seed = []
    for s in range(c.num_seeds):
      seed_params = jax.tree.map(lambda a: a[s], params)
      with jax.enable_x64(True):
        per_seed.append(ctx.stage(f"analyse-{task}-{s}", lambda: analyse_seed(
            seed_params, inject_keys[s], task_data, c)))
      done += 1
      meter.update(done, f"{task} seed {s}: analysed")
    results[task] = per_seed

  counts_exact = True
  fewer = True
  for task, per_seed in results.items():
    measured[f"full_accuracy_{task}"] = np.array([r["full_accuracy"] for r in per_seed])
    num_hidden = len(per_seed[0]["true_rank"])
    for layer in range(num_hidden):
      name = f"{task}_L{layer + 1}"
      true_rank = np.array([r["true_rank"][layer] for r in per_seed])
      measured[f"true_rank_{name}"] = true_rank
      for variant in c.variants:
        count = np.array([r[f"count_interaction_{variant}"][layer] for r in per_seed])
        measured[f"count_interaction_{name}_{variant}"] = count
        measured[f"count_pca_{name}_{variant}"] = np.array(
            [r[f"count_pca_{variant}"][layer] for r in per_seed])
        details[f"count_neuron_{name}_{variant}"] = int(per_seed[0][f"count_neuron_{variant}"][layer])
        counts_exact &= bool(np.all(count == true_rank))
      kstar = np.array([r["kstar"][layer] for r in per_seed])  # (seeds, bases)
      for b, basis in enumerate(BASES):
        measured[f"kstar_{basis}_{name}"] = kstar[:, b]
      fewer &= bool(kstar[:, 0].mean() < kstar[:, 1].mean()
                    and kstar[:, 0].mean() < kstar[:, 2].mean())
    for variant in c.variants:
      details[f"max_output_change_{task}_{variant}"] = max(
          r[f"max_output_change_{variant}"] for r in per_seed)
    details[f"curves_{task}"] = np.mean([np.stack(r["curves"]) for r in per_seed], axis=0)
  details.update(counts_equal_true_rank=counts_exact, interaction_needs_fewer=fewer)
  ctx.save_figure(plot(results, c))
  return experiment.Outcome(measured=measured, passed=bool(counts_exact and fewer),
                            details=details)


def plot(results, c):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  num_hidden = len(c.hidden)
  fig, axes = plt.subplots(len(results), num_hidden, figsize=(6 * num_hidden, 4 * len(results)),
                           squeeze=False)
  colors = {"interaction": "tab:red", "pca": "tab:blue", "neuron": "tab:gray"}
  for row, (task, per_seed) in enumerate(results.items()):
    full = np.mean([r["full_accuracy"] for r in per_seed])
    for layer in range(num_hidden):
      ax = axes[row, layer]
      curves = np.stack([r["curves"][layer] for r in per_seed])  # (seeds, bases, ks)
      for b, basis in enumerate(BASES):
        kstar = np.mean([r["kstar"][layer][b] for r in per_seed])
        ax.plot(curves[:, b].mean(0), color=colors[basis], label=f"{basis} (k*≈{kstar:.1f})")
      ax.axhline(RETAINED_FRACTION * full, color="k", ls=":", label="99% of full accuracy")
      rank = np.mean([r["true_rank"][layer] for r in per_seed])
      ax.axvline(rank, color="tab:red", ls="--", alpha=0.5, label=f"true rank ≈ {rank:.1f}")
      ax.set(xscale="symlog", xlabel="directions kept k", ylabel="accuracy",
             title=f"{task}, hidden layer {layer + 1} (duplicated + dead units)")
      ax.legend(fontsize=8)
      ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="interaction_basis", claim=CLAIM, get_config=get_config, run=run, quick=quick,
    validate=validate, runtime_s=85,
    headline=("kstar_interaction_mnist1d_L1", "kstar_pca_mnist1d_L1",
              "kstar_interaction_modadd_L1", "kstar_pca_modadd_L1"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
