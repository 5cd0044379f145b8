r"""Deep kernel machines: wide finite deep GPs approach the DKM optimum; sparse DKM is linear in P.

Paper: Yang, Robeyns, Milsom, Anson, Schoots & Aitchison, "A theory of
representation learning gives a deep generalisation of kernel methods", ICML 2023.

Command, runtime and expected result: ``experiments/configs/deep_kernel_machines.py``.

Protocol. Each seed draws P = 50 points of sklearn's diabetes data (10
standardised features, standardised target). Deep GP with L = 2 hidden layers,
ReLU (arc-cosine) kernels, ν₁ = ν₂ = 1, output noise σ² = 0.1 (ours; the
notes' setting). (1) The DKM optimum G*: the objective over the factors
V_ℓ (G_ℓ = V_ℓV_ℓᵀ/P), started at the NNGP Grams, trained with Adam (full batch,
1,000 steps, lr 3e-2 cosine-decayed to 0) through ``fit``, one run per seed. (2) Finite width
N ∈ {16, 64, 256, 1024}: N_ℓ = N features per layer and the output copied N
times (the paper's limit); the whitened posterior over the features is sampled
by MALA (1,000 steps; during the 300 burn-in steps the step size, started
at 0.5·dim^{-1/3}, adapts towards acceptance 0.574, then stays fixed), one chain per seed
(chains sharded over the devices), and E[G_ℓ] is the chain average.
Measured: ‖E[G_ℓ] − G*_ℓ‖_F/‖G*_ℓ‖ (mean over ℓ) against N, its log-log slope,
and, as a control, the same distance to the NNGP Grams (the DKM at ν = ∞).
(3) Cost: CPU time (process time, median of 3) of one jitted objective +
gradient evaluation of the full DKM at P ∈ {400, …, 3200} and of the sparse
DKM (M = 64 inducing points) at P ∈ {4000, 16000, 64000}, on random inputs;
log-log slopes. In quick mode timing is skipped (NaN): it is not reproducible
across layouts.

Deviations: the paper's width experiments use its own datasets and Langevin
sampler settings (not available to us: no code for this paper); the sparse
objective's output term is the standard SVGP bound (our reading of the
inducing-point DKM). The MC average over one chain carries Monte-Carlo error
on top of the finite-width bias; both shrink with N.

History. A first launch used a fixed MALA step (h = 1.5·dim^{-1/3}): a pilot chain
at N = 16 accepted nothing, so the step was made adaptive during burn-in (sampler
fix before any verdict); DKM/MALA step counts were then cut (3,000 → 1,000 Adam
steps with a cosine decay; 2,000 → 1,000 MALA steps) because the shared machine
ran them at ~1 step/s. Thresholds unchanged.

Default run (2026-12-02, 3 seeds): FAIL. ‖E[G] − G*‖/‖G*‖ (layer mean) at
N = 16, 64, 256, 1024: 0.82, 0.39, 0.22, 0.28; slope −0.25 ± 0.06 (≤ −0.3 on
1/3 seeds), 0.28 ± 0.02 at N = 1024 (target < 0.1, 0/3). The distance to the
NNGP Grams stays 0.50–0.62 at every N, so the sampled wide networks are much
closer to the DKM optimum than to the NNGP, as the theory says, but the error
stops falling at N = 1024. Gates hold (DKM loss plateau 1e-5; post-burn-in
acceptance 0.31–0.57). Diagnosis: at N = 1024 the chain (dimension 1e5, 700 kept
correlated samples, step ∝ dim^{-1/3}) is short for its mixing time, so its
average carries Monte-Carlo error of the size measured; longer chains (or
several chains per seed) are the untested remedy. Cost: full DKM CPU seconds per
objective+gradient 2.3, 2.5, 3.8, 28 at P = 400…3200 (slope 1.14; only the last
doubling, ×7.3, is in the cubic regime: below P ≈ 1600 per-call overhead
dominates on this shared machine), sparse DKM 0.39, 0.66, 1.74 s at P = 4k…64k
(slope 0.54 ≤ 1.3: holds).
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from sklearn.datasets import load_diabetes

from experiments.attention_random_features import map_seeds
from experiments.configs import deep_kernel_machines as configs
from jaxrep.core import experiment, figures, tasks
from jaxrep.core.train import init_train_state, make_train_step
from jaxrep.theory import deep_kernel_machines as dkm


def diabetes_subsets(key: jax.Array, num_seeds: int, num_points: int):
  """Per-seed random subsets of standardised diabetes: x (S, P, 10), y (S, P)."""
  x, y = load_diabetes(return_X_y=True)
  x, y = (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std()
  idx = np.stack([np.asarray(jax.random.choice(k, len(x), (num_points,), replace=False))
                  for k in jax.random.split(key, num_seeds)])
  return jnp.asarray(x[idx], jnp.float32), jnp.asarray(y[idx], jnp.float32)


def input_gram(x: jax.Array) -> jax.Array:
  return x @ x.T / x.shape[-1]


def dkm_task(c) -> tasks.Task:
  """Full-batch Adam on −L/P over the factors, from the NNGP Grams (per-run data)."""
  nus = (c.nu,) * c.num_layers
  optimizer = optax.adam(optax.cosine_decay_schedule(c.dkm_learning_rate, c.dkm_steps))

  def loss_fn(params, batch, rng):
    g0 = input_gram(batch["x"])
    value = dkm.dkm_objective(dkm.dkm_params_grams(params), g0, batch["y"], nus, c.noise_var)
    return -value / batch["y"].shape[0], {}

  def init(inputs):
    params = dkm.dkm_init_params(input_gram(inputs["x"]), c.num_layers)
    return init_train_state(params, optimizer, inputs["key"])

  def step(state, inputs):
    return make_train_step(loss_fn, optimizer, jit=False)(state, {"x": inputs["x"],
                                                                  "y": inputs["y"]})

  return tasks.Task(init, step)


def chain_distances(key, x, y, g_star, g_nngp, *, width: int, c):
  """One MALA chain at width N: relative distances of E[G_ℓ] to G* and to the NNGP."""
  g0 = input_gram(x)
  dim = c.num_layers * c.num_points * width
  log_post = lambda zs: dkm.finite_width_log_posterior(zs, g0, y, width, c.noise_var)
  k0, k1 = jax.random.split(key)
  zs0 = [jax.random.normal(k, (c.num_points, width)) for k in jax.random.split(k0, c.num_layers)]
  res = dkm.mala_mean_grams(k1, log_post, zs0, g0, c.mala_step_scale * dim ** (-1 / 3),
                            c.mala_steps, c.mala_burn_in)
  rel = lambda a, b: jnp.linalg.norm(a - b) / jnp.linalg.norm(b)
  return {"to_dkm": jnp.stack([rel(m, g) for m, g in zip(res.mean_grams, g_star)]),
          "to_nngp": jnp.stack([rel(m, g) for m, g in zip(res.mean_grams, g_nngp)]),
          "acceptance": res.acceptance}


def cpu_seconds(fn, args, repeats: int) -> float:
  """Median process CPU time of ``fn(*args)`` after one compile-and-run call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.process_time()
    jax.block_until_ready(fn(*args))
    times.append(time.process_time() - start)
  return float(np.median(times))


def timing(key: jax.Array, c) -> dict:
  nus = (c.nu,) * c.num_layers
  full, sparse = [], []
  for p in c.full_sizes:
    x = jax.random.normal(jax.random.fold_in(key, p), (p, 10))
    y = jax.random.normal(jax.random.fold_in(key, p + 1), (p,))
    params = dkm.dkm_init_params(input_gram(x), c.num_layers)
    fn = jax.jit(jax.value_and_grad(lambda prm: dkm.dkm_objective(
        dkm.dkm_params_grams(prm), input_gram(x), y, nus, c.noise_var)))
    full.append(cpu_seconds(fn, (params,), c.timing_repeats))
  for p in c.sparse_sizes:
    x = jax.random.normal(jax.random.fold_in(key, p), (p, 10))
    y = jax.random.normal(jax.random.fold_in(key, p + 1), (p,))
    xi = x[:c.num_inducing]
    params = dkm.sparse_init_params(input_gram(xi), c.num_layers)
    fn = jax.jit(jax.value_and_grad(lambda prm: dkm.sparse_dkm_objective(
        prm, xi, x, y, nus, c.noise_var)))
    sparse.append(cpu_seconds(fn, (params,), c.timing_repeats))
  slope = lambda s, t: float(np.polyfit(np.log(s), np.log(t), 1)[0])
  return {"full_seconds": full, "sparse_seconds": sparse,
          "full_slope": slope(c.full_sizes, full), "sparse_slope": slope(c.sparse_sizes, sparse)}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  frozen = ml_collections.FrozenConfigDict(c)
  x, y = diabetes_subsets(ctx.key("data"), c.num_seeds, c.num_points)
  result = ctx.fit("dkm", dkm_task(frozen), {"key": ctx.seed_keys("dkm", c.num_seeds),
                                             "x": x, "y": y}, c.dkm_steps)
  g_star = jax.vmap(dkm.dkm_params_grams)(result.state.params)          # list of (S, P, P)
  g_nngp = jax.vmap(lambda xs: dkm.nngp_grams(input_gram(xs), c.num_layers))(x)
  curve = np.asarray(result.curves["loss"])                             # (S, steps)
  tail = curve[:, -max(c.dkm_steps // 10, 2):]
  plateau = np.abs(tail[:, -1] - tail[:, 0]) / np.abs(tail[:, -1])
  dkm_vs_nngp = np.mean([np.linalg.norm(a - b, axis=(1, 2)) / np.linalg.norm(b, axis=(1, 2))
                         for a, b in zip(g_star, g_nngp)], 0)

  chains = {}
  for width in c.widths:
    keys = ctx.seed_keys(f"mala/{width}", c.num_seeds)
    chain = functools.partial(chain_distances, width=width, c=frozen)
    chains[width] = ctx.stage(f"mala-{width}", lambda: map_seeds(
        lambda inp: chain(inp["key"], inp["x"], inp["y"], inp["g_star"], inp["g_nngp"]),
        {"key": keys, "x": x, "y": y, "g_star": g_star, "g_nngp": g_nngp}, ctx.mesh))
  to_dkm = np.stack([chains[w]["to_dkm"].mean(-1) for w in c.widths], 1)   # (S, widths)
  to_nngp = np.stack([chains[w]["to_nngp"].mean(-1) for w in c.widths], 1)
  acceptance = np.stack([chains[w]["acceptance"] for w in c.widths], 1)
  slopes = np.array([np.polyfit(np.log(c.widths), np.log(r), 1)[0] for r in to_dkm])

  if ctx.quick:
    times = {"full_seconds": [], "sparse_seconds": [], "full_slope": float("nan"),
             "sparse_slope": float("nan")}
  else:
    times = ctx.stage("timing", lambda: timing(ctx.key("timing"), c))
  n_max = max(c.widths)
  passing = (slopes <= -0.3) & (to_dkm[:, -1] < 0.1)
  measured = {
      "loglog_slope_error_vs_width": slopes,
      "rel_error_to_dkm_nmax": to_dkm[:, -1],
      "rel_error_to_nngp_nmax": to_nngp[:, -1],
      "width_convergence_seeds_passing": float(passing.sum()),
      "dkm_vs_nngp_distance": dkm_vs_nngp,
      "dkm_loss_plateau_rel_change": plateau,
      "mala_min_acceptance": acceptance.min(1),
      "mala_max_acceptance": acceptance.max(1),
      "full_dkm_time_slope": times["full_slope"],
      "sparse_dkm_time_slope": times["sparse_slope"],
  }
  for j, w in enumerate(c.widths):
    measured[f"rel_error_to_dkm_n{w}"] = to_dkm[:, j]
  details = {"widths": list(c.widths), "n_max": n_max,
             "rel_error_to_dkm_mean": to_dkm.mean(0).tolist(),
             "rel_error_to_nngp_mean": to_nngp.mean(0).tolist(),
             "acceptance_mean": acceptance.mean(0).tolist(),
             "seeds_passing": f"{int(passing.sum())}/{c.num_seeds}",
             "timing": {"full_sizes": list(c.full_sizes), "sparse_sizes": list(c.sparse_sizes),
                        **times},
             "dkm_final_objective_per_point": (-curve[:, -1]).tolist()}
  ctx.save_figure(plot(c, curve, to_dkm, to_nngp, times))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, curve, to_dkm, to_nngp, times):
  fig, axes = figures.panels(3, width=4.6, height=3.8)
  figures.plot_curves(axes[0], {f"seed {i}": cv for i, cv in enumerate(curve)},
                      ylabel="−L / P", title="DKM optimisation (Adam)")
  for name, r, style in (("to DKM G*", to_dkm, "o-"), ("to NNGP", to_nngp, "s--")):
    axes[1].errorbar(c.widths, r.mean(0), yerr=r.std(0), fmt=style, label=name, capsize=2)
  axes[1].set(xscale="log", yscale="log", xlabel="width N", ylabel="‖E[G] − G‖/‖G‖",
              title="finite-width deep GP (MALA)")
  axes[1].legend(fontsize=7)
  if times["full_seconds"]:
    axes[2].loglog(c.full_sizes, times["full_seconds"], "o-",
                   label=f"full DKM, slope {times['full_slope']:.2f}")
    axes[2].loglog(c.sparse_sizes, times["sparse_seconds"], "s-",
                   label=f"sparse DKM, slope {times['sparse_slope']:.2f}")
    axes[2].legend(fontsize=7)
  axes[2].set(xlabel="training points P", ylabel="CPU s per objective+grad", title="cost")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="deep_kernel_machines", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
