r"""CAT_n of independently trained CNNs vs one n×-wide CNN, transferred by linear probes.

Paper: Zhang & Bottou, "Learning useful representations for shifting tasks and
distributions", ICML 2023 — the linear-probing transfer comparison.

Command, runtime, expected and measured result: ``experiments/configs/rich_representations.py``.

Protocol. Pre-training task: MNIST-1D classes 0–4. Members: ``num_members``
1-D CNNs (``jaxrep.probe.encoders.CNNEncoder1D``, ``channels`` channels, a
``latent_dim`` linear feature layer) with a linear 5-way head; the wide network
has every width multiplied by ``num_members`` (channels and features), so its
feature dimension equals CAT_n's. Same optimiser, steps and batch size for all.
All replicates' members train in one ``fit`` (run axes replicates × members,
per-member keys from ``ctx.seed_keys``), the wide networks in another; minibatches
are drawn without replacement within a step (``classifier_task(replace=False)``:
the first runs' protocol, with the same keys and batches).

Transfer: a logistic-regression probe (``jaxrep.core.evaluate``, L-BFGS, on
standardised features) trained and tested on
  * in-distribution: classes 0–4 (train → test split);
  * held-out classes: classes 5–9 of MNIST-1D (train → test split);
  * shifted: classes 0–4 of ``mnist1d/shifted`` (correlated noise and shear
    doubled; train → test split), a distribution shift of the pre-training task.
A single member's probe accuracy is reported for reference.

Sizes (chosen once, for compute, before the reported run): members have 8
channels (the wide network 40) and 2,000 Adam steps; a 200-step timing pilot
with 16 channels put the 5×-wide networks alone over the 10-minute budget.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import rich_representations as configs
from jaxrep import data
from jaxrep.core import experiment, figures, tasks
from jaxrep.core.evaluate import accuracy, logistic_probe_accuracy, standardize
from jaxrep.probe import concat_representations as cat
from jaxrep.probe.encoders import CNNEncoder1D

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
HELDOUT_CLASSES = (5, 6, 7, 8, 9)
TARGETS = ("in_distribution", "heldout_classes", "shifted")


class EncoderClassifier(nn.Module):
  """CNNEncoder1D features (n, latent_dim) and a linear head on them."""

  latent_dim: int
  channels: int
  num_classes: int

  def setup(self):
    self.encoder = CNNEncoder1D(latent_dim=self.latent_dim, channels=self.channels)
    self.head = nn.Dense(self.num_classes)

  def features(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.encoder(x))


def class_subset(ds, classes, mean, std):
  """(x standardised, y relabelled 0..len(classes)−1) of the listed classes."""
  keep = np.isin(ds.y, classes)
  relabel = np.full(int(ds.y.max()) + 1, -1, np.int32)
  relabel[list(classes)] = np.arange(len(classes))
  return jnp.asarray((ds.x[keep] - mean) / std), jnp.asarray(relabel[ds.y[keep]])


def train_models(ctx, name: str, model: EncoderClassifier, c, keys, x, y) -> dict:
  """Params and loss curves of one model per key (leading axes of ``keys`` = the runs)."""
  task = tasks.classifier_task(model.init, model.apply, optax.adam(c.learning_rate),
                               batch_size=c.batch_size, replace=False)
  result = ctx.fit(name, task, {"key": keys}, c.train_steps,
                   data={"examples": {"x": x, "y": y}}, run_axes=keys.ndim - 1)
  return {"params": result.state.params, "curve": result.curves["loss"]}


def probe_accuracies(c, features_fn, splits) -> dict[str, jax.Array]:
  """Logistic-probe test accuracy per target for features_fn(x) -> (N, d)."""
  out = {}
  for target, (train_xy, test_xy) in splits.items():
    f_train, f_test = standardize(features_fn(train_xy[0]), features_fn(test_xy[0]))
    out[target] = logistic_probe_accuracy(f_train, train_xy[1], f_test, test_xy[1],
                                          len(PRETRAIN_CLASSES), c.probe_l2, c.probe_steps)
  return out


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train_set = data.load("mnist1d", "train", ctx.data_dir)
  test_set = data.load("mnist1d", "test", ctx.data_dir)
  shifted_train = data.load("mnist1d/shifted", "train", ctx.data_dir)
  shifted_test = data.load("mnist1d/shifted", "test", ctx.data_dir)
  mean, std = float(train_set.x.mean()), float(train_set.x.std())
  splits = {
      "in_distribution": (class_subset(train_set, PRETRAIN_CLASSES, mean, std),
                          class_subset(test_set, PRETRAIN_CLASSES, mean, std)),
      "heldout_classes": (class_subset(train_set, HELDOUT_CLASSES, mean, std),
                          class_subset(test_set, HELDOUT_CLASSES, mean, std)),
      "shifted": (class_subset(shifted_train, PRETRAIN_CLASSES, mean, std),
                  class_subset(shifted_test, PRETRAIN_CLASSES, mean, std)),
  }
  x, y = splits["in_distribution"][0]
  n = c.num_members
  member = EncoderClassifier(c.latent_dim, c.channels, len(PRETRAIN_CLASSES))
  wide = EncoderClassifier(c.latent_dim * n, c.channels * n, len(PRETRAIN_CLASSES))
  member_keys = ctx.seed_keys("members", c.num_seeds * n)  # replicate r: keys r·n … r·n+n−1
  member_keys = member_keys.reshape((c.num_seeds, n) + member_keys.shape[1:])
  members = ctx.stage("fit-members", lambda: train_models(
      ctx, "members", member, c, member_keys, x, y))
  wides = ctx.stage("fit-wide", lambda: train_models(
      ctx, "wide", wide, c, ctx.seed_keys("wide", c.num_seeds), x, y))

  def member_apply(params, inputs):
    return member.apply(params, inputs, method=EncoderClassifier.features)

  @jax.jit
  def evaluate(member_params, wide_one):
    cat_fn = lambda inputs: cat.concat_features(member_apply, member_params, inputs)
    single_fn = lambda inputs: member_apply(jax.tree.map(lambda a: a[0], member_params), inputs)
    wide_fn = lambda inputs: wide.apply(wide_one, inputs, method=EncoderClassifier.features)
    x_test, y_test = splits["in_distribution"][1]
    heads = jax.vmap(lambda p: accuracy(member.apply(p, x_test), y_test))(member_params)
    return {"cat": probe_accuracies(c, cat_fn, splits),
            "wide": probe_accuracies(c, wide_fn, splits),
            "single": probe_accuracies(c, single_fn, splits),
            "head_member": heads.mean(),
            "head_wide": accuracy(wide.apply(wide_one, x_test), y_test)}

  def evaluate_all():
    rows = []
    for r in range(c.num_seeds):
      pick = lambda tree: jax.tree.map(lambda a: a[r], tree)
      rows.append(jax.device_get(evaluate(pick(members["params"]), pick(wides["params"]))))
    return rows

  rows = ctx.stage("evaluate", evaluate_all)
  measured = {}
  for target in TARGETS:
    for rep in ("cat", "wide", "single"):
      measured[f"{target}_{rep}"] = np.array([row[rep][target] for row in rows])
    measured[f"{target}_gain"] = measured[f"{target}_cat"] - measured[f"{target}_wide"]
  measured["pretrain_head_accuracy_member"] = np.array([row["head_member"] for row in rows])
  measured["pretrain_head_accuracy_wide"] = np.array([row["head_wide"] for row in rows])
  details = {"feature_dim": c.latent_dim * n}
  ctx.save_figure(plot(measured, c, members["curve"], wides["curve"]))
  return experiment.Outcome(measured=measured, details=details)


def plot(measured, c, member_curves, wide_curves):
  fig, axes = figures.panels(4, width=4.2)
  labels = {"cat": f"CAT_{c.num_members} ({c.num_members}×{c.latent_dim}-d)",
            "wide": f"{c.num_members}×-wide ({c.num_members * c.latent_dim}-d)",
            "single": f"one member ({c.latent_dim}-d)"}
  titles = {"in_distribution": "in-distribution (classes 0–4)",
            "heldout_classes": "held-out classes (5–9)", "shifted": "shifted MNIST-1D (0–4)"}
  for ax, target in zip(axes, TARGETS):
    figures.bars_with_seeds(ax, {labels[rep]: measured[f"{target}_{rep}"] for rep in labels},
                            ylabel="linear-probe test accuracy", title=titles[target],
                            colors=("tab:red", "tab:blue", "tab:gray"))
    ax.set_ylim(0, 1)
  figures.plot_curves(axes[3], {"members": member_curves, "wide": wide_curves},
                      title="pre-training (batch cross-entropy)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="rich_representations", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
