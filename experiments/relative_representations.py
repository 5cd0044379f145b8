r"""Zero-shot stitching with relative representations on MNIST-1D.

Paper: Moschella et al., "Relative representations enable zero-shot latent space
communication", ICLR 2023 (``jaxrep.probe.relative``).

Command:   jaxrep run relative_representations --workdir runs/relative_representations
           (= python -m experiments.relative_representations --workdir=...)
Runtime:   7 min 17 s measured on 2 CPU cores (shared the cores with tests) (quick mode: seconds).
Expected:  (the claim) relative stitching keeps ≥ 0.9× the unstitched accuracy across
           seeds and architectures; absolute stitching near chance (≤ 0.3, chance
           0.1); relative representations of two seeds have cosine ≥ 0.9.
Measured:  FAIL, narrowly. Ratios 0.896 ± 0.032 (cross-seed) and 0.879 ± 0.028
           (cross-architecture); absolute stitching 0.046 / 0.106; cross-seed cosine
           0.982 ± 0.002. Diagnosis: the raw cosine is inflated by the component
           that all r(x) share; the head's LayerNorm removes each r(x)'s mean, and
           the row-centred r(x) of two seeds agree only at Pearson r = 0.64
           (``rel_pearson_cross_seed``), i.e. the two latent spaces are not related
           by an angle-preserving map closely enough for a head trained to zero
           training loss; stitching is asymmetric (cnn_a→cnn_b 0.94×, cnn_b→cnn_a
           0.85×).

Protocol. Per replicate, one set of ``anchors_per_class`` × 10 training inputs
(stratified) is shared by all models. Three encoders with a 64-d linear latent —
two 1-D CNNs from different seeds ("cnn_a", "cnn_b") and an MLP ("mlp", the
different architecture) — are each trained twice end to end with Adam as
classifiers: *absolute* (head reads the latent E(x)) and *relative* (head reads
r(x) = cos(E(x), E(anchors))). Both heads are LayerNorm → Dense(128) → ReLU →
Dense(10). Stitching encoder a with head b means head_b ∘ encoder_a with no
training; the absolute stitch feeds E_a(x) to head_b, the relative stitch feeds
r_a(x) (anchors embedded by E_a). On the 1,000 test signals:

* ``rel_stitch_ratio_cross_seed``: S(cnn_a→cnn_b)/S(cnn_a→cnn_a) and the reverse,
  averaged; ``rel_stitch_ratio_cross_arch``: the same over the four pairs
  (mlp↔cnn_a, mlp↔cnn_b). The reference ("unstitched") accuracy of a pair is the
  encoder's own model, whose information the stitched head receives.
* ``abs_stitched_accuracy_cross_seed`` / ``_cross_arch``: mean off-diagonal accuracy
  of the absolute stitches.
* ``rel_cosine_cross_seed``: mean over test inputs of cos(r_cnn_a(x), r_cnn_b(x)),
  for the relatively trained encoders (baseline: the same for the absolute latents,
  ``abs_cosine_cross_seed``).

Hyperparameters (chosen once, before the reported run): Adam 3e-3, batch 100,
3,000 steps, the MNIST-1D setting of ``experiments/locality_dsd.py`` that trains
the CNN to ≈94%. The autoencoder stitching of the paper is not reproduced.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxrep.core import experiment, train
from jaxrep.core.evaluate import accuracy
from jaxrep.probe import relative
from jaxrep.probe.encoders import CNNEncoder1D, MLPEncoder, standardized_mnist1d

CLAIM = ("Relative (anchor-cosine) representations let an encoder from one MNIST-1D model "
         "be stitched zero-shot to the head of another (different seed or architecture) at "
         "≥ 0.9× the unstitched accuracy, while absolute stitching is near chance (≤ 0.3), "
         "and relative representations of two seeds have cosine ≥ 0.9.")
REL_STITCH_RATIO_MIN = 0.9
ABS_STITCH_ACCURACY_MAX = 0.3
REL_COSINE_MIN = 0.9
MODELS = ("cnn_a", "cnn_b", "mlp")
MODES = ("absolute", "relative")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.latent_dim = 64
  c.cnn_channels = 32
  c.mlp_hidden = (256, 256)
  c.head_hidden = 128
  c.anchors_per_class = 20
  c.num_steps = 3000
  c.batch_size = 100
  c.learning_rate = 3e-3
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.anchors_per_class = 4
  c.num_steps = 60
  c.mlp_hidden = (64,)
  c.cnn_channels = 8
  c.head_hidden = 32
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.learning_rate <= 0:
    raise experiment.ConfigError("config key 'learning_rate' must be positive")
  if not c.mlp_hidden or any(w <= 0 for w in c.mlp_hidden):
    raise experiment.ConfigError("config key 'mlp_hidden' must be positive widths")


def encoder_for(name: str, c):
  """The MLP for "mlp", the 1-D CNN for any other name ("cnn", "cnn_a", "cnn_b")."""
  if name == "mlp":
    return MLPEncoder(c.latent_dim, tuple(c.mlp_hidden))
  return CNNEncoder1D(c.latent_dim, c.cnn_channels)


@functools.partial(jax.jit, static_argnames=("name", "mode", "c"))
def train_models(keys, anchor_idx, x, y, *, name, mode, c):
  """Trains one (encoder, mode) per replicate key; returns params with a leading seed axis."""
  encoder = encoder_for(name, c)
  head = relative.MLPHead(10, c.head_hidden)
  optimizer = optax.adam(c.learning_rate)

  def one(key, idx):
    key_enc, key_head, key_batches = jax.random.split(key, 3)
    anchors_x = x[idx] if mode == "relative" else None
    latent = encoder.init(key_enc, x[:1])
    head_in = relative.head_inputs(encoder.apply, latent, x[:2], anchors_x)
    params = {"encoder": latent, "head": head.init(key_head, head_in)}

    def loss_fn(p, batch, rng):
      del rng
      logits = relative.stitched_logits(encoder.apply, p["encoder"], head.apply, p["head"],
                                        batch[0], anchors_x)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
      return ce, {"accuracy": accuracy(logits, batch[1])}

    def batch_fn(i):
      idx_b = jax.random.choice(jax.random.fold_in(key_batches, i), x.shape[0],
                                (c.batch_size,), replace=False)
      return x[idx_b], y[idx_b]

    state = train.init_train_state(params, optimizer, key)
    step = train.make_train_step(loss_fn, optimizer, jit=False)
    state, metrics = train.scan_steps(step, state, batch_fn, c.num_steps)
    return state.params, metrics["loss"][-100:].mean()

  return jax.vmap(one)(keys, anchor_idx)


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
    reps = {m: relative.head_inputs(encoder_for(m, c).apply, params[(m, mode)]["encoder"],
                                    x_test, anchors_x)
            for m in MODELS}
    out[f"rel_cosine_{mode}_encoders"] = {
        f"{a}-{b}": float(relative.mean_cosine(reps[a], reps[b]))
        for a, b in itertools.combinations(MODELS, 2)}
    # Diagnostic: the head's LayerNorm removes each r(x)'s mean, so what it sees
    # agrees across encoders as much as the row-centred r(x) do (Pearson r).
    centred = {m: r - r.mean(-1, keepdims=True) for m, r in reps.items()}
    out[f"rel_pearson_{mode}_encoders"] = {
        f"{a}-{b}": float(relative.mean_cosine(centred[a], centred[b]))
        for a, b in itertools.combinations(MODELS, 2)}
  latents = {m: encoder_for(m, c).apply(params[(m, "absolute")]["encoder"], x_test)
             for m in ("cnn_a", "cnn_b")}
  out["abs_cosine_cross_seed"] = float(relative.mean_cosine(latents["cnn_a"], latents["cnn_b"]))
  return out


def pair_groups():
  """Ordered (encoder, head) index pairs: cross-seed and cross-architecture."""
  idx = {m: i for i, m in enumerate(MODELS)}
  seed_pairs = [(idx["cnn_a"], idx["cnn_b"]), (idx["cnn_b"], idx["cnn_a"])]
  arch_pairs = [(idx[a], idx[b]) for a, b in itertools.permutations(MODELS, 2)
                if "mlp" in (a, b)]
  return seed_pairs, arch_pairs


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  x, y, x_test, y_test = map(jnp.asarray, standardized_mnist1d(ctx.data_dir))
  anchor_keys = ctx.seed_keys("anchors", c.num_seeds)
  anchor_idx = jax.vmap(lambda k: relative.stratified_anchor_indices(
      k, y, 10, c.anchors_per_class))(anchor_keys)
  frozen = ml_collections.FrozenConfigDict(c)
  params, final_loss = {}, {}
  meter, done = ctx.progress("training", len(MODES) * 2, unit="model groups"), 0
  for mode in MODES:
    for arch, names in (("cnn", ("cnn_a", "cnn_b")), ("mlp", ("mlp",))):
      # One program per architecture: both CNN seeds train in the same vmap; each
      # model keeps its init key across modes.
      keys = jnp.concatenate([ctx.seed_keys(name, c.num_seeds) for name in names])
      idx = jnp.tile(anchor_idx, (len(names), 1))
      group_params, group_loss = ctx.stage(
          f"train-{arch}-{mode}",
          lambda: train_models(keys, idx, x, y, name=arch, mode=mode, c=frozen))
      for i, name in enumerate(names):
        part = slice(i * c.num_seeds, (i + 1) * c.num_seeds)
        params[(name, mode)] = jax.tree_util.tree_map(lambda a: a[part], group_params)
        final_loss[(name, mode)] = group_loss[part]
      done += 1
      meter.update(done, f"{arch}/{mode} final train loss {np.mean(group_loss):.3f}")

  replicates = []
  for r in range(c.num_seeds):
    params_r = {k: jax.tree_util.tree_map(lambda a: a[r], v) for k, v in params.items()}
    replicates.append(evaluate_replicate(c, params_r, x[anchor_idx[r]], x_test, y_test))

  seed_pairs, arch_pairs = pair_groups()

  def ratio(s, pairs):
    return np.mean([s[a, b] / s[a, a] for a, b in pairs])

  def stitched(s, pairs):
    return np.mean([s[a, b] for a, b in pairs])

  rel = [rep["stitch_relative"] for rep in replicates]
  ab = [rep["stitch_absolute"] for rep in replicates]
  measured = {
      "rel_stitch_ratio_cross_seed": np.array([ratio(s, seed_pairs) for s in rel]),
      "rel_stitch_ratio_cross_arch": np.array([ratio(s, arch_pairs) for s in rel]),
      "abs_stitched_accuracy_cross_seed": np.array([stitched(s, seed_pairs) for s in ab]),
      "abs_stitched_accuracy_cross_arch": np.array([stitched(s, arch_pairs) for s in ab]),
      "rel_cosine_cross_seed": np.array(
          [rep["rel_cosine_relative_encoders"]["cnn_a-cnn_b"] for rep in replicates]),
      "rel_pearson_cross_seed": np.array(
          [rep["rel_pearson_relative_encoders"]["cnn_a-cnn_b"] for rep in replicates]),
      "abs_cosine_cross_seed": np.array([rep["abs_cosine_cross_seed"] for rep in replicates]),
      "rel_stitched_accuracy_cross_seed": np.array([stitched(s, seed_pairs) for s in rel]),
      "rel_stitched_accuracy_cross_arch": np.array([stitched(s, arch_pairs) for s in rel]),
  }
  for i, m in enumerate(MODELS):
    measured[f"unstitched_accuracy_relative_{m}"] = np.array([s[i, i] for s in rel])
    measured[f"unstitched_accuracy_absolute_{m}"] = np.array([s[i, i] for s in ab])
  for (name, mode), loss in final_loss.items():
    ctx.logger.log(c.num_steps, {"final_train_loss": float(np.mean(loss))},
                   run=f"{name}-{mode}")

  means = {k: float(np.mean(v)) for k, v in measured.items()}
  passed = bool(means["rel_stitch_ratio_cross_seed"] >= REL_STITCH_RATIO_MIN
                and means["rel_stitch_ratio_cross_arch"] >= REL_STITCH_RATIO_MIN
                and means["abs_stitched_accuracy_cross_seed"] <= ABS_STITCH_ACCURACY_MAX
                and means["abs_stitched_accuracy_cross_arch"] <= ABS_STITCH_ACCURACY_MAX
                and means["rel_cosine_cross_seed"] >= REL_COSINE_MIN)
  details = {
      "models": MODELS,
      "stitch_matrix_relative_mean": np.mean(rel, 0),
      "stitch_matrix_absolute_mean": np.mean(ab, 0),
      "stitch_matrices_relative": rel, "stitch_matrices_absolute": ab,
      "rel_cosines_relative_encoders": [rep["rel_cosine_relative_encoders"] for rep in replicates],
      "rel_cosines_absolute_encoders": [rep["rel_cosine_absolute_encoders"] for rep in replicates],
      "rel_pearson_relative_encoders": [rep["rel_pearson_relative_encoders"]
                                        for rep in replicates],
      "head_side_ratio_cross_arch": [np.mean([s[a, b] / s[b, b] for a, b in arch_pairs])
                                     for s in rel],
      "thresholds": {"rel_stitch_ratio_min": REL_STITCH_RATIO_MIN,
                     "abs_stitch_accuracy_max": ABS_STITCH_ACCURACY_MAX,
                     "rel_cosine_min": REL_COSINE_MIN},
  }
  ctx.save_figure(plot(np.mean(rel, 0), np.mean(ab, 0), measured))
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(rel, ab, measured):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(14, 4))
  for ax, matrix, title in ((axes[0], ab, "absolute"), (axes[1], rel, "relative")):
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i, j in itertools.product(range(len(MODELS)), repeat=2):
      ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="w")
    ax.set(xticks=range(len(MODELS)), yticks=range(len(MODELS)), xticklabels=MODELS,
           yticklabels=MODELS, xlabel="head from", ylabel="encoder from",
           title=f"{title} stitching: test accuracy")
  fig.colorbar(image, ax=axes[:2], shrink=0.8)
  names = ["rel_stitch_ratio_cross_seed", "rel_stitch_ratio_cross_arch",
           "abs_stitched_accuracy_cross_seed", "abs_stitched_accuracy_cross_arch",
           "rel_cosine_cross_seed", "abs_cosine_cross_seed"]
  means = [np.mean(measured[n]) for n in names]
  stds = [np.std(measured[n]) for n in names]
  axes[2].barh(range(len(names)), means, xerr=stds, color="tab:blue")
  axes[2].set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
  axes[2].axvline(REL_STITCH_RATIO_MIN, color="k", ls="--", lw=1)
  axes[2].axvline(ABS_STITCH_ACCURACY_MAX, color="gray", ls=":", lw=1)
  axes[2].set(xlim=(min(0, min(means) - 0.1), 1.05), title="claim quantities (mean ± std)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="relative_representations", claim=CLAIM, get_config=get_config, run=run,
    quick=quick, validate=validate, runtime_s=480,
    headline=("rel_stitch_ratio_cross_seed", "rel_stitch_ratio_cross_arch",
              "abs_stitched_accuracy_cross_seed", "rel_cosine_cross_seed"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
