r"""Sample-complexity separation of CNN < LCN < FCN on the DSD task.

Paper: Lahoti et al., "Role of Locality and Weight Sharing in Image-Based Tasks:
A Sample Complexity Separation between CNNs, LCNs, and FCNs", ICLR 2024.

Command, runtime and expected result: ``experiments/configs/locality_dsd.py``.

Protocol. For each model and grid point (k, d), train by full-batch heavy-ball
GD (orthogonally equivariant, as the lower bounds assume) on n examples for each
n of a geometric grid, seeds × the model's learning-rate grid, pick the learning
rate per seed on a validation set (a run that diverged counts as the worst), and
record the test error. Sizes up to ``masked_n_max`` form one bucket trained by
one ``fit`` over (sizes, seeds, learning rates): each size trains on the first n
of the same samples, the rest masked out of the loss (``batch_size=None``, so no
minibatch protocol: every step sees the whole training set, as in the paper's
GD); larger sizes get one ``fit`` each. A seed's sample complexity is the
smallest n (log-interpolated) whose test error is within ``margin`` of the
exact-signal Bayes error; a model's is the median over seeds (robust to a seed
whose GD run stalls; the n grid stops once most seeds got there). A model that
never gets there within the grid is reported as n > n_max (inf) and fails any
comparison it is needed for. The data of a grid point (per seed: a signal, the
grid's largest training set, validation and test sets) are drawn once and shared
by the three models; size n trains on the first n rows, which equal a set of n
drawn alone (``dsd_sample`` is prefix-consistent), so the data match the
original per-bucket draws. Since the move to ``fit`` the model's init key is
split off the run key by ``minibatch_task`` (a changed stream: seed noise).

MNIST-1D: the three ``SequenceNet`` models trained by Adam on the 4,000 training
samples, minibatches drawn without replacement within a step (the original
run's protocol, kept), accuracy on the test split.

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

from experiments.configs import locality_dsd as configs
from jaxrep import data
from jaxrep.core import experiment, figures, tasks
from jaxrep.core.evaluate import accuracy
from jaxrep.data.dsd import dsd_bayes_error, dsd_sample, random_signal
from jaxrep.symmetry import locality

COLORS = {"cnn": "tab:blue", "lcn": "tab:orange", "fcn": "tab:red"}


def n_grid(c) -> list[int]:
  sizes, n = [], float(c.n_min)
  while n <= c.n_max * (1 + 1e-9):
    sizes.append(int(round(n)))
    n *= c.n_grid_factor
  return sizes


def size_buckets(sizes: list[int], masked_up_to: int) -> list[list[int]]:
  """All sizes ≤ ``masked_up_to`` in one bucket (one program), then one per size."""
  small = [n for n in sizes if n <= masked_up_to]
  return ([small] if small else []) + [[n] for n in sizes if n > masked_up_to]


@functools.partial(jax.jit, static_argnames=("k", "d", "c"))
def dsd_sets(keys, *, k, d, c):
  """Per seed key: a random signal's max(n grid) training examples (size n trains
  on the first n: ``dsd_sample`` draws prefix-consistently), num_val validation
  and num_test test examples, and the key the model is initialised from."""
  def one(key):
    key_signal, key_train, key_val, key_test, key_init = jax.random.split(key, 5)
    signal = random_signal(key_signal, d, c.signal_norm)
    sample = lambda key, n: dict(zip(("x", "y"), dsd_sample(key, n, k, signal, c.noise_std)))
    return {"train": sample(key_train, n_grid(c)[-1]), "val": sample(key_val, c.num_val),
            "test": sample(key_test, c.num_test), "key": key_init}
  return jax.vmap(one)(keys)


@functools.lru_cache(maxsize=None)
def bucket_task(model: locality.PatchNet) -> tasks.Task:
  """Full-batch GD on the masked logistic loss; one Task object per model, so
  ``fit`` compiles its programs once per shape, not once per bucket."""
  return tasks.minibatch_task(lambda key, rows: model.init(key, rows["x"]),
                              locality.logistic_loss_fn(model),
                              lambda inputs: locality.gradient_descent(inputs["learning_rate"]),
                              batch_size=None)


@functools.partial(jax.jit, static_argnames="model")
def val_test_errors(model: locality.PatchNet, params, sets):
  """Validation and test error of every (size, seed, learning rate) run's params;
  ``sets`` are per seed."""
  def errors(p, seed_sets):
    return [locality.classification_error(model.apply(p, seed_sets[s]["x"]), seed_sets[s]["y"])
            for s in ("val", "test")]
  over_lrs = jax.vmap(errors, in_axes=(0, None))
  return jax.vmap(jax.vmap(over_lrs), in_axes=(0, None))(params, sets)


def train_bucket(ctx, kind, k, d, bucket, c, sets):
  """One fit over (sizes, seeds, learning rates): the test error and training loss
  curve of the learning rate chosen on validation, (sizes, seeds) and (…, steps)."""
  model = locality.PatchNet(kind, c.channels)
  task = bucket_task(model)
  lrs = np.asarray(c.learning_rates[kind], np.float32)
  shape = (len(bucket), len(sets["key"]), len(lrs))
  per_seed = lambda a: np.broadcast_to(a[None, :, None], shape + a.shape[1:])
  mask = (np.arange(bucket[-1]) < np.asarray(bucket)[:, None, None, None]).astype(np.float32)
  runs = {"key": per_seed(sets["key"]), "learning_rate": np.broadcast_to(lrs, shape),
          "examples": {**{name: per_seed(a[:, :bucket[-1]]) for name, a in sets["train"].items()},
                       "mask": np.broadcast_to(mask, shape + mask.shape[-1:])}}
  result = ctx.fit(f"dsd-{kind}-k{k}-d{d}-n{bucket[-1]}", task, runs, c.num_steps,
                   run_axes=3, chunk_steps=c.num_steps, save_every_s=600.0,
                   allow_nonfinite=True, progress=False)

  val, test = val_test_errors(model, result.state.params, {s: sets[s] for s in ("val", "test")})
  val = np.where(result.diverged, np.inf, val)  # a diverged run is the worst
  best = np.argmin(val, axis=2)[..., None]
  chosen_curve = np.take_along_axis(result.curves["loss"], best[..., None], axis=2)[:, :, 0]
  return np.take_along_axis(np.asarray(test), best, axis=2)[..., 0], chosen_curve


def sample_complexity(ctx, kind: str, k: int, d: int, c, sets, bayes: float) -> dict:
  """Test error curve over the n grid (until most seeds are within the margin)."""
  sizes, errors, target = [], [], bayes + c.margin
  for bucket in size_buckets(n_grid(c), c.masked_n_max):
    chosen, curves = train_bucket(ctx, kind, k, d, bucket, c, sets)
    for n, err, curve in zip(bucket, chosen, curves):
      errors.append(err)
      sizes.append(n)
      if np.mean(err <= target) > 0.5 and len(sizes) >= 2:
        break
    if np.mean(errors[-1] <= target) > 0.5 and len(sizes) >= 2:
      break
  jax.clear_caches()  # a few programs per bucket: free them, or LLVM runs out of mappings
  errors = np.stack(errors, axis=1)  # (seeds, sizes)
  n_star = np.asarray(jax.vmap(locality.first_crossing, in_axes=(None, 0, None))(
      jnp.asarray(sizes, jnp.float32), jnp.asarray(errors), target))
  return {"sizes": sizes, "errors": errors, "n_star": n_star, "loss_curve": curve}


def mnist1d_accuracy(ctx, kind: str, c) -> dict:
  """Test accuracy per seed after Adam training on the 4,000 training samples."""
  train_set = data.load("mnist1d", "train", ctx.data_dir)
  test_set = data.load("mnist1d", "test", ctx.data_dir)
  model = locality.SequenceNet(kind)
  task = tasks.classifier_task(model.init, model.apply, optax.adam(c.mnist1d_learning_rate),
                               batch_size=c.mnist1d_batch_size, replace=False)
  result = ctx.fit(f"mnist1d-{kind}", task, {"key": ctx.seed_keys("mnist1d", c.num_seeds)},
                   c.mnist1d_steps, data={"examples": {"x": train_set.x, "y": train_set.y}})
  test = jax.jit(jax.vmap(lambda p: accuracy(model.apply(p, test_set.x), test_set.y)))
  return {"accuracy": np.asarray(test(result.state.params)), "loss_curve": result.curves["loss"]}


def loglog_slope(xs, ys) -> float:
  ys = np.asarray(ys, float)
  if not np.all(np.isfinite(ys)):
    return float("nan")
  return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  k_points = [(k, c.fixed_d) for k in c.ks]
  points = k_points + [(c.fixed_k, d) for d in c.ds if (c.fixed_k, d) not in k_points]
  bayes = ctx.stage("bayes", lambda: {k: float(dsd_bayes_error(
      ctx.key(f"bayes{k}"), k, c.signal_norm, c.noise_std))
      for k in sorted({k for k, _ in points})})
  seed_keys = ctx.seed_keys("dsd", c.num_seeds)
  frozen = ml_collections.FrozenConfigDict(c)
  sets_at = functools.lru_cache(maxsize=1)(  # one sample per (k, d), shared by the models
      lambda k, d: jax.device_get(dsd_sets(seed_keys, k=k, d=d, c=frozen)))
  curves = {}
  meter = ctx.progress("dsd grid", len(points) * len(locality.KINDS), unit="trainings")
  for k, d in points:
    for kind in locality.KINDS:
      curves[(kind, k, d)] = ctx.stage(f"grid-{kind}-k{k}-d{d}", lambda: sample_complexity(
          ctx, kind, k, d, c, sets_at(k, d), bayes[k]))
      meter.update(len(curves), f"{kind} k={k} d={d}: "
                   f"n*={np.median(curves[(kind, k, d)]['n_star']):.4g}")

  def n_of(kind, k, d):  # median over seeds (inf when at least half never reached the target)
    return float(np.median(curves[(kind, k, d)]["n_star"]))

  grid = {f"{kind}_k{k}_d{d}": (kind, k, d) for kind in locality.KINDS for k, d in points}
  measured = {f"n_{name}": curves[point]["n_star"] for name, point in grid.items()}
  details = {"bayes_error": bayes, "points": points,
             "n_median": {name: n_of(*point) for name, point in grid.items()},
             "curves": {name: {"sizes": curves[point]["sizes"],
                               "mean_test_error": curves[point]["errors"].mean(0)}
                        for name, point in grid.items()}}
  with np.errstate(invalid="ignore", divide="ignore"):
    for low, high in (("cnn", "lcn"), ("lcn", "fcn")):
      measured[f"min_log_ratio_{high}_to_{low}"] = float(np.min(
          [np.log(n_of(high, k, d) / n_of(low, k, d)) for k, d in points]))
      ratios = [n_of(high, k, d) / n_of(low, k, d) for k, d in k_points]
      details[f"ratio_{high}_{low}"] = ratios
      measured[f"slope_ratio_{high}_{low}"] = loglog_slope(c.ks, ratios)
  for kind in locality.KINDS:
    measured[f"slope_n_vs_k_{kind}"] = loglog_slope(c.ks, [n_of(kind, k, d) for k, d in k_points])
    details[f"slope_n_vs_d_{kind}"] = loglog_slope(c.ds, [n_of(kind, c.fixed_k, d) for d in c.ds])
  ordered = all(n_of("cnn", k, d) < n_of("lcn", k, d) < n_of("fcn", k, d) for k, d in points)
  details["ordered_at_every_point"] = ordered

  mnist = {kind: ctx.stage(f"mnist1d-fit-{kind}", lambda: mnist1d_accuracy(ctx, kind, c))
           for kind in locality.KINDS}
  for kind in locality.KINDS:
    measured[f"mnist1d_accuracy_{kind}"] = mnist[kind]["accuracy"]
  ctx.save_figure(plot(c, curves, bayes, n_of, mnist))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, curves, bayes, n_of, mnist):
  fig, axes = figures.panels(5, width=4.4)
  k_mid = c.ks[len(c.ks) // 2]
  for kind in locality.KINDS:
    label = kind.upper()
    axes[0].loglog(c.ks, [n_of(kind, k, c.fixed_d) for k in c.ks], "o-", color=COLORS[kind],
                   label=label)
    axes[1].loglog(c.ds, [n_of(kind, c.fixed_k, d) for d in c.ds], "o-", color=COLORS[kind],
                   label=label)
    curve = curves[(kind, k_mid, c.fixed_d)]
    axes[2].semilogx(curve["sizes"], curve["errors"].mean(0), "o-", color=COLORS[kind],
                     label=label)
  axes[2].axhline(bayes[k_mid], color="k", ls="--", label="Bayes error")
  axes[2].axhline(bayes[k_mid] + c.margin, color="gray", ls=":", label="target")
  axes[0].set(xlabel="patches k", ylabel="sample complexity n*", title=f"d = {c.fixed_d}")
  axes[1].set(xlabel="patch dimension d", ylabel="sample complexity n*", title=f"k = {c.fixed_k}")
  axes[2].set(xlabel="training samples n", ylabel="test error",
              title=f"k = {k_mid}, d = {c.fixed_d} (median n* over seeds)")
  for ax, ticks in ((axes[0], c.ks), (axes[1], c.ds)):
    ax.set_xticks(list(ticks), [str(t) for t in ticks])
    ax.minorticks_off()
  for ax in axes[:3]:
    ax.legend()
    ax.grid(alpha=0.3, which="both")
  last = {kind: curves[(kind, k_mid, c.fixed_d)] for kind in locality.KINDS}
  figures.plot_curves(axes[3], {f"{kind.upper()} n={v['sizes'][-1]}": v["loss_curve"]
                                for kind, v in last.items()},
                      title=f"DSD GD, k = {k_mid}, largest n (chosen lr)")
  figures.plot_curves(axes[4], {kind.upper(): mnist[kind]["loss_curve"]
                                for kind in locality.KINDS}, title="MNIST-1D (batch loss)")
  fig.tight_layout()
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="locality_dsd", get_config=configs.get_config, run=run, quick=configs.quick,
    validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
