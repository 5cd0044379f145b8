r"""Zero-shot stitching with relative representations on MNIST-1D.

Paper: Moschella et al., "Relative representations enable zero-shot latent space
communication", ICLR 2023 (``jaxrep.probe.relative``).

Command, runtime, expected and measured result: ``experiments/configs/relative_representations.py``.

Protocol. Per replicate, one set of ``anchors_per_class`` × 10 training inputs
(stratified) is shared by all models. Three encoders with a 64-d linear latent —
two 1-D CNNs from different seeds ("cnn_a", "cnn_b") and an MLP ("mlp", the
different architecture) — are each trained twice end to end with Adam as
classifiers: *absolute* (head reads the latent E(x)) and *relative* (head reads
r(x) = cos(E(x), E(anchors))). Both heads are LayerNorm → Dense(128) → ReLU →
Dense(10). Each model keeps its seed key across modes; per mode, the CNNs (run
axes names × replicates) and the MLPs train in one ``fit`` each. Minibatches: a
uniform random subset per step (without replacement, as in the first runs).
Stitching encoder a with head b means head_b ∘ encoder_a with no training; the
absolute stitch feeds E_a(x) to head_b, the relative stitch feeds r_a(x) (anchors
embedded by E_a). On the 1,000 test signals:

* ``rel_stitch_ratio_cross_seed``: S(cnn_a→cnn_b)/S(cnn_a→cnn_a) and the reverse,
  averaged; ``_cross_arch``: the same over mlp↔cnn_a, mlp↔cnn_b. The reference
  ("unstitched") accuracy is the encoder's own model's.
* ``abs_stitched_accuracy_cross_seed`` / ``_cross_arch``: mean off-diagonal accuracy
  of the absolute stitches.
* ``rel_cosine_cross_seed``: mean over test inputs of cos(r_cnn_a(x), r_cnn_b(x))
  (relatively trained encoders; ``abs_cosine_cross_seed`` the same for absolute
  latents; ``rel_pearson_cross_seed`` for the row-centred r(x) the head sees).

Hyperparameters (chosen once, before the reported run): Adam 3e-3, batch 100,
3,000 steps, the MNIST-1D setting of ``experiments/locality_dsd.py`` that trains
the CNN to ≈94%. The autoencoder stitching of the paper is not reproduced.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import relative_representations as configs
from jaxrep import registry
from jaxrep.core import experiment, figures, tasks
from jaxrep.probe import relative
from jaxrep.probe.encoders import CNNEncoder1D, MLPEncoder, standardized_mnist1d

MODELS = ("cnn_a", "cnn_b", "mlp")
MODES = ("absolute", "relative")
ARCHS = {"cnn": ("cnn_a", "cnn_b"), "mlp": ("mlp",)}


def encoder_for(name: str, c):
  """The MLP for "mlp", the 1-D CNN for any other name ("cnn", "cnn_a", "cnn_b")."""
  return (MLPEncoder(c.latent_dim, tuple(c.mlp_hidden)) if name == "mlp"
          else CNNEncoder1D(c.latent_dim, c.cnn_channels))


def train(ctx, c, arch: str, mode: str, anchors_x, examples) -> dict:
  """Trains (encoder ``arch``, head) per (model name, seed) in one fit (run axes
  names × seeds); returns per-name params and loss curves, leading axis = seeds."""
  encoder, head = encoder_for(arch, c), relative.MLPHead(10, c.head_hidden)
  head_dim = anchors_x.shape[1] if mode == "relative" else c.latent_dim

  def model_init(key, rows):
    return {"encoder": encoder.init(key, rows["x"]),
            "head": head.init(jax.random.fold_in(key, 1), jnp.zeros((1, head_dim)))}

  def loss_fn(params, batch, rng):
    apply = lambda p, x: relative.stitched_logits(encoder.apply, p["encoder"], head.apply,
                                                  p["head"], x, batch.get("anchors"))
    return tasks.cross_entropy_loss_fn(apply)(params, batch, rng)

  task = tasks.minibatch_task(model_init, loss_fn, optax.adam(c.learning_rate),
                              batch_size=c.batch_size, replace=False)
  names = ARCHS[arch]
  runs = {"key": jnp.stack([ctx.seed_keys(name, c.num_seeds) for name in names])}
  if mode == "relative":
    runs["hparams"] = {"anchors": jnp.broadcast_to(anchors_x, (len(names),) + anchors_x.shape)}
  result = ctx.fit(f"{arch}-{mode}", task, runs, c.num_steps, data={"examples": examples},
                   run_axes=2)
  return {name: {"params": jax.tree.map(lambda a: a[i], result.state.params),
                 "curve": result.curves["loss"][i]} for i, name in enumerate(names)}


def evaluate_replicate(c, params, anchors_x, x_test, y_test):
  """Stitching matrices (absolute, relative) and cross-seed cosines of one replicate."""
  head = relative.MLPHead(10, c.head_hidden)
  out = {}
  for mode in MODES:
    anchors = anchors_x if mode == "relative" else None
    encoders = [(encoder_for(m, c).apply, params[(m, mode)]["encoder"]) for m in MODELS]
    heads = [(head.apply, params[(m, mode)]["head"]) for m in MODELS]
    out[f"stitch_{mode}"] = np.asarray(relative.pairwise_stitching_matrix(
        encoders, heads, x_test, y_test, anchors))
    reps = {m: relative.head_inputs(encode, p, x_test, anchors_x)
            for m, (encode, p) in zip(MODELS, encoders)}
    # Diagnostic: the head's LayerNorm removes each r(x)'s mean, so what it sees
    # agrees across encoders as much as the row-centred r(x) do (Pearson r).
    centred = {m: r - r.mean(-1, keepdims=True) for m, r in reps.items()}
    for stat, values in (("cosine", reps), ("pearson", centred)):
      out[f"rel_{stat}_{mode}_encoders"] = {
          f"{a}-{b}": float(relative.mean_cosine(values[a], values[b]))
          for a, b in itertools.combinations(MODELS, 2)}
  latents = [encoder_for(m, c).apply(params[(m, "absolute")]["encoder"], x_test)
             for m in ("cnn_a", "cnn_b")]
  out["abs_cosine_cross_seed"] = float(relative.mean_cosine(*latents))
  return out


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  x, y, x_test, y_test = map(jnp.asarray, standardized_mnist1d(ctx.data_dir))
  anchor_idx = jax.vmap(lambda k: relative.stratified_anchor_indices(
      k, y, 10, c.anchors_per_class))(ctx.seed_keys("anchors", c.num_seeds))
  trained = {}
  for mode, arch in itertools.product(MODES, ARCHS):
    group = ctx.stage(f"fit-{arch}-{mode}",
                      lambda: train(ctx, c, arch, mode, x[anchor_idx], {"x": x, "y": y}))
    trained.update({(name, mode): value for name, value in group.items()})

  replicates = [evaluate_replicate(
      c, {k: jax.tree.map(lambda a: a[r], v["params"]) for k, v in trained.items()},
      x[anchor_idx[r]], x_test, y_test) for r in range(c.num_seeds)]
  idx = {m: i for i, m in enumerate(MODELS)}
  seed_pairs = [(idx["cnn_a"], idx["cnn_b"]), (idx["cnn_b"], idx["cnn_a"])]
  arch_pairs = [(idx[a], idx[b]) for a, b in itertools.permutations(MODELS, 2)
                if "mlp" in (a, b)]
  rel, ab = (np.stack([rep[f"stitch_{mode}"] for rep in replicates])
             for mode in ("relative", "absolute"))
  ratio = lambda s, pairs: np.mean([s[:, a, b] / s[:, a, a] for a, b in pairs], 0)
  stitched = lambda s, pairs: np.mean([s[:, a, b] for a, b in pairs], 0)
  per_seed = lambda name, *pair: np.array([rep[name][pair[0]] if pair else rep[name]
                                           for rep in replicates])
  measured = {
      "rel_stitch_ratio_cross_seed": ratio(rel, seed_pairs),
      "rel_stitch_ratio_cross_arch": ratio(rel, arch_pairs),
      "abs_stitched_accuracy_cross_seed": stitched(ab, seed_pairs),
      "abs_stitched_accuracy_cross_arch": stitched(ab, arch_pairs),
      "rel_cosine_cross_seed": per_seed("rel_cosine_relative_encoders", "cnn_a-cnn_b"),
      "rel_pearson_cross_seed": per_seed("rel_pearson_relative_encoders", "cnn_a-cnn_b"),
      "abs_cosine_cross_seed": per_seed("abs_cosine_cross_seed"),
      "rel_stitched_accuracy_cross_seed": stitched(rel, seed_pairs),
      "rel_stitched_accuracy_cross_arch": stitched(rel, arch_pairs),
  }
  for i, m in enumerate(MODELS):
    measured.update({f"unstitched_accuracy_relative_{m}": rel[:, i, i],
                     f"unstitched_accuracy_absolute_{m}": ab[:, i, i]})
  details = {
      "models": MODELS,
      "stitch_matrix_relative_mean": rel.mean(0), "stitch_matrix_absolute_mean": ab.mean(0),
      "stitch_matrices_relative": rel, "stitch_matrices_absolute": ab,
      **{name.replace("cosine", "cosines"): [rep[name] for rep in replicates]
         for name in ("rel_cosine_relative_encoders", "rel_cosine_absolute_encoders",
                      "rel_pearson_relative_encoders")},
      "head_side_ratio_cross_arch": [np.mean([s[a, b] / s[b, b] for a, b in arch_pairs])
                                     for s in rel],
  }
  ctx.save_figure(plot(rel.mean(0), ab.mean(0), trained, measured))
  return experiment.Outcome(measured=measured, details=details)


def plot(rel, ab, trained, measured):
  fig, axes = figures.panels(4)
  for ax, matrix, title in ((axes[0], ab, "absolute"), (axes[1], rel, "relative")):
    ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i, j in itertools.product(range(len(MODELS)), repeat=2):
      ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="w")
    ax.set(xticks=range(len(MODELS)), yticks=range(len(MODELS)), xticklabels=MODELS,
           yticklabels=MODELS, xlabel="head from", ylabel="encoder from",
           title=f"{title} stitching: test accuracy")
  figures.plot_curves(axes[2], {f"{name} ({mode})": v["curve"]
                                for (name, mode), v in trained.items()},
                      title="training (batch cross-entropy)")
  names = ("rel_stitch_ratio_cross_seed", "rel_stitch_ratio_cross_arch",
           "abs_stitched_accuracy_cross_seed", "abs_stitched_accuracy_cross_arch",
           "rel_cosine_cross_seed", "abs_cosine_cross_seed")
  figures.bars_with_seeds(axes[3], {n.replace("_", " "): measured[n] for n in names},
                          ylabel="value", title="claim quantities (mean ± std, seeds)")
  axes[3].axhline(registry.threshold("relative_representations", "rel_stitch_ratio_cross_seed"),
                  color="k", ls="--", lw=1)
  axes[3].axhline(registry.threshold("relative_representations",
                                     "abs_stitched_accuracy_cross_seed"),
                  color="gray", ls=":", lw=1)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="relative_representations", get_config=configs.get_config,
    run=run, quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
