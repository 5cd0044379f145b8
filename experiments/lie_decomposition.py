r"""R²⋊SL(2) group convolutions vs a parameter-matched CNN on affine-perturbed digits.

Paper: Mironenco & Forré, "Lie Group Decompositions for Equivariant Neural
Networks", ICLR 2024 (affNIST: train on untransformed MNIST, test on affine
transforms).

Command:   jaxrep run lie_decomposition --workdir runs/lie_decomposition
           (= python -m experiments.lie_decomposition --workdir=runs/lie_decomposition)
Runtime:   4 min 46 s measured on 2 CPU cores (quick mode: seconds).
Expected:  OOD accuracy of the R²⋊SL(2) network ≥ the CNN's + 5 points.

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
the group network's. Both train with Adam (lr 3e-3) on batches of 32 for
``num_steps`` = 600 steps (≈13 epochs; seeds run one after the other inside one
compiled program); evaluation also uses fresh group samples per batch.

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

from jaxrep import data
from jaxrep.core import experiment, train
from jaxrep.core.evaluate import accuracy
from jaxrep.symmetry import lie_decomposition as ld

CLAIM = ("Trained on untransformed digits, an R²⋊SL(2) group-convolution network beats a "
         "parameter-matched CNN by ≥ 5 points of accuracy on affine-perturbed test digits.")
MIN_OOD_GAIN = 0.05
MODELS = ("cnn", "gcnn")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.group = "sl2"
  c.canvas = 24
  c.features = 16
  c.kernel_size = 5
  c.group_kernel_size = 3
  c.num_samples = 4
  c.spd_var = 0.1
  c.siren_hidden = 32
  c.batch_size = 32
  c.eval_batch_size = 200
  c.learning_rate = 3e-3
  c.num_steps = 600
  c.num_test_transforms = 5
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.features = 4
  c.num_samples = 2
  c.siren_hidden = 8
  c.num_steps = 5
  c.num_test_transforms = 1
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.group not in ("sl2", "gl2"):
    raise experiment.ConfigError("config key 'group' must be 'sl2' or 'gl2'")
  if c.canvas < 8 or (c.canvas - c.kernel_size + 1) % 2:
    raise experiment.ConfigError("'canvas' must be ≥ 8 with canvas − kernel_size + 1 even")
  if c.kernel_size % 2 == 0 or c.group_kernel_size % 2 == 0:
    raise experiment.ConfigError("'kernel_size' and 'group_kernel_size' must be odd")
  if c.learning_rate <= 0 or c.spd_var <= 0:
    raise experiment.ConfigError("'learning_rate' and 'spd_var' must be positive")


def pad_digits(x: np.ndarray, canvas: int) -> np.ndarray:
  """(N, 8, 8, 1) digits in [0, 16] → (N, canvas, canvas, 1) in [0, 1], centred."""
  before = (canvas - x.shape[1]) // 2
  after = canvas - x.shape[1] - before
  return np.pad(x / 16.0, ((0, 0), (before, after), (before, after), (0, 0))).astype(np.float32)


def plain_cnn_param_count(features: int, kernel_size: int, second_kernel_size: int,
                          in_channels: int = 1, num_classes: int = 10) -> int:
  """Parameters of ``PlainCNN``: two convs with biases, two LayerNorms, the read-out."""
  return (kernel_size**2 * in_channels * features + features + 2 * features
          + second_kernel_size**2 * features**2 + features + 2 * features
          + num_classes * features + num_classes)


def make_models(c):
  """The group network and the PlainCNN whose parameter count is closest to it."""
  gcnn = ld.AffineGroupCNN(features=c.features, kernel_size=c.kernel_size,
                           group_kernel_size=c.group_kernel_size, num_samples=c.num_samples,
                           group=c.group, spd_var=c.spd_var, hidden=c.siren_hidden)
  x = jnp.zeros((1, c.canvas, c.canvas, 1))
  target = ld.count_params(jax.eval_shape(gcnn.init, jax.random.PRNGKey(0), x,
                                          jax.random.PRNGKey(0)))
  count = lambda w: plain_cnn_param_count(w, c.kernel_size, c.group_kernel_size)
  width = min(range(1, 8 * c.features + 1), key=lambda w: abs(count(w) - target))
  cnn = ld.PlainCNN(features=width, kernel_size=c.kernel_size,
                    second_kernel_size=c.group_kernel_size)
  return {"cnn": cnn, "gcnn": gcnn}, {"cnn": count(width), "gcnn": target, "cnn_width": width}


def train_and_evaluate(model, c, x_train, y_train, eval_sets, seed_keys):
  """Per-seed accuracies on each evaluation set after Adam training."""
  optimizer = optax.adam(c.learning_rate)

  def loss_fn(params, batch, rng):
    logits = model.apply(params, batch[0], rng)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
    return ce, {"accuracy": accuracy(logits, batch[1])}

  def evaluate(params, key, x, y):
    n = x.shape[0] // c.eval_batch_size * c.eval_batch_size
    xb = x[:n].reshape(-1, c.eval_batch_size, *x.shape[1:])
    yb = y[:n].reshape(-1, c.eval_batch_size)

    def body(correct, inputs):
      i, xi, yi = inputs
      logits = model.apply(params, xi, jax.random.fold_in(key, i))
      return correct + jnp.sum(jnp.argmax(logits, -1) == yi), None

    correct, _ = jax.lax.scan(body, 0, (jnp.arange(xb.shape[0]), xb, yb))
    return correct / n

  def one(key):
    key_init, key_batches, key_state, key_eval = jax.random.split(key, 4)
    params = model.init(key_init, x_train[:1], key_init)
    state = train.init_train_state(params, optimizer, key_state)
    step = train.make_train_step(loss_fn, optimizer, jit=False)

    def batch_fn(i):
      idx = jax.random.choice(jax.random.fold_in(key_batches, i), x_train.shape[0],
                              (c.batch_size,), replace=False)
      return x_train[idx], y_train[idx]

    state, metrics = train.scan_steps(step, state, batch_fn, c.num_steps)
    accs = {name: evaluate(state.params, jax.random.fold_in(key_eval, j), x, y)
            for j, (name, (x, y)) in enumerate(sorted(eval_sets.items()))}
    return accs, metrics["loss"]

  # lax.map, not vmap: a vmapped conv with per-seed kernels lowers to a grouped
  # convolution, which is many times slower on CPU.
  accs, losses = jax.jit(lambda keys: jax.lax.map(one, keys))(seed_keys)
  return {name: np.asarray(v) for name, v in accs.items()}, np.asarray(losses)


def perturbed_test_set(key, x, y, c):
  keys = jax.random.split(key, x.shape[0] * c.num_test_transforms)
  images = jnp.repeat(jnp.asarray(x), c.num_test_transforms, axis=0)
  perturb = functools.partial(ld.affine_perturb, content_half_extent=3.5)
  return np.asarray(jax.jit(jax.vmap(perturb))(keys, images)), np.repeat(y, c.num_test_transforms)


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train_set = data.load("digits", "train", ctx.data_dir)
  test_set = data.load("digits", "test", ctx.data_dir)
  x_train, y_train = pad_digits(train_set.x, c.canvas), train_set.y.astype(np.int32)
  x_test, y_test = pad_digits(test_set.x, c.canvas), test_set.y.astype(np.int32)
  x_ood, y_ood = ctx.stage("ood-test-set",
                           lambda: perturbed_test_set(ctx.key("ood"), x_test, y_test, c))
  eval_sets = {"in_distribution": (jnp.asarray(x_test), jnp.asarray(y_test)),
               "ood": (jnp.asarray(x_ood), jnp.asarray(y_ood.astype(np.int32)))}
  models, param_counts = make_models(c)
  seed_keys = ctx.seed_keys("training", c.num_seeds)
  results = {}
  meter = ctx.progress("models", len(MODELS), unit="models")
  for i, name in enumerate(MODELS):
    results[name] = ctx.stage(f"train-{name}", lambda: train_and_evaluate(
        models[name], c, jnp.asarray(x_train), jnp.asarray(y_train), eval_sets, seed_keys))
    curve = results[name][1].mean(0)
    for s in range(0, c.num_steps, max(1, c.num_steps // 50)):
      ctx.logger.log(s, {"train_loss": float(curve[s])}, run=name)
    meter.update(i + 1, f"{name}: OOD accuracy {results[name][0]['ood'].mean():.3f}")

  measured = {}
  for name in MODELS:
    measured[f"ood_accuracy_{name}"] = results[name][0]["ood"]
    measured[f"test_accuracy_{name}"] = results[name][0]["in_distribution"]
  gain = results["gcnn"][0]["ood"] - results["cnn"][0]["ood"]
  measured["ood_gain"] = gain
  passed = bool(gain.mean() >= MIN_OOD_GAIN)
  details = {"param_counts": param_counts, "threshold_gain": MIN_OOD_GAIN,
             "num_ood_images": int(x_ood.shape[0]),
             "train_loss_curves": {n: results[n][1].mean(0)[:: max(1, c.num_steps // 50)]
                                   for n in MODELS}}
  ctx.save_figure(plot(c, results, x_ood, param_counts))
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(c, results, x_ood, param_counts):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig = plt.figure(figsize=(12, 4))
  grid = fig.add_gridspec(2, 6)
  for i in range(6):
    ax = fig.add_subplot(grid[i // 3, i % 3])
    ax.imshow(x_ood[i, ..., 0], cmap="gray_r")
    ax.axis("off")
  ax = fig.add_subplot(grid[:, 3:])
  labels = {"cnn": f"CNN ({param_counts['cnn']} params)",
            "gcnn": f"R²⋊{c.group.upper()} ({param_counts['gcnn']} params)"}
  for j, split in enumerate(("in_distribution", "ood")):
    for k, name in enumerate(MODELS):
      values = results[name][0][split]
      x = j * 3 + k
      ax.bar(x, values.mean(), yerr=values.std(), color=("tab:gray", "tab:blue")[k],
             label=labels[name] if j == 0 else None)
      ax.scatter(np.full(values.shape, x), values, color="k", s=10, zorder=3)
  ax.set_xticks([0.5, 3.5], ["untransformed test", "affine-perturbed test"])
  ax.set(ylabel="accuracy", ylim=(0, 1), title=f"affDigits ({c.num_seeds} seeds)")
  ax.legend(loc="lower left")
  ax.grid(alpha=0.3, axis="y")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="lie_decomposition", claim=CLAIM, get_config=get_config, run=run, quick=quick,
    validate=validate, runtime_s=320,
    headline=("ood_accuracy_cnn", "ood_accuracy_gcnn", "ood_gain", "test_accuracy_gcnn"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
