r"""Sample-complexity separation of CNN < LCN < FCN on the DSD task.

Paper: Lahoti et al., "Role of Locality and Weight Sharing in Image-Based Tasks:
A Sample Complexity Separation between CNNs, LCNs, and FCNs", ICLR 2024.

Command:   jaxrep run locality_dsd --workdir runs/locality_dsd
           (= python -m experiments.locality_dsd --workdir=runs/locality_dsd)
Runtime:   6 min 06 s measured on 2 CPU cores (quick mode: seconds).
Expected:  n_CNN < n_LCN < n_FCN at every (k, d); n_LCN/n_CNN and n_FCN/n_LCN
           grow with k; log-log slopes of n vs k ordered CNN < LCN < FCN
           (theory: ≈0, ≈1, ≈2). MNIST-1D (4,000 training samples): the MNIST-1D
           authors report ≈94% for a CNN and ≈68% for an MLP.

Protocol. For each model and grid point, train by full-batch heavy-ball GD
(orthogonally equivariant, as the lower bounds assume) on n examples for each n
of a geometric grid, vmapped over seeds × the model's learning-rate grid (sizes up
to ``masked_n_max`` share one program: each trains on the first n of the same
samples, the rest masked out of the loss), pick
the learning rate per seed on a validation set, and record the test error. A
seed's sample complexity is the smallest n (log-interpolated) whose test error is
within ``margin`` of the exact-signal Bayes error; a model's is the median over
seeds (robust to a seed whose GD run stalls; the n grid stops once most seeds
got there). A model that never gets there within the grid is reported as
n > n_max (inf) and fails any comparison it is needed for.

Grid choice (fixed before the reported run, from compute alone): the FCN needs
n ≈ 5·10⁴ at k = 6, d = 8 on this task and grows faster than k², so k ≤ 6 keeps
every model's sample complexity inside n_max = 65,536 within the 10-minute
budget (k = 9, 12 were dropped for that reason). Small k is the least favourable
regime for the ordering: the bounds are asymptotic and their constants differ.
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
from jaxrep.data.dsd import dsd_bayes_error, dsd_sample, random_signal
from jaxrep.symmetry import locality

CLAIM = ("On DSD, n_CNN < n_LCN < n_FCN at every grid point, and n_LCN/n_CNN and "
         "n_FCN/n_LCN grow with the number of patches k.")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 4
  c.channels = 4
  c.signal_norm = 3.0
  c.noise_std = 1.0
  c.margin = 0.03
  c.num_steps = 400
  c.ks = (3, 4, 5, 6)
  c.fixed_d = 8
  c.ds = (4, 8, 16)
  c.fixed_k = 4
  c.n_min = 16
  c.n_max = 65536
  c.n_grid_factor = 2.0
  c.masked_n_max = 1024
  c.num_val = 2000
  c.num_test = 10000
  c.learning_rates = ml_collections.ConfigDict(
      {"cnn": (0.5, 2.0, 8.0), "lcn": (0.5, 2.0, 8.0), "fcn": (0.5, 2.0, 8.0)})
  c.mnist1d_steps = 3000
  c.mnist1d_batch_size = 100
  c.mnist1d_learning_rate = 3e-3
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_steps = 50
  c.ks = (3, 4)
  c.ds = (8,)
  c.fixed_k = 4
  c.n_min = 32
  c.n_max = 256
  c.num_val = 256
  c.num_test = 512
  c.learning_rates = ml_collections.ConfigDict(
      {"cnn": (2.0,), "lcn": (2.0,), "fcn": (2.0,)})
  c.mnist1d_steps = 50
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.n_grid_factor <= 1:
    raise experiment.ConfigError("config key 'n_grid_factor' must be > 1")
  if c.n_min > c.n_max:
    raise experiment.ConfigError("config key 'n_min' must be ≤ 'n_max'")
  if c.margin <= 0 or c.signal_norm <= 0 or c.noise_std <= 0:
    raise experiment.ConfigError("'margin', 'signal_norm' and 'noise_std' must be positive")
  for kind in locality.KINDS:
    if not all(lr > 0 for lr in c.learning_rates[kind]):
      raise experiment.ConfigError(f"learning rates for {kind} must be positive")


def n_grid(c) -> list[int]:
  sizes, n = [], float(c.n_min)
  while n <= c.n_max * (1 + 1e-9):
    sizes.append(int(round(n)))
    n *= c.n_grid_factor
  return sizes


@functools.partial(jax.jit, static_argnames=("kind", "k", "d", "n_pad", "c"))
def _train_grid(seed_keys, learning_rates, sizes, *, kind, k, d, n_pad, c):
  """Validation and test error, shape (sizes, seeds, learning rates).

  Every size trains on the first n of the same n_pad samples (the rest masked
  out of the full-batch loss), so one program covers a bucket of sizes.
  """
  model = locality.PatchNet(kind, c.channels)

  def one(key, lr, n):
    key_signal, key_train, key_val, key_test, key_init = jax.random.split(key, 5)
    signal = random_signal(key_signal, d, c.signal_norm)
    x, y = dsd_sample(key_train, n_pad, k, signal, c.noise_std)
    mask = (jnp.arange(n_pad) < n).astype(jnp.float32)
    optimizer = locality.gradient_descent(lr)
    state = train.init_train_state(model.init(key_init, x[:1]), optimizer, key_init)
    step = train.make_train_step(locality.make_loss(model), optimizer, jit=False)
    state, _ = train.scan_steps(step, state, lambda i: (x, y, mask), c.num_steps)

    def error(eval_key, num):
      xe, ye = dsd_sample(eval_key, num, k, signal, c.noise_std)
      return locality.classification_error(model.apply(state.params, xe), ye)

    return error(key_val, c.num_val), error(key_test, c.num_test)

  per_lr = jax.vmap(one, in_axes=(None, 0, None))
  per_seed = jax.vmap(per_lr, in_axes=(0, None, None))
  return jax.vmap(per_seed, in_axes=(None, None, 0))(seed_keys, learning_rates, sizes)


def size_buckets(sizes: list[int], masked_up_to: int) -> list[list[int]]:
  """All sizes ≤ ``masked_up_to`` in one bucket (one program), then one per size."""
  small = [n for n in sizes if n <= masked_up_to]
  return ([small] if small else []) + [[n] for n in sizes if n > masked_up_to]


def sample_complexity(kind: str, k: int, d: int, c, seed_keys, bayes: float) -> dict:
  """Test error curve over the n grid (until most seeds are within the margin)."""
  sizes, errors = [], []
  lrs = jnp.asarray(c.learning_rates[kind], jnp.float32)
  frozen = ml_collections.FrozenConfigDict(c)
  target = bayes + c.margin
  done = False
  for bucket in size_buckets(n_grid(c), c.masked_n_max):
    val, test = _train_grid(seed_keys, lrs, jnp.asarray(bucket), kind=kind, k=k, d=d,
                            n_pad=bucket[-1], c=frozen)
    best = jnp.argmin(val, axis=2)  # learning rate per (size, seed), on validation
    chosen = np.asarray(jnp.take_along_axis(test, best[..., None], axis=2)[..., 0])
    for n, err in zip(bucket, chosen):
      errors.append(err)
      sizes.append(n)
      if np.mean(err <= target) > 0.5 and len(sizes) >= 2:
        done = True
        break
    if done:
      break
  jax.clear_caches()  # one program per bucket: free them, or LLVM runs out of mappings
  errors = np.stack(errors, axis=1)  # (seeds, sizes)
  n_star = np.asarray(jax.vmap(locality.first_crossing, in_axes=(None, 0, None))(
      jnp.asarray(sizes, jnp.float32), jnp.asarray(errors), target))
  return {"sizes": sizes, "errors": errors, "n_star": n_star}


def median_n(values: np.ndarray) -> float:
  """Median over seeds (inf when at least half never reached the target)."""
  return float(np.median(values))


def loglog_slope(xs, ys) -> float:
  ys = np.asarray(ys, float)
  if not np.all(np.isfinite(ys)):
    return float("nan")
  return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def mnist1d_accuracy(kind: str, c, seed_keys, data_dir) -> np.ndarray:
  """Test accuracy per seed after Adam training on the 4,000 training samples."""
  train_set = data.load("mnist1d", "train", data_dir)
  test_set = data.load("mnist1d", "test", data_dir)
  x, y = jnp.asarray(train_set.x), jnp.asarray(train_set.y)
  xt, yt = jnp.asarray(test_set.x), jnp.asarray(test_set.y)
  model = locality.SequenceNet(kind)

  def one(key):
    state, _ = train.fit_classifier(key, model.init, model.apply,
                                    optax.adam(c.mnist1d_learning_rate), x, y,
                                    num_steps=c.mnist1d_steps, batch_size=c.mnist1d_batch_size)
    return accuracy(model.apply(state.params, xt), yt)

  return np.asarray(jax.jit(jax.vmap(one))(seed_keys))


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  k_points = [(k, c.fixed_d) for k in c.ks]
  points = k_points + [(c.fixed_k, d) for d in c.ds if (c.fixed_k, d) not in k_points]
  ks_for_bayes = sorted({k for k, _ in points})
  bayes = ctx.stage("bayes", lambda: {k: float(dsd_bayes_error(
      ctx.key(f"bayes{k}"), k, c.signal_norm, c.noise_std)) for k in ks_for_bayes})
  seed_keys = ctx.seed_keys("dsd", c.num_seeds)
  curves = {}
  meter = ctx.progress("dsd grid", len(points) * len(locality.KINDS), unit="trainings")
  for kind in locality.KINDS:
    for k, d in points:
      curves[(kind, k, d)] = ctx.stage(
          f"dsd-{kind}-k{k}-d{d}",
          lambda: sample_complexity(kind, k, d, c, seed_keys, bayes[k]))
      n_star = curves[(kind, k, d)]["n_star"]
      ctx.logger.log(len(curves), {"k": k, "d": d, "n_star_median": median_n(n_star)},
                     run=kind)
      meter.update(len(curves), f"{kind} k={k} d={d}: n*={median_n(n_star):.4g}")

  def n_of(kind, k, d):
    return median_n(curves[(kind, k, d)]["n_star"])

  measured = {}
  details = {"bayes_error": bayes, "points": points, "curves": {},
             "n_median": {f"{kind}_k{k}_d{d}": n_of(kind, k, d) for kind, k, d in curves}}
  for (kind, k, d), curve in curves.items():
    measured[f"n_{kind}_k{k}_d{d}"] = curve["n_star"]
    details["curves"][f"{kind}_k{k}_d{d}"] = {"sizes": curve["sizes"],
                                             "mean_test_error": curve["errors"].mean(0)}
  ordered = all(n_of("cnn", k, d) < n_of("lcn", k, d) < n_of("fcn", k, d)
                for k, d in points)
  ratio_lcn_cnn = [n_of("lcn", k, d) / n_of("cnn", k, d) for k, d in k_points]
  ratio_fcn_lcn = [n_of("fcn", k, d) / n_of("lcn", k, d) for k, d in k_points]
  slope_ratio_lcn_cnn = loglog_slope(c.ks, ratio_lcn_cnn)
  slope_ratio_fcn_lcn = loglog_slope(c.ks, ratio_fcn_lcn)
  for kind in locality.KINDS:
    details[f"slope_n_vs_k_{kind}"] = loglog_slope(c.ks, [n_of(kind, k, d) for k, d in k_points])
    details[f"slope_n_vs_d_{kind}"] = loglog_slope(
        c.ds, [n_of(kind, c.fixed_k, d) for d in c.ds])
    measured[f"slope_n_vs_k_{kind}"] = details[f"slope_n_vs_k_{kind}"]
  details.update(ordered_at_every_point=ordered, ratio_lcn_cnn=ratio_lcn_cnn,
                 ratio_fcn_lcn=ratio_fcn_lcn, slope_ratio_lcn_cnn=slope_ratio_lcn_cnn,
                 slope_ratio_fcn_lcn=slope_ratio_fcn_lcn)
  passed = bool(ordered and slope_ratio_lcn_cnn > 0 and slope_ratio_fcn_lcn > 0)

  mnist_keys = ctx.seed_keys("mnist1d", c.num_seeds)
  meter = ctx.progress("mnist1d", len(locality.KINDS), unit="models")
  for i, kind in enumerate(locality.KINDS):
    measured[f"mnist1d_accuracy_{kind}"] = ctx.stage(
        f"mnist1d-{kind}", lambda: mnist1d_accuracy(kind, c, mnist_keys, ctx.data_dir))
    meter.update(i + 1, f"{kind}: accuracy {np.mean(measured[f'mnist1d_accuracy_{kind}']):.3f}")

  ctx.save_figure(plot(c, curves, points, bayes, n_of))
  return experiment.Outcome(measured=measured, passed=passed, details=details)


def plot(c, curves, points, bayes, n_of):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  colors = {"cnn": "tab:blue", "lcn": "tab:orange", "fcn": "tab:red"}
  for kind in locality.KINDS:
    ys = [n_of(kind, k, c.fixed_d) for k in c.ks]
    axes[0].loglog(c.ks, ys, "o-", color=colors[kind], label=kind.upper())
    ys = [n_of(kind, c.fixed_k, d) for d in c.ds]
    axes[1].loglog(c.ds, ys, "o-", color=colors[kind], label=kind.upper())
    k_mid = c.ks[len(c.ks) // 2]
    curve = curves[(kind, k_mid, c.fixed_d)]
    axes[2].semilogx(curve["sizes"], curve["errors"].mean(0), "o-", color=colors[kind],
                     label=kind.upper())
  axes[2].axhline(bayes[k_mid], color="k", ls="--", label="Bayes error")
  axes[2].axhline(bayes[k_mid] + c.margin, color="gray", ls=":", label="target")
  axes[0].set(xlabel="patches k", ylabel="sample complexity n*", title=f"d = {c.fixed_d}")
  axes[1].set(xlabel="patch dimension d", ylabel="sample complexity n*", title=f"k = {c.fixed_k}")
  axes[2].set(xlabel="training samples n", ylabel="test error",
              title=f"k = {k_mid}, d = {c.fixed_d}")
  for ax, ticks in ((axes[0], c.ks), (axes[1], c.ds)):
    ax.set_xticks(list(ticks), [str(t) for t in ticks])
    ax.minorticks_off()
  for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3, which="both")
  fig.suptitle("DSD sample complexity (median over seeds; missing = never reached)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="locality_dsd", claim=CLAIM, get_config=get_config, run=run, quick=quick,
    validate=validate, runtime_s=370,
    headline=("slope_n_vs_k_cnn", "slope_n_vs_k_lcn", "slope_n_vs_k_fcn",
              "mnist1d_accuracy_cnn", "mnist1d_accuracy_lcn", "mnist1d_accuracy_fcn"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
