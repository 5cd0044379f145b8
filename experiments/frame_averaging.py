r"""Frame averaging a GNN on the charged 5-body task.

Paper: Puny et al., "Frame Averaging for Invariant and Equivariant Network
Design", ICLR 2022 (n-body: FA-GNN MSE 0.0057 vs GNN 0.0107).

Command:   jaxrep run frame_averaging --workdir runs/frame_averaging
           (= python -m experiments.frame_averaging --workdir=runs/frame_averaging)
Runtime:   2 min 25 s measured on 2 CPU cores (quick mode: seconds).
Expected:  test MSE(FA-GNN) ≤ 0.7 × MSE(GNN) and ≤ MSE(GNN + O(3) augmentation);
           the FA model's E(3) equivariance error is at float32 rounding level.

Protocol. Data are regenerated with our JAX port of the EGNN generator
(``jaxrep.data.nbody``, "nbody_small" settings): 3,000 training and 2,000 test
trajectories of 5 charged particles; predict positions at frame 40 from
positions and velocities at frame 30 (1,000 integration steps). Three models
share one backbone (``NBodyGNN``: 4 GCL layers, 60 hidden, as in the
official FA run): the plain GNN on raw coordinates, the same GNN trained on
batches moved by a fresh Haar-random O(3) element per example (rotation and
reflection augmentation), and the frame-averaged GNN (8 O(3) PCA frames).
Each trains with Adam (lr 1e-3, as in the official run, with cosine decay) on
batches of 100, vmapped over seeds.

Budget (chosen once, from a pilot timing, not from results): the official run
trains for thousands of epochs; FA costs 8 backbone passes per example, so
on 2 CPU cores we train every model for the same ``num_steps`` = 500 steps
(≈17 epochs). The plain GNN is further from convergence than the FA-GNN at
that budget, so the measured ratio reflects sample/step efficiency as well as
the converged gap the paper reports.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxrep.core import experiment, train
from jaxrep.data import nbody
from jaxrep.symmetry import equivariance, groups
from jaxrep.symmetry import frame_averaging as fa

CLAIM = ("Frame averaging makes the GNN exactly E(3)-equivariant and gives n-body test "
         "MSE ≤ 0.7 × the plain GNN's and ≤ the GNN trained with random-rotation "
         "augmentation.")
MAX_RATIO_TO_PLAIN = 0.7
MODELS = ("gnn", "gnn_aug", "fa_gnn")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_train = 3000
  c.num_test = 2000
  c.num_particles = 5
  c.frame_in = 30
  c.frame_out = 40
  c.sample_every = 100
  c.hidden = 60
  c.layers = 4
  c.batch_size = 100
  c.learning_rate = 1e-3
  c.num_steps = 500
  c.num_equivariance_checks = 8
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_train = 200
  c.num_test = 100
  c.frame_in = 3
  c.frame_out = 4
  c.hidden = 16
  c.layers = 1
  c.batch_size = 20
  c.num_steps = 10
  c.num_equivariance_checks = 2
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 <= c.frame_in < c.frame_out:
    raise experiment.ConfigError("need 0 <= frame_in < frame_out")
  if c.batch_size > c.num_train:
    raise experiment.ConfigError("'batch_size' must be ≤ 'num_train'")
  if c.learning_rate <= 0:
    raise experiment.ConfigError("'learning_rate' must be positive")


def make_predictor(model: fa.NBodyGNN, kind: str):
  """(params, loc (n,3), vel (n,3), charges (n,)) -> predicted positions (n,3)."""
  def plain(params, loc, vel, charges):
    return model.apply(params, loc, vel, charges)

  if kind != "fa_gnn":
    return plain

  def averaged(params, loc, vel, charges):
    backbone = lambda x, v, q: model.apply(params, x, v, q)
    return fa.frame_average(backbone, "O3", "points")(loc, vel, charges)

  return averaged


def augment_o3(key: jax.Array, loc, vel, target):
  """One Haar O(3) element per example applied to inputs and target."""
  rotations = jax.vmap(groups.sample_o3)(jax.random.split(key, loc.shape[0]))
  rotate = lambda x: jnp.einsum("bij,bnj->bni", rotations, x)
  return rotate(loc), rotate(vel), rotate(target)


def train_and_test(kind: str, c, task: nbody.NBodyTask, test: nbody.NBodyTask,
                   seed_keys: jax.Array):
  """Per-seed test MSE, loss curve and final params for one model kind."""
  model = fa.NBodyGNN(hidden=c.hidden, layers=c.layers)
  predict = make_predictor(model, kind)
  batched = jax.vmap(predict, in_axes=(None, 0, 0, 0))
  schedule = optax.cosine_decay_schedule(c.learning_rate, c.num_steps)
  optimizer = optax.adam(schedule)

  def loss_fn(params, batch, rng):
    loc, vel, charges, target = batch
    if kind == "gnn_aug":
      loc, vel, target = augment_o3(rng, loc, vel, target)
    mse = jnp.mean((batched(params, loc, vel, charges) - target) ** 2)
    return mse, {"mse": mse}

  def one(key):
    key_init, key_batches, key_state = jax.random.split(key, 3)
    params = model.init(key_init, task.loc[0], task.vel[0], task.charges[0])
    state = train.init_train_state(params, optimizer, key_state)
    step = train.make_train_step(loss_fn, optimizer, jit=False)

    def batch_fn(i):
      idx = jax.random.choice(jax.random.fold_in(key_batches, i), c.num_train,
                              (c.batch_size,), replace=False)
      return task.loc[idx], task.vel[idx], task.charges[idx], task.target[idx]

    state, metrics = train.scan_steps(step, state, batch_fn, c.num_steps)
    pred = batched(state.params, test.loc, test.vel, test.charges)
    return jnp.mean((pred - test.target) ** 2), metrics["mse"], state.params

  mse, curve, params = jax.jit(jax.vmap(one))(seed_keys)
  return {"test_mse": np.asarray(mse), "curve": np.asarray(curve), "params": params}


def e3_equivariance_error(kind: str, c, params, test: nbody.NBodyTask, key) -> float:
  """Max relative error ‖f(gX) − g f(X)‖∞/‖f(X)‖∞ over random E(3) elements
  (reflections included) and the first test example, for seed 0's params."""
  model = fa.NBodyGNN(hidden=c.hidden, layers=c.layers)
  predict = jax.jit(make_predictor(model, kind))
  params0 = jax.tree_util.tree_map(lambda p: p[0], params)
  x = (test.loc[0], test.vel[0])
  f = lambda x: predict(params0, x[0], x[1], test.charges[0])
  act_in = lambda g, x: (groups.apply_e3(x[0], *g), x[1] @ g[0].T)
  act_out = lambda g, y: groups.apply_e3(y, *g)
  return equivariance.equivariance_error(f, groups.sample_e3, act_in, act_out, x, key,
                                         num_samples=c.num_equivariance_checks)


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  def simulate(name, num):
    return tuple(np.asarray(a) for a in jax.jit(
        lambda k: nbody.nbody_prediction_task(k, num, c.num_particles, c.frame_in,
                                              c.frame_out, c.sample_every))(ctx.key(name)))

  task = nbody.NBodyTask(*map(jnp.asarray, ctx.stage(
      "data-train", lambda: simulate("train", c.num_train))))
  test = nbody.NBodyTask(*map(jnp.asarray, ctx.stage(
      "data-test", lambda: simulate("test", c.num_test))))
  seed_keys = ctx.seed_keys("training", c.num_seeds)
  meter = ctx.progress("models", len(MODELS), unit="models")
  results = {}
  for i, kind in enumerate(MODELS):
    results[kind] = ctx.stage(f"train-{kind}",
                              lambda: train_and_test(kind, c, task, test, seed_keys))
    curve = results[kind]["curve"].mean(0)
    for s in range(0, c.num_steps, max(1, c.num_steps // 50)):
      ctx.logger.log(s, {"train_mse": float(curve[s])}, run=kind)
    meter.update(i + 1, f"{kind}: test MSE {results[kind]['test_mse'].mean():.4g}")

  errors = {kind: e3_equivariance_error(kind, c, results[kind]["params"], test,
                                        ctx.key("equivariance")) for kind in MODELS}
  mse = {kind: results[kind]["test_mse"] for kind in MODELS}
  ratio_to_plain = mse["fa_gnn"] / mse["gnn"]
  ratio_to_aug = mse["fa_gnn"] / mse["gnn_aug"]
  measured = {f"test_mse_{kind}": mse[kind] for kind in MODELS}
  measured.update(ratio_fa_to_gnn=ratio_to_plain, ratio_fa_to_aug=ratio_to_aug,
                  e3_error_fa_gnn=errors["fa_gnn"], e3_error_gnn=errors["gnn"])
  passed = bool(ratio_to_plain.mean() <= MAX_RATIO_TO_PLAIN
                and mse["fa_gnn"].mean() <= mse["gnn_aug"].mean())
  details = {"equivariance_error": errors, "threshold_ratio": MAX_RATIO_TO_PLAIN,
             "baseline_mse_constant_position": float(np.mean((test.target - test.loc) ** 2)),
             "paper_mse": {"gnn": 0.0107, "fa_gnn": 0.0057},
             "train_curves": {k: results[k]["curve"].mean(0)[:: max(1, c.num_steps // 50)]
                              for k in MODELS}}
  ctx.save_figure(plot(c, results, errors))
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(c, results, errors):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  labels = {"gnn": "GNN", "gnn_aug": "GNN + O(3) aug", "fa_gnn": "FA-GNN"}
  colors = {"gnn": "tab:gray", "gnn_aug": "tab:orange", "fa_gnn": "tab:blue"}
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for kind in MODELS:
    curve = results[kind]["curve"]
    steps = np.arange(curve.shape[1])
    axes[0].semilogy(steps, curve.mean(0), color=colors[kind], label=labels[kind])
    values = results[kind]["test_mse"]
    x = MODELS.index(kind)
    axes[1].bar(x, values.mean(), yerr=values.std(), color=colors[kind], alpha=0.8)
    axes[1].scatter(np.full(values.shape, x), values, color="k", s=12, zorder=3)
  axes[0].set(xlabel="step", ylabel="training MSE (batch)", title="training")
  axes[0].legend()
  axes[1].set_xticks(range(len(MODELS)),
                     [f"{labels[k]}\nE(3) err {errors[k]:.1e}" for k in MODELS])
  axes[1].set(ylabel="test MSE", title=f"n-body test MSE ({c.num_seeds} seeds)")
  for ax in axes:
    ax.grid(alpha=0.3)
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="frame_averaging", claim=CLAIM, get_config=get_config, run=run, quick=quick,
    validate=validate, runtime_s=160,
    headline=("test_mse_gnn", "test_mse_gnn_aug", "test_mse_fa_gnn", "ratio_fa_to_gnn"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
