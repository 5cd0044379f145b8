r"""Compatible model replacement with a fixed d-simplex classifier on MNIST-1D.

Paper: Biondi et al., "Stationary Representations: Optimally Approximating
Compatibility and Implications for Improved Model Replacements", CVPR 2024
(``jaxrep.probe.dsimplex``).

Command, runtime, expected and measured result: ``experiments/configs/dsimplex_compatibility.py``.

Protocol (the paper's IAM-CL²R scenario, scaled down). MNIST-1D's 10 classes
arrive in ``num_tasks`` = 5 tasks of 2 classes. After each task,
``rehearsal_per_class`` = 20 random training signals per new class enter a replay
memory; training on task t samples class-balanced batches from the task's data
plus the memory (as the official BalancedBatchSampler does). Models are 1-D
CNNs whose K_pre − 1 = 31-d features feed a classifier over K_pre = 32
preallocated classes. As in the official code (whose ``replace_ids`` always
include task 0), models are "pre-trained elsewhere": on all 10 classes of
``mnist1d/shifted`` (another MNIST-1D draw with doubled correlated-noise and
shear scales), ``pretrain_chunks`` × ``steps_per_task`` steps. The stream starts
from such a model (width ``channels``); at ``replace_task`` = 3 (the fourth task)
the fine-tuned model is replaced by an independently initialised and pre-trained
*wider* model (``replacement_channels``), which is then fine-tuned on tasks 3–4.

* d-simplex-HOC: the classifier is the frozen d-simplex (K_pre vertices, also
  used in pre-training), and every task minimises λ·CE + (1 − λ)·L_HOC(φ_new, φ_old)
  with φ_old the model the task starts from (the previous task's model, or the
  freshly loaded pre-trained model at tasks 0 and 3, as the official code does),
  λ = 0.1, μ = 10 (Eq. 3–4).
* ER baseline: a learnable linear classifier (K_pre outputs, no bias), cross-
  entropy with replay only (the official ``er`` method).

Compatibility matrix M_ij (i, j = tasks 0…4): 1:N identification accuracy on the
MNIST-1D test set, queries (test signals 500–999) embedded by model i against
class templates of the gallery (test signals 0–499) embedded by model j; AC is
the fraction of the 10 pairs i > j with M_ij > M_jj.

Hyperparameters (chosen once, before the reported run): Adam 1e-3, batch 64,
``steps_per_task`` = 500, pre-training 3 × 500 steps (fresh optimizer per task,
as in the official code, and per pre-training chunk). Every task and chunk is one
``ctx.fit`` of ``dsimplex.compatibility_task`` over the replicates; its batches
are drawn *with* replacement, ∝ the class-balanced weights (the first runs'
protocol, same keys and batches). The first default run's protocol, corrected
after reading the official code, is described in the config's header.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import dsimplex_compatibility as configs
from jaxrep import data
from jaxrep.core import experiment, figures
from jaxrep.probe import dsimplex
from jaxrep.probe.encoders import CNNEncoder1D, standardized_mnist1d

METHODS = ("dsimplex", "learnable")


class IncrementalNet(nn.Module):
  """CNN features φ(x) ∈ R^{K_pre − 1} and logits over K_pre preallocated classes:
  the frozen d-simplex (``fixed``) or a learnable bias-free linear layer."""

  num_preallocated: int
  channels: int
  fixed: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    features = CNNEncoder1D(self.num_preallocated - 1, self.channels, name="encoder")(x)
    if self.fixed:
      logits = dsimplex.fixed_classifier_logits(features, dsimplex.dsimplex(self.num_preallocated))
    else:
      logits = nn.Dense(self.num_preallocated, use_bias=False, name="classifier")(features)
    return features, logits


def run_sequence(ctx, c, method, keys, weights, x, y, x_pre, y_pre) -> dict:
  """Trains one method's sequence; returns per-task (params, width) and the curves.

  As in the official code (``replace_ids`` always contains 0), the stream starts
  from a model pre-trained elsewhere — ``pretrain_chunks`` × ``steps_per_task``
  steps of cross-entropy on all classes of the other data set, Adam restarted per
  chunk (d-simplex: φ_old = itself with λ = 1) — and at a replacement task the
  downloaded model is loaded; d-simplex-HOC's φ_old is the model the task starts
  from (the previous task's model, or the freshly loaded pre-trained model).
  """
  hoc = method == "dsimplex"
  fold = lambda keys, offset: jax.vmap(lambda k: jax.random.fold_in(k, offset))(keys)
  net = lambda width: IncrementalNet(c.num_preallocated, width, fixed=hoc)

  @functools.cache  # one task object per (width, λ): fit compiles it once
  def task_for(width, lam):
    return dsimplex.compatibility_task(net(width).apply, optax.adam(c.learning_rate),
                                       batch_size=c.batch_size, lam=lam, mu=c.hoc_mu)

  def train(name, width, run_keys, params, run_weights, examples, lam):
    task = task_for(width, lam)
    runs = {"key": run_keys, "params": params, "weights": run_weights}
    result = ctx.fit(f"{method}-{name}", task, runs, c.steps_per_task,
                     data={"examples": examples})
    return result.state.params, result.curves["loss"]

  pre = {"x": x_pre, "y": y_pre}
  everything = dsimplex.balanced_weights(np.asarray(y_pre), np.ones(y_pre.size, bool))
  pre_weights = jnp.tile(everything, (keys.shape[0], 1))
  loaded, curves = {}, {}
  for label, offset, width in (("base", 20_000, c.channels),
                               ("wide", 10_000, c.replacement_channels)):
    params = jax.jit(jax.vmap(lambda k: net(width).init(k, x_pre[:1])))(fold(keys, offset))
    chunks = []
    for chunk in range(c.pretrain_chunks):
      params, curve = train(f"pretrain-{label}-{chunk}", width, fold(fold(keys, offset), chunk),
                            params, pre_weights, pre, 1.0 if hoc else None)
      chunks.append(curve)
    loaded[label], curves[f"pre-training ({label})"] = (params, width), np.concatenate(chunks, 1)
  models, stream = [], []
  for t in range(c.num_tasks):
    start = {0: "base", c.replace_task: "wide"}.get(t)
    params, width = loaded[start] if start else models[-1]
    params, curve = train(f"task{t}", width, fold(keys, t), params, weights[t],
                          {"x": x, "y": y}, c.hoc_lambda if hoc else None)
    models.append((params, width))
    stream.append(curve)
  curves["stream"] = np.concatenate(stream, 1)
  return {"models": models, "curves": curves,
          "losses": np.stack([s[:, -50:].mean(1) for s in stream], 1)}


def compatibility(c, method, models, x_test, y_test):
  """Per-replicate compatibility matrices (seeds, T, T) and test accuracies (seeds, T);
  queries are the second half of the test set, the gallery the first half."""
  feats, accs = [], []
  for params, width in models:
    model = IncrementalNet(c.num_preallocated, width, fixed=method == "dsimplex")
    features, logits = jax.jit(jax.vmap(lambda p: model.apply(p, x_test)))(params)
    feats.append(features)
    accs.append(np.asarray(jnp.mean(jnp.argmax(logits, -1) == y_test, axis=-1)))
  half = y_test.shape[0] // 2
  matrices = jax.jit(jax.vmap(lambda f: dsimplex.compatibility_matrix(
      f[:, half:], y_test[half:], f[:, :half], y_test[:half], 10)))(jnp.stack(feats, 1))
  return np.asarray(matrices), np.stack(accs, 1)


def cross_over_self(matrix: np.ndarray) -> float:
  """Diagnostic: mean over pairs i > j of M_ij / M_jj (AC counts only whether it is > 1)."""
  t = matrix.shape[0]
  return float(np.mean([matrix[i, j] / matrix[j, j] for j in range(t) for i in range(j + 1, t)]))


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  x_np, y_np, x_test_np, y_test_np = standardized_mnist1d(ctx.data_dir)
  x, y = jnp.asarray(x_np), jnp.asarray(y_np)
  x_test, y_test = jnp.asarray(x_test_np), jnp.asarray(y_test_np)
  weights = jnp.asarray(np.stack([dsimplex.incremental_replay_weights(
      y_np, c.num_tasks, c.rehearsal_per_class, np.random.default_rng(seed))
      for seed in ctx.seeds(c.num_seeds)], 1))  # (tasks, seeds, n)
  shifted = data.load("mnist1d/shifted", "train", ctx.data_dir)
  x_pre = jnp.asarray((shifted.x - shifted.x.mean()) / shifted.x.std())
  keys = ctx.seed_keys("stream", c.num_seeds)  # same inits and batches for both methods

  measured, details, curves = {}, {}, {}
  for method in METHODS:
    def sequence():
      trained = run_sequence(ctx, c, method, keys, weights, x, y, x_pre,
                             jnp.asarray(shifted.y))
      matrices, accs = compatibility(c, method, trained["models"], x_test, y_test)
      return {"matrices": matrices, "accuracies": accs, "losses": trained["losses"],
              "curves": trained["curves"]}

    result = ctx.stage(f"fit-sequence-{method}", sequence)
    measured[f"ac_{method}"] = np.array(
        [float(dsimplex.average_compatibility(m)) for m in result["matrices"]])
    measured[f"cross_over_self_{method}"] = np.array(
        [cross_over_self(m) for m in result["matrices"]])
    measured[f"final_test_accuracy_{method}"] = result["accuracies"][:, -1]
    measured[f"final_self_identification_{method}"] = result["matrices"][:, -1, -1]
    details[f"compatibility_matrix_mean_{method}"] = result["matrices"].mean(0)
    details[f"compatibility_matrices_{method}"] = result["matrices"]
    details[f"test_accuracy_per_task_{method}"] = result["accuracies"]
    details[f"final_train_loss_per_task_{method}"] = result["losses"]
    curves.update({f"{method} {k}": v for k, v in result["curves"].items()})

  details["replace_task"] = c.replace_task
  ctx.save_figure(plot(c, details, measured, curves))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, details, measured, curves):
  fig, axes = figures.panels(4, width=4.5)
  for ax, method in zip(axes, METHODS):
    matrix = details[f"compatibility_matrix_mean_{method}"]
    t = matrix.shape[0]
    ax.imshow(np.where(np.tril(np.ones((t, t), bool)), matrix, np.nan), vmin=0, vmax=1,
              cmap="viridis")
    for i in range(t):
      for j in range(i + 1):
        mark = "" if i == j else ("✓" if matrix[i, j] > matrix[j, j] else "✗")
        ax.text(j, i, f"{matrix[i, j]:.2f}{mark}", ha="center", va="center", color="w",
                fontsize=8)
    ax.set(xlabel="gallery model (task)", ylabel="query model (task)",
           title=f"{method}: AC = {np.mean(measured[f'ac_{method}']):.2f}\n"
                 f"(replacement at task {c.replace_task})")
  figures.plot_curves(axes[2], {k: v for k, v in curves.items() if "pre-training" in k},
                      title="pre-training (cross-entropy)")
  figures.plot_curves(axes[3], {k: v for k, v in curves.items() if "stream" in k},
                      logy=False, title=f"stream: {c.num_tasks} tasks × {c.steps_per_task} "
                                        "steps\n(d-simplex: λ·CE + (1 − λ)·HOC)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="dsimplex_compatibility", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
