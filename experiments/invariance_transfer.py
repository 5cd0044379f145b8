r"""Invariance and transfer: pretraining with the target task's transformations.

Paper: Speicher, Nanda, Gummadi, "Understanding the Role of Invariance in
Transfer Learning", TMLR 2024 (code: tillspeicher/representation-invariance-transfer).

Command:   jaxrep run invariance_transfer --workdir runs/invariance_transfer
           (= python -m experiments.invariance_transfer --workdir=runs/invariance_transfer)
Runtime:   2 min 02 s measured on 2 CPU cores (quick mode: seconds).
Expected:  a CNN pretrained under the target task's transformations transfers
           (linear probe, new classes) ≥ 10 points better than one pretrained
           under a disjoint set, a larger gain than from 4× pretraining data or
           2× width under the disjoint set.

Protocol (``transforms_vs_other`` in the official code, scaled down). Per seed,
30 procedural object prototypes (``jaxrep.data.transforms2d``, 16×16 RGB) are
split into 20 pretraining and 10 target classes, and two disjoint
transformation sets are drawn, one type per category each ("mixed" in the
official code): A (the target task's) and B. Encoders (a 4-layer ReLU CNN
with global average pooling, base width 16) are pretrained by Adam to classify
the 20 pretraining objects on

* ``matched``            2,000 images under A;
* ``mismatched``         2,000 images under B;
* ``mismatched_4x_data`` 8,000 images under B (a superset of the 2,000);
* ``mismatched_2x_width`` 2,000 images under B, channel widths doubled;

and, as a reference, a ``random_init`` encoder is not trained. Transfer is the
test accuracy of an L-BFGS logistic probe (``jaxrep.core.evaluate``) on
standardised frozen features, fitted on 20 images per target class under A and
tested on 1,000 more. The invariance score
(``jaxrep.symmetry.invariance_transfer``) is measured on 500 target pairs
differing only in a draw of A. Seeds are vmapped for training.

Scale-down (fixed before running, from compute alone): 16×16 instead of 32×32
images, procedural objects instead of photographs, a small CNN instead of a
ResNet-18, 1,500 Adam steps (lr 1e-3, batch 64) for every encoder, and
3 seeds. Official: 50,000 pretraining images, 50 epochs.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxrep.core import experiment, train
from jaxrep.core.evaluate import accuracy, logistic_probe_accuracy, standardize
from jaxrep.nn import PatchConv2D
from jaxrep.data import transforms2d as t2d
from jaxrep.symmetry import invariance_transfer as inv

CLAIM = ("Pretraining under the target task's transformations gains ≥ 10 linear-probe "
         "transfer points over pretraining under disjoint transformations, more than 4× "
         "pretraining data or 2× width gain.")
MIN_MATCHED_GAIN = 10.0   # accuracy points
PRETRAINED = ("matched", "mismatched", "mismatched_4x_data", "mismatched_2x_width")
ENCODERS = PRETRAINED + ("random_init",)


class ConvEncoder(nn.Module):
  """Images (n, S, S, 3) in [0, 1] → features (n, 4·width): four 3×3 ReLU conv
  layers (widths w, 2w, 4w, 4w; the middle two of stride 2) and global average
  pooling."""

  width: int = 16

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = 2.0 * x - 1.0
    for factor, stride in ((1, 1), (2, 2), (4, 2), (4, 1)):
      h = nn.relu(PatchConv2D(factor * self.width, stride)(h))
    return h.mean(axis=(1, 2))


class Classifier(nn.Module):
  width: int
  num_classes: int

  def setup(self):
    self.encoder = ConvEncoder(self.width)
    self.head = nn.Dense(self.num_classes)

  def __call__(self, x):
    return self.head(self.encoder(x))

  def features(self, x):
    return self.encoder(x)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.image_size = 16
  c.num_pretrain_classes = 20
  c.num_target_classes = 10
  c.num_pretrain = 2000
  c.data_multiplier = 4
  c.width = 16
  c.width_multiplier = 2
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.num_steps = 1500
  c.shots = 20
  c.num_test = 1000
  c.num_pairs = 500
  c.num_pretrain_test = 500
  c.probe_l2 = 1e-4
  c.render_chunk = 500
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_pretrain = 200
  c.width = 4
  c.num_steps = 20
  c.batch_size = 16
  c.shots = 4
  c.num_test = 100
  c.num_pairs = 50
  c.num_pretrain_test = 50
  c.width_multiplier = 1     # the 2×-width encoder reuses the compiled base-width program
  c.render_chunk = 100
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.image_size % 4:
    raise experiment.ConfigError("'image_size' must be divisible by 4 (pixelate, strides)")
  if c.data_multiplier < 1 or c.width_multiplier < 1:
    raise experiment.ConfigError("'data_multiplier' and 'width_multiplier' must be ≥ 1")
  if c.batch_size > c.num_pretrain:
    raise experiment.ConfigError("'batch_size' must be ≤ 'num_pretrain'")
  if c.learning_rate <= 0 or c.probe_l2 < 0:
    raise experiment.ConfigError("need learning_rate > 0 and probe_l2 ≥ 0")


def draw_transform_sets(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """A (target) and B (disjoint): two different types from each category."""
  rng = np.random.default_rng(seed)
  target, disjoint = [], []
  for names in t2d.CATEGORIES.values():
    first, second = rng.choice(len(names), 2, replace=False)
    target.append(names[first])
    disjoint.append(names[second])
  return tuple(target), tuple(disjoint)


_render = jax.jit(t2d.render_batch)


def render(key, prototypes, names, labels, chunk_size, transform_key=None):
  """Images for ``labels`` in chunks of ``chunk_size``: one compiled program serves
  every size and transformation set. ``transform_key`` (default: from ``key``) lets
  two calls share backgrounds and differ only in the transformations."""
  background_key, default_transform_key = jax.random.split(key)
  transform_key = default_transform_key if transform_key is None else transform_key
  active = t2d.transform_mask(names)
  labels = np.asarray(labels)
  pieces = []
  for start in range(0, len(labels), chunk_size):
    chunk = labels[start:start + chunk_size]
    padded = jnp.asarray(np.pad(chunk, (0, chunk_size - len(chunk))))
    images = _render(background_key, transform_key, prototypes, active, padded, start)
    pieces.append(np.asarray(images)[:len(chunk)])
  return np.concatenate(pieces)


def make_seed_data(key: jax.Array, seed: int, c) -> dict:
  """One seed's datasets (numpy); target labels are 0..num_target_classes−1."""
  target_set, disjoint_set = draw_transform_sets(seed)
  k_proto, k_a, k_b, k_pre_test, k_tr, k_te, k_pairs = jax.random.split(key, 7)
  k, t = c.num_pretrain_classes, c.num_target_classes
  prototypes = t2d.random_prototypes(k_proto, k + t, c.image_size)
  big = c.num_pretrain * c.data_multiplier
  pre_labels = np.arange(big) % k
  chunk = c.render_chunk
  x_a = render(k_a, prototypes, target_set, pre_labels[:c.num_pretrain], chunk)
  x_b = render(k_b, prototypes, disjoint_set, pre_labels, chunk)
  pad = np.zeros((big - c.num_pretrain,) + x_a.shape[1:], x_a.dtype)
  test_labels = np.arange(c.num_pretrain_test) % k
  tr_labels = np.arange(c.shots * t) % t
  te_labels = np.arange(c.num_test) % t
  pair_labels = np.arange(c.num_pairs) % t
  return {
      "x_matched": np.concatenate([x_a, pad]), "x_mismatched": x_b, "y_pretrain": pre_labels,
      "x_pretest_matched": render(k_pre_test, prototypes, target_set, test_labels, chunk),
      "x_pretest_mismatched": render(k_pre_test, prototypes, disjoint_set, test_labels, chunk),
      "y_pretest": test_labels,
      "x_target_train": render(k_tr, prototypes, target_set, tr_labels + k, chunk),
      "y_target_train": tr_labels,
      "x_target_test": render(k_te, prototypes, target_set, te_labels + k, chunk),
      "y_target_test": te_labels,
      "pairs": tuple(render(k_pairs, prototypes, target_set, pair_labels + k, chunk,
                            transform_key=jax.random.fold_in(k_pairs, j)) for j in (1, 2)),
      "target_set": target_set, "disjoint_set": disjoint_set,
  }


@functools.partial(jax.jit, static_argnames=("width", "c"))
def _pretrain(seed_keys, x, y, num_available, x_pretest, y_pretest, *, width: int, c):
  """Pretrains one classifier per seed on x[:num_available]; returns the
  encoder params and the pretraining-domain test accuracy."""
  model = Classifier(width, c.num_pretrain_classes)
  optimizer = optax.adam(c.learning_rate)

  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply(params, batch[0])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
    return ce, {"accuracy": accuracy(logits, batch[1])}

  def one(key, x, y, x_pretest, y_pretest):
    key_init, key_batches, key_state = jax.random.split(key, 3)
    state = train.init_train_state(model.init(key_init, x[:1]), optimizer, key_state)
    step = train.make_train_step(loss_fn, optimizer, jit=False)

    def batch_fn(i):
      idx = jax.random.randint(jax.random.fold_in(key_batches, i), (c.batch_size,), 0,
                               num_available)
      return x[idx], y[idx]

    state, metrics = train.scan_steps(step, state, batch_fn, c.num_steps)
    pretest_acc = accuracy(model.apply(state.params, x_pretest), y_pretest)
    return state.params, pretest_acc, metrics["loss"]

  return jax.vmap(one)(seed_keys, x, y, x_pretest, y_pretest)


def init_params(seed_keys, width: int, c, x):
  model = Classifier(width, c.num_pretrain_classes)
  return jax.vmap(lambda k: model.init(jax.random.split(k, 3)[0], x[0, :1]))(seed_keys)


@functools.partial(jax.jit, static_argnames=("width", "c"))
def _transfer(params, score_keys, x_tr, y_tr, x_te, y_te, pair_a, pair_b, *, width: int, c):
  """Per seed: linear-probe transfer accuracy and the two invariance scores."""
  model = Classifier(width, c.num_pretrain_classes)
  features = lambda p, x: model.apply(p, x, method=Classifier.features)

  def one(p, key, x_tr, y_tr, x_te, y_te, pair_a, pair_b):
    f_tr, f_te = standardize(features(p, x_tr), features(p, x_te))
    acc = logistic_probe_accuracy(f_tr, y_tr, f_te, y_te, c.num_target_classes, c.probe_l2)
    fa, fb = features(p, pair_a), features(p, pair_b)
    return acc, inv.invariance_score(fa, fb, key), inv.cosine_invariance(fa, fb)

  return jax.vmap(one)(params, score_keys, x_tr, y_tr, x_te, y_te, pair_a, pair_b)


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  data_keys = ctx.seed_keys("data", c.num_seeds)
  seed_ids = ctx.seeds(c.num_seeds)

  def build():
    per_seed = [make_seed_data(data_keys[i], seed_ids[i], c) for i in range(c.num_seeds)]
    stacked = {k: np.stack([d[k] for d in per_seed]) for k in per_seed[0]
               if k not in ("pairs", "target_set", "disjoint_set")}
    stacked["pair_a"] = np.stack([d["pairs"][0] for d in per_seed])
    stacked["pair_b"] = np.stack([d["pairs"][1] for d in per_seed])
    stacked["sets"] = [(d["target_set"], d["disjoint_set"]) for d in per_seed]
    return stacked

  data = ctx.stage("data", build)
  frozen = ml_collections.FrozenConfigDict(c)
  seed_keys = ctx.seed_keys("pretraining", c.num_seeds)
  score_keys = ctx.seed_keys("invariance", c.num_seeds)
  big = c.num_pretrain * c.data_multiplier
  runs = {
      "matched": ("x_matched", c.num_pretrain, c.width, "x_pretest_matched"),
      "mismatched": ("x_mismatched", c.num_pretrain, c.width, "x_pretest_mismatched"),
      "mismatched_4x_data": ("x_mismatched", big, c.width, "x_pretest_mismatched"),
      "mismatched_2x_width": ("x_mismatched", c.num_pretrain, c.width * c.width_multiplier,
                              "x_pretest_mismatched"),
  }
  meter = ctx.progress("encoders", len(ENCODERS), unit="encoders")
  results = {}
  for i, name in enumerate(ENCODERS):
    def pretrain_and_transfer(name=name):
      if name == "random_init":
        width, params, pre_acc, curve = c.width, init_params(seed_keys, c.width, c,
                                                             data["x_matched"]), None, None
      else:
        x_key, available, width, pretest_key = runs[name]
        params, pre_acc, curve = _pretrain(seed_keys, data[x_key], data["y_pretrain"],
                                           available, data[pretest_key], data["y_pretest"],
                                           width=width, c=frozen)
      acc, score, cosine = _transfer(params, score_keys, data["x_target_train"],
                                     data["y_target_train"], data["x_target_test"],
                                     data["y_target_test"], data["pair_a"], data["pair_b"],
                                     width=width, c=frozen)
      return {"transfer": 100 * np.asarray(acc), "invariance": np.asarray(score),
              "cosine": np.asarray(cosine),
              "pretrain_acc": None if pre_acc is None else 100 * np.asarray(pre_acc),
              "curve": None if curve is None else np.asarray(curve)}

    results[name] = ctx.stage(f"encoder-{name}", pretrain_and_transfer)
    if results[name]["curve"] is not None:
      curve = results[name]["curve"].mean(0)
      for s in range(0, c.num_steps, max(1, c.num_steps // 50)):
        ctx.logger.log(s, {"pretrain_loss": float(curve[s])}, run=name)
    meter.update(i + 1, f"{name}: transfer {results[name]['transfer'].mean():.1f}%, "
                        f"invariance {results[name]['invariance'].mean():.2f}")

  measured = {f"transfer_acc_{n}": results[n]["transfer"] for n in ENCODERS}
  base = results["mismatched"]["transfer"]
  gains = {n: results[n]["transfer"] - base for n in
           ("matched", "mismatched_4x_data", "mismatched_2x_width")}
  measured["gain_matched"] = gains["matched"]
  measured["gain_4x_data"] = gains["mismatched_4x_data"]
  measured["gain_2x_width"] = gains["mismatched_2x_width"]
  for n in ENCODERS:
    measured[f"invariance_{n}"] = results[n]["invariance"]
  passed = bool(gains["matched"].mean() >= MIN_MATCHED_GAIN
                and gains["matched"].mean() > gains["mismatched_4x_data"].mean()
                and gains["matched"].mean() > gains["mismatched_2x_width"].mean())
  details = {
      "threshold_matched_gain": MIN_MATCHED_GAIN,
      "transform_sets": [{"target": list(a), "disjoint": list(b)} for a, b in data["sets"]],
      "pretrain_domain_accuracy": {n: results[n]["pretrain_acc"].tolist() for n in PRETRAINED},
      "cosine_invariance": {n: results[n]["cosine"].tolist() for n in ENCODERS},
  }
  ctx.save_figure(plot(c, results, data))
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(c, results, data):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
  colors = {"matched": "tab:green", "mismatched": "tab:red",
            "mismatched_4x_data": "tab:orange", "mismatched_2x_width": "tab:purple",
            "random_init": "tab:gray"}
  for i, name in enumerate(ENCODERS):
    values = results[name]["transfer"]
    axes[0].bar(i, values.mean(), yerr=values.std(), color=colors[name], alpha=0.8)
    axes[0].scatter(np.full(values.shape, i), values, color="k", s=10, zorder=3)
    axes[1].scatter(results[name]["invariance"], values, color=colors[name], label=name)
  axes[0].set_xticks(range(len(ENCODERS)), [n.replace("_", "\n") for n in ENCODERS],
                     fontsize=8)
  axes[0].set(ylabel="transfer accuracy (%)",
              title=f"linear probe, {c.shots}-shot, {c.num_target_classes} new classes")
  axes[1].set(xlabel="invariance score to the target transformations",
              ylabel="transfer accuracy (%)", title="invariance vs transfer (per seed)")
  axes[1].legend(fontsize=7)
  sample = data["x_target_test"][0][:8]
  axes[2].imshow(np.concatenate(list(sample), axis=1))
  target, disjoint = data["sets"][0]
  axes[2].set(title=f"target task, seed 0: A = {', '.join(target)}\nB = {', '.join(disjoint)}")
  axes[2].axis("off")
  for ax in axes[:2]:
    ax.grid(alpha=0.3)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="invariance_transfer", claim=CLAIM, get_config=get_config, run=run, quick=quick,
    validate=validate, runtime_s=140,
    headline=("transfer_acc_matched", "transfer_acc_mismatched", "gain_matched",
              "gain_4x_data", "gain_2x_width"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
