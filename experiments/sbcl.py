r"""SBCL vs SupCon on long-tailed MNIST-1D (imbalance 100).

Paper: Hou et al., "Subclass-balancing Contrastive Learning for Long-tailed
Recognition", ICCV 2023 (CIFAR-100-LT ρ = 100: SBCL 44.9 vs SupCon-based
baselines ≈ 42–43 top-1 with LDAM-DRW). Official code: JackHck/SBCL.

Command, runtime and expected result: ``experiments/configs/sbcl.py``.

Protocol. Per seed, a long-tailed training set is drawn from MNIST-1D's train split
(``jaxrep.data.long_tail``: 390 → 3 examples per class, exponential profile,
964 in all); the test split (≈100 per class) is the balanced test set, and the
metric is balanced accuracy (mean per-class recall). Encoder: a 1-D CNN
(``CNNEncoder1D``, 64-d features) with a 2-layer MLP projection head (unit
projections), trained on two augmented views (``sequence_augment``: time
stretch, shift, amplitude, noise) with Adam and one cosine learning-rate decay
over all steps.

* Warm-up (shared): SupCon on class labels for ``warmup_steps`` (the official
  code warms up with SupCon for 10 epochs).
* SupCon (baseline): continues SupCon from the warm-up state to ``num_steps``.
* SBCL: from the same warm-up state, ``num_rounds`` rounds; each starts by
  re-clustering every class into K_c = max(1, ⌊n_c/max(min n, 10)⌋) subclasses
  (cosine k-means of the current projections; 39 subclasses of ~10 for the
  head class, one for classes with < 20 examples) and recomputing the class
  temperatures τ_c, then trains the SBCL loss (τ = 0.1, τ_base = 0.07, γ = 0.25).
  Same steps, batches and optimizer state trajectory as the baseline.
* Linear stage (both encoders identically, the official ``linear_classify.py``
  "DRW" rule): a normed (cosine) linear classifier on the frozen 64-d encoder
  features, LDAM loss (m_max = 0.5, s = 30) with class-balanced weights
  (β = 0.9999), full batch, Adam.

Deviations from the official protocol (compute): a 1-D CNN instead of ResNet-32;
Adam (lr 2e-3, batch 256, 1,200 steps ≈ 320 epochs) instead of SGD (lr 0.5,
batch 1024, 1,000 epochs); re-clustering every 270 steps (≈ 72 epochs) instead of
every 10 epochs (the README asks for longer intervals on 10-class data, and each
round is one ``fit``); clustering uses clean (not augmented) inputs; k-means is
scikit-learn's on unit projections (the official GPU k-means with cosine
similarity, 35 iterations); the linear stage trains on fixed features without
input augmentation, full batch with Adam (official: SGD, batch 128, 200 epochs).

Claim (ours): SBCL balanced accuracy ≥ SupCon + 1.5 points, mean over seeds, with
k/n seeds reported. Gate: both encoders' training losses at a plateau (relative
drop ≤ 5% between the last two windows of 5% of the steps, inside SBCL's last
round).

History.
* 2026-12-02, first default run (3 seeds): FAIL. SBCL 54.0 ± 1.0 vs SupCon
  58.1 ± 2.1 balanced accuracy, SBCL − SupCon −4.1 ± 3.1 points (0/3 seeds
  ≥ +1.5). Every gate holds (last-window loss drops ≤ 0.5%; linear stage flat).
  Per-class recall: SBCL loses on the head classes (classes 0–2: 0.66 vs 0.78)
  and ties on medium (3–6: 0.62 vs 0.63) and few (7–9: 0.32 vs 0.31) classes.
  Diagnosis: the subclass term (weight τ/τ_base = 1.43) treats the other 38
  subclasses of the head class as negatives, and the class term (γ = 0.25) only
  partly pulls them back, so the head class is split in the representation; the
  paper's premise is that k-means subclasses are semantic substructures, which
  on MNIST-1D's 1-D CNN features (re-clustered 4 times, not every 10 epochs)
  they need not be. The balance it buys does not reach the tail (3–10 examples
  per class) here. Official protocol points we did not follow and that could
  matter: ResNet-32 on CIFAR, 1,000 epochs with re-clustering every 10, SGD at
  batch 1,024.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import sbcl as configs
from jaxrep.core import experiment, figures, tasks
from jaxrep.data import long_tail
from jaxrep.nn import l2_normalize
from jaxrep.probe.encoders import CNNEncoder1D, standardized_mnist1d
from jaxrep.ssl import sbcl, supcon, views

MODELS = ("supcon", "sbcl")
LABELS = {"supcon": "SupCon", "sbcl": "SBCL"}


class ContrastiveNet(nn.Module):
  """CNNEncoder1D features and an MLP projection head (unit projections)."""

  channels: int
  latent_dim: int
  projection_dim: int

  def setup(self):
    self.encoder = CNNEncoder1D(latent_dim=self.latent_dim, channels=self.channels)
    self.hidden = nn.Dense(self.latent_dim)
    self.out = nn.Dense(self.projection_dim)

  def features(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def __call__(self, x: jax.Array) -> jax.Array:
    return l2_normalize(self.out(nn.relu(self.hidden(self.encoder(x)))))


def with_views(loss_fn, augment):
  """The loss on two augmented views of ``batch["x"]`` drawn from the step's key."""

  def wrapped(params, batch, rng, axis_name=None):
    view_key, loss_key = jax.random.split(rng)
    return loss_fn(params, {**batch, **views.two_views(view_key, batch["x"], augment)},
                   loss_key, axis_name=axis_name)

  return wrapped


def contrastive_task(model, loss_fn, optimizer, batch_size: int) -> tasks.Task:
  """``minibatch_task`` that starts from ``inputs["state"]`` when a run carries one
  (a continued training: step count, optimizer state and batch keys carry on)."""
  base = tasks.minibatch_task(lambda key, rows: model.init(key, rows["x"]), loss_fn,
                              optimizer, batch_size=batch_size, replace=False)
  return tasks.Task(lambda inputs: inputs["state"] if "state" in inputs else base.init(inputs),
                    base.step)


def plateau_drop(curve: np.ndarray, window: int) -> np.ndarray:
  """(mean of the previous window − mean of the last window)/|last| per run."""
  last = curve[..., -window:].mean(-1)
  previous = curve[..., -2 * window:-window].mean(-1)
  return (previous - last) / np.abs(last)


def balanced_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int
                      ) -> tuple[float, np.ndarray]:
  """Mean per-class recall and the per-class recalls."""
  recall = np.array([np.mean(predictions[labels == c] == c) for c in range(num_classes)])
  return float(recall.mean()), recall


def train_encoders(ctx, c, model: ContrastiveNet, train: dict, counts) -> dict:
  """The shared warm-up, then SupCon and SBCL: final params and loss curves."""
  s = c.contrastive
  augment = views.sequence_augment(max_shift=c.augment.max_shift, shift_mode="pad",
                                   time_scale=c.augment.time_scale,
                                   amplitude_scale=c.augment.amplitude_scale,
                                   noise_std=c.augment.noise_std)
  optimizer = optax.adam(optax.cosine_decay_schedule(s.learning_rate, s.num_steps))
  supcon_task = contrastive_task(model, with_views(
      supcon.supcon_loss_fn(model.apply, s.temperature), augment), optimizer, s.batch_size)
  sbcl_task = contrastive_task(model, with_views(
      sbcl.sbcl_loss_fn(model.apply, s.temperature, s.base_temperature, s.gamma), augment),
      optimizer, s.batch_size)
  keys = ctx.seed_keys("encoder", c.num_seeds)
  examples = {"x": train["x"], "y": train["y"]}
  fresh = jax.jit(jax.vmap(lambda key, ex: supcon_task.init({"key": key, "examples": ex})))
  # every SupCon fit starts from a carried state with the same chunk: one compile
  warm = ctx.fit("warmup", supcon_task, {"key": keys, "examples": examples,
                                         "state": fresh(keys, examples)},
                 s.warmup_steps, chunk_steps=s.warmup_steps)
  rest = s.num_steps - s.warmup_steps
  base = ctx.fit("supcon", supcon_task, {"key": keys, "examples": examples,
                                         "state": warm.state}, rest,
                 chunk_steps=s.warmup_steps)
  num_sub = sbcl.subclass_counts(counts, s.min_subclass_size)
  project = jax.jit(jax.vmap(model.apply))
  state, curves, temperatures = warm.state, [], []
  for r in range(s.num_rounds):
    z = np.asarray(project(state.params, train["x"]))
    sub = np.stack([sbcl.subclass_labels(z[i], train["y"][i], num_sub, seed=1000 * r + i)
                    for i in range(c.num_seeds)])
    tau = np.stack([sbcl.class_temperatures(z[i], train["y"][i], num_sub, s.temperature)
                    for i in range(c.num_seeds)])
    result = ctx.fit(f"sbcl_round{r}", sbcl_task,
                     {"key": keys, "examples": {**examples, "sub": sub}, "state": state,
                      "hparams": {"class_temperature": tau}}, rest // s.num_rounds)
    state = result.state
    curves.append(result.curves["loss"])
    temperatures.append(tau)
  return {"warmup_curve": warm.curves["loss"],
          "params": {"supcon": base.state.params, "sbcl": state.params},
          "curves": {"supcon": base.curves["loss"], "sbcl": np.concatenate(curves, axis=-1)},
          "num_subclasses": num_sub, "class_temperature": np.stack(temperatures)}


def train_linear(ctx, c, train_features: np.ndarray, labels: np.ndarray, counts) -> dict:
  """Normed linear classifiers with LDAM-DRW, one per (model, seed) run."""
  weights = jnp.asarray(sbcl.class_balanced_weights(counts, c.linear.beta))
  num_classes = len(counts)

  def loss_fn(params, batch, rng):
    del rng
    logits = sbcl.normed_linear_logits(params["w"], batch["f"])
    return sbcl.ldam_loss(logits, batch["y"], counts, c.linear.max_margin, c.linear.scale,
                          weights), {}

  init = lambda key, rows: {"w": 0.01 * jax.random.normal(
      key, (rows["f"].shape[-1], num_classes))}
  task = tasks.minibatch_task(init, loss_fn, optax.adam(c.linear.learning_rate),
                              batch_size=None)
  keys = ctx.seed_keys("linear", len(MODELS) * c.num_seeds)
  keys = keys.reshape((len(MODELS), c.num_seeds) + keys.shape[1:])
  result = ctx.fit("linear", task, {"key": keys, "examples": {
      "f": train_features, "y": np.broadcast_to(labels, train_features.shape[:-1])}},
      c.linear.num_steps, run_axes=2)
  return {"w": result.state.params["w"], "curve": result.curves["loss"]}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  x_train, y_train, x_test, y_test = standardized_mnist1d(ctx.data_dir)
  num_classes = 10
  counts = long_tail.long_tail_counts(c.data.max_count, num_classes, c.data.imbalance_ratio)
  train = ctx.stage("data", lambda: jax.jit(jax.vmap(
      lambda k: long_tail.long_tail_sample(k, x_train, y_train, counts)))(
          ctx.seed_keys("long_tail", c.num_seeds)))
  model = ContrastiveNet(c.model.channels, c.model.latent_dim, c.model.projection_dim)
  encoders = ctx.stage("encoders", lambda: train_encoders(ctx, c, model, train, counts))
  features = jax.jit(jax.vmap(lambda p, x: model.apply(p, x, method=ContrastiveNet.features)))
  params = encoders["params"]
  train_features = np.stack([np.asarray(features(params[m], train["x"])) for m in MODELS])
  test_features = np.stack([np.asarray(features(
      params[m], np.broadcast_to(x_test, (c.num_seeds,) + x_test.shape))) for m in MODELS])
  linear = ctx.stage("linear", lambda: train_linear(ctx, c, train_features, train["y"], counts))
  logits = np.asarray(jax.vmap(jax.vmap(sbcl.normed_linear_logits))(linear["w"], test_features))
  predictions = logits.argmax(-1)

  measured, details = {}, {"class_counts": list(counts),
                           "num_subclasses": list(encoders["num_subclasses"]),
                           "class_temperature_last_round": encoders["class_temperature"][-1]}
  recalls = {}
  for i, m in enumerate(MODELS):
    scores = [balanced_accuracy(predictions[i, s], y_test, num_classes)
              for s in range(c.num_seeds)]
    measured[f"balanced_accuracy_{m}"] = 100 * np.array([a for a, _ in scores])
    recalls[m] = np.stack([r for _, r in scores])
    for group, classes in (("many", slice(0, 3)), ("medium", slice(3, 7)),
                           ("few", slice(7, 10))):
      details[f"recall_{group}_{m}"] = float(recalls[m][:, classes].mean())
  gain = measured["balanced_accuracy_sbcl"] - measured["balanced_accuracy_supcon"]
  measured["sbcl_minus_supcon"] = gain
  measured["gain_seeds_passing"] = float(np.sum(gain >= c.min_gain_points))
  window = max(1, int(c.contrastive.plateau_window * c.contrastive.num_steps))
  for m in MODELS:
    measured[f"plateau_drop_{m}"] = plateau_drop(encoders["curves"][m], window)
  measured["plateau_drop_linear"] = plateau_drop(linear["curve"], max(
      1, linear["curve"].shape[-1] // 20)).max(axis=0)
  details["gain_seeds_passing"] = f"{int(measured['gain_seeds_passing'])}/{c.num_seeds}"
  ctx.save_figure(plot(c, encoders, measured, recalls))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, encoders, measured, recalls):
  fig, (ax_curves, ax_bars, ax_classes) = figures.panels(3)
  warm = encoders["warmup_curve"]
  figures.plot_curves(ax_curves, {
      "SupCon": np.concatenate([warm, encoders["curves"]["supcon"]], -1),
      "SBCL (SupCon warm-up, re-clustered each round)":
          np.concatenate([warm, encoders["curves"]["sbcl"]], -1)},
      ylabel="training loss (batch)", logy=False, title="contrastive training")
  figures.bars_with_seeds(ax_bars, {LABELS[m]: measured[f"balanced_accuracy_{m}"]
                                    for m in MODELS},
                          ylabel="balanced test accuracy (%)",
                          title=f"LDAM-DRW linear stage ({c.num_seeds} seeds)")
  for m in MODELS:
    ax_classes.plot(np.arange(10), recalls[m].mean(0), "o-", label=LABELS[m])
  ax_classes.set(xlabel="class (0 = head, 9 = tail)", ylabel="test recall",
                 title=f"per-class recall (imbalance {c.data.imbalance_ratio:g})")
  ax_classes.legend()
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="sbcl", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
