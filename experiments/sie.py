r"""SIE vs VICReg on rotated digits: does the split keep the rotation and the class?

Paper: Garrido, Najman, LeCun, "Self-supervised learning of Split Invariant
Equivariant representations", ICML 2023 (3DIEBench: rotation prediction R² from
representation pairs 0.73 for SIE vs 0.41 for VICReg; linear top-1 within a few
points of VICReg).

Command, runtime and expected result: ``experiments/configs/sie.py``.

Protocol (a 2-D stand-in for 3DIEBench, fixed before the first default run):
* Data: scikit-learn's 8×8 digits (1437 train / 360 test) placed on a 16×16 canvas,
  scaled ×1.4 and rotated about the centre by a uniform angle θ ∈ [0, 2π)
  (bilinear; ``groups.warp_image``). A training pair is two independent rotations
  (θ_x, θ_y) of one image, drawn fresh inside each step, with z = (cos Δ, sin Δ),
  Δ = θ_y − θ_x. Like 3DIEBench (views differ only by the object's rotation), no
  other augmentation is used. This is our stand-in: 2-D SO(2) rotations of digits,
  not 3-D renders; the transformation parameter is (cos, sin) instead of a quaternion.
* Models (same encoder, same data, same steps): an MLP encoder 256 → 256 → 64
  (the representation r); SIE splits r into 32 invariant + 32 equivariant dims, each
  with its own 64-64 projector, and a linear hypernetwork predictor (official
  ``--hypernetwork linear``, no predictor bias); VICReg has one 128-128 projector on
  the whole r. Loss weights: the official SIE command's λ = μ = 10, ν = 1, η = 0.45;
  VICReg uses the same λ = μ = 10, ν = 1 (the SIE repo's VICReg baseline is run with
  the same coefficients; the VICReg paper's are 25/25/1).
  Adam, lr 1e-3 with 250 warmup steps and cosine decay, batch 256, 5,000 steps,
  3 seeds.
* Evaluation on frozen representations (official: ``eval_angle_prediction.py`` trains
  an MLP on concatenated pairs to the relative rotation; ``eval_classification.py`` a
  linear head): fixed test pairs (8 per test image, angles drawn once, shared by every
  model and seed) and training pairs (4 per training image).
  - rotation: an MLP probe (2 hidden layers of 128, as the official 2·d widths would
    give 128) on [r_x, r_y] regresses (cos Δ, sin Δ); R² averaged over the two outputs
    on the test pairs. Also probed: SIE's invariant and equivariant halves alone
    (the other half zeroed) and the untrained encoder (negative control: the probe
    itself, not the SSL, would carry any R² it shows). Adam, lr 1e-3 with cosine
    decay, batch 256, 2,000 steps.
  - class: L-BFGS logistic probe (standardised features) on r of the first view.
Claim (ours): R²(SIE) − R²(VICReg) ≥ 0.2 (seed-paired mean) and
accuracy(VICReg) − accuracy(SIE) ≤ 0.05. Gates: both SSL losses and every
rotation probe at a plateau: the mean training loss of the last quarter of the
steps is at most 5% below that of the third quarter (relative to its scale).

Deviations from the official protocol: MLP encoder instead of ResNet-18; projectors
without BatchNorm; 5,000 steps (≈ 890 epochs of 1437 images) instead of 2,000 epochs;
Adam with our warmup-cosine schedule; 2-D rotations of digits instead of 3DIEBench;
probes trained after SSL, not online.

History.
* Run 1 (2026-12-02, 2,000 SSL steps at a constant lr 1e-3, probes at a constant
  lr): NOT COMPARABLE — the VICReg loss was still falling (late improvement 0.14 >
  0.05) and so were the probes' training losses (0.20 > 0.05); the SIE gate held
  (0.042). Values then: R² SIE 0.948 ± 0.006, VICReg −0.040 ± 0.003, untrained
  encoder 0.789 ± 0.015, SIE inv. half −0.016, SIE equi. half 0.983; class accuracy
  SIE 0.614 ± 0.015, VICReg 0.764 ± 0.006, untrained 0.647 (gain 0.99: holds; drop
  0.149: fails, 0/3 seeds). Change for run 2, made because gates failed (training
  budget), not to move the claim: 5,000 SSL steps with warmup + cosine decay and
  cosine decay for the probes; thresholds, seeds, data and probes otherwise unchanged.
* Run 2 (2026-12-02, this protocol): NOT COMPARABLE. Gates: SIE plateau holds
  (0.018); VICReg's narrowly fails (0.057 > 0.05, loss 2.65 → 2.41 over the last
  2,000 steps); the probes' (0.110 > 0.05) fails. Claim values: R² SIE vs VICReg gain
  0.949 ± 0.011 (holds 3/3; SIE 0.924 ± 0.010, VICReg −0.025 ± 0.001: its
  representation is rotation-invariant, while the untrained encoder's R² is
  0.765 ± 0.014); class-accuracy drop
  0.166 ± 0.020 (fails 0/3: SIE 0.613 ± 0.023, VICReg 0.780 ± 0.013, untrained
  encoder 0.647). Diagnosis: (i) the probe gate measures the training loss of an MLP
  probe fitting a fixed set of 5,748 pairs; it keeps memorising under cosine decay,
  so that gate as defined says little about whether the probe's test R² has
  converged (a flaw in our gate, left unchanged after seeing results). (ii) The
  class drop is three times the threshold and did not shrink with the longer
  training (0.149 → 0.166); SIE's representation spends its equivariant half on
  the rotation (R² of that half alone 0.98) and its linear class accuracy falls
  below even the untrained encoder's, so the class claim would fail whatever the
  two narrow gate misses. In the paper (3DIEBench, ResNet-18, 2,000 epochs) SIE's
  top-1 is within a few points of VICReg's; with a 64-d MLP representation on
  digits the split costs far more. Not rerun further: a third change after two
  verdicts would be tuning toward the claim.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import sie as configs
from jaxrep import data, groups
from jaxrep.core import evaluate, experiment, figures, tasks
from jaxrep.probe.encoders import MLPEncoder
from jaxrep.ssl import sie, vicreg

MODELS = ("sie", "vicreg")
# Rotation probes: (name, model whose representation is probed, dims kept)
PROBES = (("sie", "sie", "all"), ("sie_inv", "sie", "inv"), ("sie_equi", "sie", "equi"),
          ("vicreg", "vicreg", "all"), ("random_init", "random", "all"))
LABELS = {"sie": "SIE", "vicreg": "VICReg", "sie_inv": "SIE inv. half",
          "sie_equi": "SIE equi. half", "random_init": "untrained encoder"}


# ------------------------------------------------------------------ data

def digits_on_canvas(x: np.ndarray, canvas: int) -> np.ndarray:
  """(N, 8, 8, 1) digit counts 0..16 → (N, canvas, canvas, 1) in [0, 1], centred."""
  before = (canvas - x.shape[1]) // 2
  after = canvas - x.shape[1] - before
  return np.pad(x / 16.0, ((0, 0), (before, after), (before, after), (0, 0))).astype(np.float32)


def rotate(images: jax.Array, theta: jax.Array, scale: float) -> jax.Array:
  """Each (canvas, canvas, 1) image scaled and rotated by its θ about the centre,
  flattened: (n, canvas²)."""
  warp = lambda image, t: groups.warp_image(scale * groups.rotation_2d(t), image)
  return jax.vmap(warp)(images, theta).reshape(images.shape[0], -1)


def relative_rotation(theta_x: jax.Array, theta_y: jax.Array) -> jax.Array:
  """z = (cos Δ, sin Δ), Δ = θ_y − θ_x: (n, 2)."""
  delta = theta_y - theta_x
  return jnp.stack([jnp.cos(delta), jnp.sin(delta)], axis=-1)


def random_pair_views(rng: jax.Array, batch: dict, scale: float) -> dict:
  """Two uniform rotations of every image of the batch and their relative rotation."""
  theta = jax.random.uniform(rng, (2, batch["x"].shape[0]), maxval=2 * jnp.pi)
  return {"view1": rotate(batch["x"], theta[0], scale),
          "view2": rotate(batch["x"], theta[1], scale),
          "z": relative_rotation(theta[0], theta[1])}


def fixed_pairs(key: jax.Array, images: np.ndarray, labels: np.ndarray, per_image: int,
                scale: float) -> dict:
  """``per_image`` rotation pairs of every image, drawn once: views, z and labels."""
  images = np.repeat(images, per_image, axis=0)
  theta = jax.random.uniform(key, (2, images.shape[0]), maxval=2 * jnp.pi)
  rotate_jit = jax.jit(functools.partial(rotate, scale=scale))
  return {"view1": np.asarray(rotate_jit(images, theta[0])),
          "view2": np.asarray(rotate_jit(images, theta[1])),
          "z": np.asarray(relative_rotation(theta[0], theta[1])),
          "y": np.repeat(labels, per_image)}


# ------------------------------------------------------------------ models

def make_models(c):
  """The SIE model and VICReg's (encoder, projector) pair, on the same encoder."""
  encoder = MLPEncoder(latent_dim=c.model.rep_dim, hidden=tuple(c.model.encoder_hidden))
  ratio = c.model.inv_dim / c.model.rep_dim
  inv_widths = tuple(int(round(w * ratio)) for w in c.model.projector)
  equi_widths = tuple(w - v for w, v in zip(c.model.projector, inv_widths))
  sie_model = sie.SIEModel(encoder=encoder, inv_dim=c.model.inv_dim,
                           projector_inv=inv_widths, projector_equi=equi_widths,
                           transform_dim=2)
  projector = MLPEncoder(latent_dim=c.model.projector[-1],
                         hidden=tuple(c.model.projector[:-1]))
  return sie_model, encoder, projector


def ssl_task(kind: str, c):
  """(task, represent(params, x) -> r) for SIE or VICReg on random rotation pairs."""
  sie_model, encoder, projector = make_models(c)
  s = c.ssl
  make_views = functools.partial(random_pair_views, scale=c.data.scale)
  optimizer = optax.adam(optax.warmup_cosine_decay_schedule(
      0.0, s.learning_rate, s.warmup_steps, s.num_steps))
  canvas = c.data.canvas
  flat = lambda rows: rows["x"].reshape(rows["x"].shape[0], canvas * canvas)
  if kind == "sie":
    loss_fn = sie.sie_loss_fn(sie_model, sim_weight=s.sim_weight, std_weight=s.std_weight,
                              cov_weight=s.cov_weight, equi_factor=s.equi_factor,
                              make_views=make_views)
    init = lambda key, rows: sie_model.init(key, flat(rows), flat(rows), jnp.zeros((1, 2)))
    represent = lambda p, x: sie_model.apply(p, x, method=sie.SIEModel.represent)
  else:
    def init(key, rows):
      key_enc, key_proj = jax.random.split(key)
      encoder_params = encoder.init(key_enc, flat(rows))
      rep = encoder.apply(encoder_params, flat(rows))
      return {"encoder": encoder_params, "projector": projector.init(key_proj, rep)}

    embed = lambda p, x: projector.apply(p["projector"], encoder.apply(p["encoder"], x))
    base_loss = vicreg.vicreg_loss_fn(embed, invariance_weight=s.sim_weight,
                                      variance_weight=s.std_weight,
                                      covariance_weight=s.cov_weight)

    def loss_fn(params, batch, rng, axis_name=None):
      return base_loss(params, make_views(rng, batch), rng, axis_name=axis_name)

    represent = lambda p, x: encoder.apply(p["encoder"], x)
  task = tasks.minibatch_task(init, loss_fn, optimizer, batch_size=s.batch_size)
  return task, represent


def late_improvement(curves: np.ndarray, window: float) -> np.ndarray:
  """Per run: (mean loss over the third-to-last window − over the last window) /
  (|mean over the last window| + the curve's range over the last half), a relative
  drop still under way at the end; curves (runs, steps)."""
  curves = np.asarray(curves, float)
  steps = curves.shape[-1]
  width = max(1, int(window * steps))
  last = curves[..., steps - width:].mean(-1)
  before = curves[..., steps - 2 * width:steps - width].mean(-1)
  half = curves[..., steps // 2:]
  scale = np.abs(last) + (half.max(-1) - half.min(-1))
  return (before - last) / scale


# ------------------------------------------------------------------ probes

def mask_features(rep: jax.Array, part: str, inv_dim: int) -> jax.Array:
  """r with the other half zeroed for ``part`` in {"all", "inv", "equi"}."""
  keep = jnp.arange(rep.shape[-1]) < inv_dim
  if part == "all":
    return rep
  return rep * (keep if part == "inv" else ~keep)


def rotation_probe(ctx, c, features_train, z_train, features_test, z_test):
  """MLP probe [r_x, r_y] → (cos Δ, sin Δ) for every (probe, seed) run in one fit.
  features_*: (runs, n, 2d); returns test R² per run, train loss curves."""
  p = c.probe
  head = MLPEncoder(latent_dim=2, hidden=tuple(p.hidden))

  def loss_fn(params, batch, rng, axis_name=None):
    del rng, axis_name
    return jnp.mean((head.apply(params, batch["features"]) - batch["z"]) ** 2), {}

  task = tasks.minibatch_task(lambda key, rows: head.init(key, rows["features"]), loss_fn,
                              optax.adam(optax.cosine_decay_schedule(p.learning_rate,
                                                                     p.num_steps)),
                              batch_size=p.batch_size)
  num_runs = features_train.shape[0]
  z_runs = np.broadcast_to(z_train, (num_runs, *z_train.shape))
  result = ctx.fit("rotation_probe", task,
                   {"key": ctx.seed_keys("rotation_probe", num_runs),
                    "examples": {"features": features_train, "z": z_runs}},
                   p.num_steps)
  r2 = jax.jit(jax.vmap(lambda params, f: sie.r2_score(head.apply(params, f), z_test)))(
      result.state.params, features_test)
  return np.asarray(r2), result.curves["loss"]


# ------------------------------------------------------------------ run

def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  train_set = data.load("digits", "train", ctx.data_dir)
  test_set = data.load("digits", "test", ctx.data_dir)
  train_images = digits_on_canvas(train_set.x, c.data.canvas)
  test_images = digits_on_canvas(test_set.x, c.data.canvas)
  pairs = ctx.stage("pairs", lambda: {
      "train": fixed_pairs(ctx.key("train_pairs"), train_images, train_set.y,
                           c.data.train_pairs_per_image, c.data.scale),
      "test": fixed_pairs(ctx.key("test_pairs"), test_images, test_set.y,
                          c.data.test_pairs_per_image, c.data.scale)})

  def train_model(kind):
    task, represent = ssl_task(kind, c)
    result = ctx.fit(kind, task, {"key": ctx.seed_keys(kind, c.num_seeds)}, c.ssl.num_steps,
                     data={"examples": {"x": train_images}})
    features = {split: jax.jit(jax.vmap(lambda params, v1, v2: jnp.concatenate(
        [represent(params, v1), represent(params, v2)], -1), in_axes=(0, None, None)))(
            result.state.params, pairs[split]["view1"], pairs[split]["view2"])
                for split in ("train", "test")}
    return {"features": {k: np.asarray(v) for k, v in features.items()},
            "curve": result.curves["loss"]}

  trained = {kind: ctx.stage(f"train-{kind}", functools.partial(train_model, kind))
             for kind in MODELS}

  def untrained_features():
    task, represent = ssl_task("sie", c)
    init = jax.vmap(lambda key: task.init({"key": key, "examples": {"x": train_images[:1]}}))
    params = init(ctx.seed_keys("random_init", c.num_seeds)).params
    return {split: np.asarray(jax.jit(jax.vmap(lambda p_, v1, v2: jnp.concatenate(
        [represent(p_, v1), represent(p_, v2)], -1), in_axes=(0, None, None)))(
            params, pairs[split]["view1"], pairs[split]["view2"]))
            for split in ("train", "test")}

  features = {kind: trained[kind]["features"] for kind in MODELS}
  features["random"] = ctx.stage("untrained", untrained_features)
  rep_dim, inv_dim = c.model.rep_dim, c.model.inv_dim

  def probe_features(split):
    rows = []
    for _, model, part in PROBES:
      f = features[model][split]                       # (seeds, n, 2d)
      x, y = f[..., :rep_dim], f[..., rep_dim:]
      rows.append(np.concatenate([np.asarray(mask_features(x, part, inv_dim)),
                                  np.asarray(mask_features(y, part, inv_dim))], -1))
    return np.concatenate(rows, 0)                     # (probes·seeds, n, 2d)

  r2_runs, probe_curves = ctx.stage("rotation_probe", lambda: rotation_probe(
      ctx, c, probe_features("train"), pairs["train"]["z"], probe_features("test"),
      pairs["test"]["z"]))
  r2 = {name: r2_runs[i * c.num_seeds:(i + 1) * c.num_seeds]
        for i, (name, _, _) in enumerate(PROBES)}
  curves_by_probe = {name: probe_curves[i * c.num_seeds:(i + 1) * c.num_seeds]
                     for i, (name, _, _) in enumerate(PROBES)}

  def class_accuracy(model):
    train_f = features[model]["train"][..., :rep_dim]
    test_f = features[model]["test"][..., :rep_dim]

    def one(tr, te):
      tr, te = evaluate.standardize(tr, te)
      return evaluate.logistic_probe_accuracy(tr, pairs["train"]["y"], te, pairs["test"]["y"],
                                              10, c.probe.logistic_l2, c.probe.logistic_steps)

    return np.asarray(jax.jit(jax.vmap(one))(train_f, test_f))

  accuracy = {model: class_accuracy(model) for model in (*MODELS, "random")}
  plateau = {kind: late_improvement(trained[kind]["curve"], c.plateau_window)
             for kind in MODELS}
  probe_plateau = np.max(np.stack([late_improvement(curves_by_probe[name], c.plateau_window)
                                   for name, _, _ in PROBES]), axis=0)
  gain = r2["sie"] - r2["vicreg"]
  drop = accuracy["vicreg"] - accuracy["sie"]
  measured = {f"rotation_r2_{name}": r2[name] for name, _, _ in PROBES}
  measured.update({f"class_accuracy_{m}": accuracy[m] for m in (*MODELS, "random")})
  measured.update(rotation_r2_gain=gain, class_accuracy_drop=drop,
                  ssl_late_improvement_sie=plateau["sie"],
                  ssl_late_improvement_vicreg=plateau["vicreg"],
                  probe_late_improvement_max=probe_plateau)
  holds = (gain >= 0.2) & (drop <= 0.05)
  details = {"seeds_passing_both": f"{int(holds.sum())}/{c.num_seeds}",
             "paper_3diebench_r2": {"sie": 0.73, "vicreg": 0.41},
             "num_probe_pairs": {"train": int(pairs["train"]["z"].shape[0]),
                                 "test": int(pairs["test"]["z"].shape[0])},
             "final_ssl_loss": {k: float(np.mean(trained[k]["curve"][..., -50:]))
                                for k in MODELS}}
  measured["seeds_passing"] = float(holds.sum())
  ctx.save_figure(plot(c, trained, curves_by_probe, r2, accuracy))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, trained, probe_curves, r2, accuracy):
  fig, axes = figures.panels(4)
  figures.plot_curves(axes[0], {LABELS[k]: trained[k]["curve"] for k in MODELS},
                      ylabel="SSL training loss", logy=False, title="self-supervised training")
  figures.plot_curves(axes[1], {LABELS[k]: v for k, v in probe_curves.items()},
                      ylabel="probe MSE (cos Δ, sin Δ)", title="rotation probes")
  figures.bars_with_seeds(axes[2], {LABELS[k]: v for k, v in r2.items()},
                          ylabel="test R²", title="relative-rotation R² from pairs")
  figures.bars_with_seeds(axes[3], {LABELS.get(k, k): v for k, v in accuracy.items()},
                          ylabel="test accuracy", title="linear class probe")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="sie", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
