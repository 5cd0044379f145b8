r"""R²⋊SL(2) group convolutions vs a parameter-matched CNN on affine-perturbed digits.

Paper: Mironenco & Forré, "Lie Group Decompositions for Equivariant Neural
Networks", ICLR 2024 (affNIST: train on untransformed MNIST, test on affine
transforms).

Command, runtime and expected result: ``experiments/configs/lie_decomposition.py``.

Protocol ("affDigits", our scaled-down affNIST). sklearn 8×8 digits (values /16)
are zero-padded to 24×24 and both models train on the untransformed training
split (1,437 images). The OOD test set draws ``num_test_transforms`` affNIST-style
perturbations of every test image (rotation ±20°, shear ±45°, per-axis scale
0.8–1.2, then a shift that keeps the digit inside the canvas, bilinear). The
group network (``AffineGroupCNN``: lifting 5×5 → 2×2 max pool → R²⋊G
convolution 3×3, 16 channels, SIREN kernels, ``num_samples`` = 4 Monte-Carlo
group samples per layer drawn afresh every forward pass, equidistant rotations
× log-normal SPD factors with variance 0.1 (the official sampler defaults),
global max pooling) is compared with the same pipeline without the group
(``PlainCNN``), whose width is chosen so its parameter count is the closest to
the group network's. Both train with Adam (lr 3e-3) for ``num_steps`` = 600 steps (≈13 epochs) on
minibatches of 32 drawn without replacement within a step (a uniform random
subset per step, the protocol of the first runs), seeds on the mesh;
evaluation also uses fresh group samples per batch of 200.

History and choices (reported, not hidden). Compute: the R²⋊G convolution costs
(channels × samples)² per tap; 16 channels × 8 samples × 5×5 took ≈1.6 CPU-s
per step and seed, so the paper's 10 samples, 5×5 group kernels, deeper
residual network and 256-unit head are out of the CPU budget. A first default
run (12 channels × 6 samples, otherwise as now) FAILED: OOD accuracy CNN
0.452 ± 0.018 vs group network 0.220 ± 0.057 (in-distribution 0.977 vs 0.495),
the group network's training loss still ≈ 1.6 after 600 steps. Pilots on
training loss only (150 steps, one seed): learning rates 3e-4/1e-3 and SIREN
ω₀ ∈ {1, 3, 30} did not help; narrow networks learn slowly in this max-pooled
pipeline (PlainCNN with 8 channels: 54.5% vs 27 channels: 97.5%), and the
Monte-Carlo SPD factor is what stalls the group network (16 channels × 4
samples: 24% with SPD variance 0.1, 78.5% with SPD variance 1e-6, i.e. C4
only). The width was then set once to 16 channels × 4 samples (compute-neutral);
the sampler keeps the official variance, since it defines the method.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import lie_decomposition as configs
from jaxrep import data
from jaxrep.core import experiment, figures, tasks
from jaxrep.symmetry import lie_decomposition as ld

MODELS = ("cnn", "gcnn")
SPLITS = ("in_distribution", "ood")


def pad_digits(x: np.ndarray, canvas: int) -> np.ndarray:
  """(N, 8, 8, 1) digits in [0, 16] → (N, canvas, canvas, 1) in [0, 1], centred."""
  before = (canvas - x.shape[1]) // 2
  after = canvas - x.shape[1] - before
  return np.pad(x / 16.0, ((0, 0), (before, after), (before, after), (0, 0))).astype(np.float32)


def make_models(c):
  """The group network and the PlainCNN whose parameter count is closest to it."""
  gcnn = ld.AffineGroupCNN(features=c.features, kernel_size=c.kernel_size,
                           group_kernel_size=c.group_kernel_size, num_samples=c.num_samples,
                           group=c.group, spd_var=c.spd_var, hidden=c.siren_hidden)
  x = jnp.zeros((1, c.canvas, c.canvas, 1))
  target = ld.count_params(jax.eval_shape(gcnn.init, jax.random.PRNGKey(0), x,
                                          jax.random.PRNGKey(0)))
  count = lambda w: ld.plain_cnn_param_count(w, c.kernel_size, c.group_kernel_size)
  width = min(range(1, 8 * c.features + 1), key=lambda w: abs(count(w) - target))
  cnn = ld.PlainCNN(features=width, kernel_size=c.kernel_size,
                    second_kernel_size=c.group_kernel_size)
  return {"cnn": cnn, "gcnn": gcnn}, {"cnn": count(width), "gcnn": target, "cnn_width": width}


def accuracy(model, c, params, key, x, y):
  """Accuracy over batches of ``eval_batch_size`` (fresh group samples per batch)."""
  n = x.shape[0] // c.eval_batch_size * c.eval_batch_size
  xb = x[:n].reshape(-1, c.eval_batch_size, *x.shape[1:])
  yb = y[:n].reshape(-1, c.eval_batch_size)

  def body(correct, inputs):
    i, xi, yi = inputs
    logits = model.apply(params, xi, jax.random.fold_in(key, i))
    return correct + jnp.sum(jnp.argmax(logits, -1) == yi), None

  return jax.lax.scan(body, 0, (jnp.arange(xb.shape[0]), xb, yb))[0] / n


def train_and_evaluate(ctx, name, model, c, train, eval_sets) -> dict:
  """Trains one model per seed (seeds on the mesh); per-seed accuracy on each
  evaluation set and the training curves."""

  def loss_fn(params, batch, rng):
    apply = lambda p, x: model.apply(p, x, rng)
    return tasks.cross_entropy_loss_fn(apply)(params, batch, rng)

  task = tasks.minibatch_task(lambda key, rows: model.init(key, rows["x"], key), loss_fn,
                              optax.adam(c.learning_rate), batch_size=c.batch_size,
                              replace=False)
  result = ctx.fit(name, task, {"key": ctx.seed_keys("training", c.num_seeds)}, c.num_steps,
                   data={"examples": train})

  def evaluate(params, key, eval_sets):
    return {split: accuracy(model, c, params, jax.random.fold_in(key, j), *eval_sets[split])
            for j, split in enumerate(SPLITS)}

  accs = jax.jit(jax.vmap(evaluate, (0, 0, None)))(
      result.state.params, ctx.seed_keys("evaluation", c.num_seeds), eval_sets)
  return {**jax.tree.map(np.asarray, accs), "curve": result.curves["loss"]}


def perturbed_test_set(key, x, y, c):
  keys = jax.random.split(key, x.shape[0] * c.num_test_transforms)
  images = jnp.repeat(jnp.asarray(x), c.num_test_transforms, axis=0)
  perturb = functools.partial(ld.affine_perturb, content_half_extent=3.5)
  return np.asarray(jax.jit(jax.vmap(perturb))(keys, images)), np.repeat(y, c.num_test_transforms)


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train_set = data.load("digits", "train", ctx.data_dir)
  test_set = data.load("digits", "test", ctx.data_dir)
  train = {"x": pad_digits(train_set.x, c.canvas), "y": train_set.y.astype(np.int32)}
  x_test, y_test = pad_digits(test_set.x, c.canvas), test_set.y.astype(np.int32)
  x_ood, y_ood = ctx.stage("ood-test-set",
                           lambda: perturbed_test_set(ctx.key("ood"), x_test, y_test, c))
  eval_sets = {"in_distribution": (jnp.asarray(x_test), jnp.asarray(y_test)),
               "ood": (jnp.asarray(x_ood), jnp.asarray(y_ood.astype(np.int32)))}
  models, param_counts = make_models(c)
  results = {name: ctx.stage(f"train-{name}", lambda: train_and_evaluate(
      ctx, name, models[name], c, train, eval_sets)) for name in MODELS}

  measured = {}
  for name in MODELS:
    measured[f"ood_accuracy_{name}"] = results[name]["ood"]
    measured[f"test_accuracy_{name}"] = results[name]["in_distribution"]
  gain = results["gcnn"]["ood"] - results["cnn"]["ood"]
  measured["ood_gain"] = gain
  details = {"param_counts": param_counts, "num_ood_images": int(x_ood.shape[0])}
  ctx.save_figure(plot(c, results, x_ood, param_counts))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, results, x_ood, param_counts):
  labels = {"cnn": f"CNN ({param_counts['cnn']} params)",
            "gcnn": f"R²⋊{c.group.upper()} ({param_counts['gcnn']} params)"}
  fig, (ax_images, ax_curves, ax_bars) = figures.panels(3)
  rows = [np.concatenate(list(x_ood[i:i + 3, ..., 0]), axis=1) for i in (0, 3)]
  ax_images.imshow(np.concatenate(rows, axis=0), cmap="gray_r")
  ax_images.set(title="affine-perturbed test digits")
  ax_images.axis("off")
  figures.plot_curves(ax_curves, {labels[n]: results[n]["curve"] for n in MODELS},
                      title="training (batch cross-entropy)")
  figures.bars_with_seeds(
      ax_bars, {f"{n.upper()} {'untransformed' if s == 'in_distribution' else 'affine'}":
                results[n][s] for s in SPLITS for n in MODELS},
      ylabel="accuracy", title=f"affDigits ({c.num_seeds} seeds)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="lie_decomposition", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
