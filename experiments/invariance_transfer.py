r"""Invariance and transfer: pretraining with the target task's transformations.

Paper: Speicher, Nanda, Gummadi, "Understanding the Role of Invariance in
Transfer Learning", TMLR 2024 (code: tillspeicher/representation-invariance-transfer).

Command, runtime and expected result: ``experiments/configs/invariance_transfer.py``.

Protocol (``transforms_vs_other`` in the official code, scaled down). Per seed,
30 procedural object prototypes (``jaxrep.data.transforms2d``, 16×16 RGB) are
split into 20 pretraining and 10 target classes, and two disjoint
transformation sets are drawn, one type per category each ("mixed" in the
official code): A (the target task's) and B. Encoders (a 4-layer ReLU CNN
with global average pooling, base width 16) are pretrained by Adam to classify
the 20 pretraining objects, on minibatches drawn with replacement (i.i.d.
uniform indices, the protocol of the first runs), on

* ``matched``            2,000 images under A;
* ``mismatched``         2,000 images under B;
* ``mismatched_4x_data`` 8,000 images under B (a superset of the 2,000);
* ``mismatched_2x_width`` 2,000 images under B, channel widths doubled;

and, as a reference, a ``random_init`` encoder is not trained. Transfer is the
test accuracy of an L-BFGS logistic probe (``jaxrep.core.evaluate``) on
standardised frozen features, fitted on 20 images per target class under A and
tested on 1,000 more. The invariance score
(``jaxrep.symmetry.invariance_transfer``) is measured on 500 target pairs
differing only in a draw of A. Seeds are vmapped and sharded over the devices.

Scale-down (fixed before running, from compute alone): 16×16 instead of 32×32
images, procedural objects instead of photographs, a small CNN instead of a
ResNet-18, 1,500 Adam steps (lr 1e-3, batch 64) for every encoder, and
3 seeds. Official: 50,000 pretraining images, 50 epochs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import invariance_transfer as configs
from jaxrep.core import experiment, figures, tasks
from jaxrep.core.evaluate import accuracy, logistic_probe_accuracy, standardize
from jaxrep.data import transforms2d as t2d
from jaxrep.symmetry import invariance_transfer as inv

PRETRAINED = ("matched", "mismatched", "mismatched_4x_data", "mismatched_2x_width")
ENCODERS = PRETRAINED + ("random_init",)


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
    pieces.append(np.asarray(_render(background_key, transform_key, prototypes, active,
                                     padded, start))[:len(chunk)])
  return np.concatenate(pieces)


def make_seed_data(key: jax.Array, seed: int, c) -> dict:
  """One seed's datasets (numpy); target labels are 0..num_target_classes−1."""
  target_set, disjoint_set = inv.draw_transform_sets(seed)
  k_proto, k_a, k_b, k_pre_test, k_tr, k_te, k_pairs = jax.random.split(key, 7)
  k, t = c.num_pretrain_classes, c.num_target_classes
  prototypes = t2d.random_prototypes(k_proto, k + t, c.image_size)
  draw = functools.partial(render, prototypes=prototypes, chunk_size=c.render_chunk)
  pre_labels = np.arange(c.num_pretrain * c.data_multiplier) % k
  test_labels = np.arange(c.num_pretrain_test) % k
  tr_labels = np.arange(c.shots * t) % t
  te_labels = np.arange(c.num_test) % t
  pair_labels = np.arange(c.num_pairs) % t + k
  return {
      "x_matched": draw(k_a, names=target_set, labels=pre_labels[:c.num_pretrain]),
      "x_mismatched": draw(k_b, names=disjoint_set, labels=pre_labels),
      "y_pretrain": pre_labels,
      "x_pretest_matched": draw(k_pre_test, names=target_set, labels=test_labels),
      "x_pretest_mismatched": draw(k_pre_test, names=disjoint_set, labels=test_labels),
      "y_pretest": test_labels,
      "x_target_train": draw(k_tr, names=target_set, labels=tr_labels + k),
      "y_target_train": tr_labels,
      "x_target_test": draw(k_te, names=target_set, labels=te_labels + k),
      "y_target_test": te_labels,
      "pair_a": draw(k_pairs, names=target_set, labels=pair_labels,
                     transform_key=jax.random.fold_in(k_pairs, 1)),
      "pair_b": draw(k_pairs, names=target_set, labels=pair_labels,
                     transform_key=jax.random.fold_in(k_pairs, 2)),
      "sets": (target_set, disjoint_set),
  }


def pretrain(ctx, name: str, c, data: dict) -> dict:
  """Trains one classifier per seed (seeds on the mesh) on its pretraining set, or
  (``random_init``) only initialises it; returns the params, the pretraining-domain
  test accuracy (%) and the training curves."""
  width = c.width * (c.width_multiplier if name == "mismatched_2x_width" else 1)
  size = c.num_pretrain * (c.data_multiplier if name == "mismatched_4x_data" else 1)
  domain = "matched" if name in ("matched", "random_init") else "mismatched"
  model = inv.Classifier(width, c.num_pretrain_classes)
  task = tasks.classifier_task(model.init, model.apply, optax.adam(c.learning_rate),
                               batch_size=c.batch_size, replace=True)
  runs = {"key": ctx.seed_keys("pretraining", c.num_seeds),
          "examples": {"x": data[f"x_{domain}"][:, :size], "y": data["y_pretrain"][:, :size]}}
  if name == "random_init":
    return {"params": jax.jit(jax.vmap(task.init))(runs).params, "width": width}
  result = ctx.fit(name, task, runs, c.num_steps)
  test = jax.vmap(lambda p, x, y: 100 * accuracy(model.apply(p, x), y))
  return {"params": result.state.params, "width": width, "curve": result.curves["loss"],
          "pretrain_acc": np.asarray(test(result.state.params, data[f"x_pretest_{domain}"],
                                          data["y_pretest"]))}


@functools.partial(jax.jit, static_argnames=("width", "c"))
def _transfer(params, score_keys, x_tr, y_tr, x_te, y_te, pair_a, pair_b, *, width: int, c):
  """Per seed: linear-probe transfer accuracy and the two invariance scores."""
  model = inv.Classifier(width, c.num_pretrain_classes)
  features = lambda p, x: model.apply(p, x, method=inv.Classifier.features)

  def one(p, key, x_tr, y_tr, x_te, y_te, pair_a, pair_b):
    f_tr, f_te = standardize(features(p, x_tr), features(p, x_te))
    acc = logistic_probe_accuracy(f_tr, y_tr, f_te, y_te, c.num_target_classes, c.probe_l2)
    fa, fb = features(p, pair_a), features(p, pair_b)
    return acc, inv.invariance_score(fa, fb, key), inv.cosine_invariance(fa, fb)

  return jax.vmap(one)(params, score_keys, x_tr, y_tr, x_te, y_te, pair_a, pair_b)


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  data_keys = ctx.seed_keys("data", c.num_seeds)

  def build():
    per_seed = [make_seed_data(key, seed, c) for key, seed in
                zip(data_keys, ctx.seeds(c.num_seeds))]
    return {k: [d[k] for d in per_seed] if k == "sets" else np.stack([d[k] for d in per_seed])
            for k in per_seed[0]}

  data = ctx.stage("data", build)
  score_keys = ctx.seed_keys("invariance", c.num_seeds)
  frozen = ml_collections.FrozenConfigDict(c)

  def pretrain_and_transfer(name):
    out = pretrain(ctx, name, c, data)
    acc, score, cosine = _transfer(
        out.pop("params"), score_keys, *(data[k] for k in (
            "x_target_train", "y_target_train", "x_target_test", "y_target_test", "pair_a",
            "pair_b")), width=out.pop("width"), c=frozen)
    return {**out, "transfer": 100 * np.asarray(acc), "invariance": np.asarray(score),
            "cosine": np.asarray(cosine)}

  results = {n: ctx.stage(f"encoder-{n}", lambda: pretrain_and_transfer(n)) for n in ENCODERS}
  transfer = {n: results[n]["transfer"] for n in ENCODERS}
  gains = {n: transfer[n] - transfer["mismatched"] for n in
           ("matched", "mismatched_4x_data", "mismatched_2x_width")}
  measured = {f"transfer_acc_{n}": transfer[n] for n in ENCODERS}
  measured.update(gain_matched=gains["matched"], gain_4x_data=gains["mismatched_4x_data"],
                  gain_2x_width=gains["mismatched_2x_width"],
                  gain_matched_over_4x_data=gains["matched"] - gains["mismatched_4x_data"],
                  gain_matched_over_2x_width=gains["matched"] - gains["mismatched_2x_width"])
  measured.update({f"invariance_{n}": results[n]["invariance"] for n in ENCODERS})
  details = {
      "transform_sets": [{"target": list(a), "disjoint": list(b)} for a, b in data["sets"]],
      "pretrain_domain_accuracy": {n: results[n]["pretrain_acc"].tolist() for n in PRETRAINED},
      "cosine_invariance": {n: results[n]["cosine"].tolist() for n in ENCODERS},
  }
  ctx.save_figure(plot(c, results, data))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, results, data):
  fig, (ax_curves, ax_bars, ax_scatter, ax_images) = figures.panels(4)
  figures.plot_curves(ax_curves, {n: results[n]["curve"] for n in PRETRAINED},
                      title="pretraining (batch cross-entropy)")
  figures.bars_with_seeds(ax_bars, {n: results[n]["transfer"] for n in ENCODERS},
                          ylabel="transfer accuracy (%)", title=f"linear probe, {c.shots}-shot, "
                          f"{c.num_target_classes} new classes")
  for name in ENCODERS:
    ax_scatter.scatter(results[name]["invariance"], results[name]["transfer"], label=name)
  ax_scatter.set(xlabel="invariance score to the target transformations",
                 ylabel="transfer accuracy (%)", title="invariance vs transfer (per seed)")
  ax_scatter.legend(fontsize=7)
  ax_scatter.grid(alpha=0.3)
  ax_images.imshow(np.concatenate(list(data["x_target_test"][0][:8]), axis=1))
  target, disjoint = data["sets"][0]
  ax_images.set(title=f"target task, seed 0: A = {', '.join(target)}\nB = {', '.join(disjoint)}")
  ax_images.axis("off")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="invariance_transfer", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
