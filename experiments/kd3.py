r"""KD³ against KD on a shifted, junk-laden MNIST-1D "web" pool.

Paper: Tang et al., "Distribution Shift Matters for Knowledge Distillation with
Webly Collected Images", ICCV 2023 (arXiv 2307.11469). Method: ``jaxrep.shift.kd3``.

Command, runtime and expected result: ``experiments/configs/kd3.py``.

Protocol (a synthetic stand-in for web images). A teacher ``ConvNet1D`` (3 convs
of 32 channels, 64-d features, ~30k parameters) is trained per seed with
cross-entropy on the clean MNIST-1D training split (4,000 signals; Adam 1e-3,
2,000 steps of 128). The "web" pool the students see is unlabeled: the whole
``mnist1d/shifted`` draw (correlated-noise and shear scales doubled, another
generator seed; 5,000 signals) plus class-less junk (``kd3.junk_sequences``:
random walks, sinusoids, square pulses) making up 20% of the pool. Signals are
z-scored by the clean training split's scalar mean/std, the teacher's
preprocessing. Three students of one architecture (convs 8-16-16, 32-d features,
a 32→64 projection into the teacher's feature space, ~9k parameters) are trained
with the same optimizer, steps and batches (Adam 1e-3, 2,000 steps of 128 pool
rows, the same keys):

* ``kd_all``: KD (T = 4) on every pool instance;
* ``kd_teacher``: KD on the top 80% of each batch by teacher confidence max p_T
  ("confidence-only selection");
* ``kd3``: KD³ — the top 80% of each batch by the combined confidence
  max ½(p_T + p_S), recomputed every step, weighted feature alignment (weight 1), classifier
  alignment (weight 1) and MixDistribution InfoNCE (weight 0.1, λ ~ Beta(0.1, 0.1),
  on the student's first conv feature map; InfoNCE temperature 0.1).

Every student is scored on the clean MNIST-1D test split (1,000 signals). Gates:
the teacher reaches ≥ 0.85 clean test accuracy, and KD on the whole pool stays
≥ 0.02 below the teacher (room for a better student).

Deviations: the paper's web images (hundreds of thousands) and ResNets become a
6,250-signal pool and 1-D CNNs; the loss weights, τ, temperature and Beta(α, α)
are not from the paper (no code found); the selections keep a top fraction of
each batch rather than a per-class top-k or a threshold (see History).

Budget: 3 seeds and 2,000 steps, cut from 5 seeds and 3,000 steps after a first
default run was stopped during teacher training (before any student trained or any
result existed) because it would have exceeded the 10-minute limit on 2 cores.

History:
2026-12-02, first default run (3 seeds; the selections then kept rows with
confidence ≥ τ = 0.7): NOT COMPARABLE and not recorded, because it exposed a bug.
KD³'s fixed-threshold combined selection selected 0% of every batch for all 2,000
steps: an untrained student is near uniform, so ½(p_T + p_S) ≤ ½(1 + 1/10) = 0.55
< τ, no KD term ever reached the student, and it stayed at chance (clean test
accuracy 0.088 ± 0.006). KD on the whole pool: 0.639 ± 0.018, teacher-confident KD
(≈ 82% selected): 0.628 ± 0.013. The teacher gate also failed (0.825 ± 0.007 <
0.85, ours): its training loss reached 0.004 on the clean split, so it overfits
rather than under-trains; 2,000 student steps left the KD loss still falling.
Fix: both selections keep a top fraction ρ = 0.8 of each batch (the notes'
top-k alternative), so the rule cannot deadlock and the two selections differ
only in the confidence used. The teacher gate (0.85) is unchanged.
2026-12-02, rerun with the fix (recorded): NOT COMPARABLE, 0/3 seeds. Teacher gate
fails again (0.825 ± 0.007). Clean test accuracy: KD whole pool 0.639 ± 0.018,
teacher-confident KD 0.633 ± 0.016, KD³ 0.573 ± 0.021 (KD³ − KD = −0.066 ± 0.008).
Diagnosis so far: the final combined selection keeps 87% of the junk but 78% of
the shifted digits, i.e. it prefers junk (teacher and student agree confidently on
junk), and the alignment/MixDistribution terms cost accuracy at this budget; the
student KD losses were still falling at 2,000 steps. Open: a better-generalising
teacher (augmentation/weight decay) for the gate, and longer student training.

"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import kd3 as configs
from jaxrep import data as data_lib
from jaxrep.core import experiment, figures, tasks
from jaxrep.probe.encoders import standardized_mnist1d
from jaxrep.shift import kd3

STUDENTS = ("kd_all", "kd_teacher", "kd3")
LABELS = {"kd_all": "KD (whole pool)", "kd_teacher": "KD (teacher-confident)", "kd3": "KD³"}


def make_data(c, data_dir, key) -> dict:
  x, y, x_test, y_test = standardized_mnist1d(data_dir)
  raw = data_lib.load("mnist1d", "train", data_dir).x
  mean, std = raw.mean(), raw.std()
  shifted = np.concatenate([data_lib.load("mnist1d/shifted", split, data_dir).x
                            for split in ("train", "test")])
  shifted = (shifted - mean) / std
  num_junk = int(round(c.junk_fraction / (1 - c.junk_fraction) * len(shifted)))
  junk = np.asarray(kd3.junk_sequences(key, num_junk, shifted.shape[1]))
  pool = np.concatenate([shifted, junk]).astype(np.float32)
  is_junk = np.concatenate([np.zeros(len(shifted), bool), np.ones(num_junk, bool)])
  return {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.int32),
          "x_test": np.asarray(x_test, np.float32), "y_test": np.asarray(y_test, np.int32),
          "pool": pool, "is_junk": is_junk}


def networks(c):
  teacher = kd3.ConvNet1D(tuple(c.teacher.channels), c.teacher.feature_dim)
  student = kd3.ConvNet1D(tuple(c.student.channels), c.student.feature_dim,
                          project_dim=c.teacher.feature_dim)
  return teacher, student


def train_teacher(ctx, c, d) -> dict:
  teacher, _ = networks(c)
  task = tasks.classifier_task(teacher.init, teacher.apply, optax.adam(c.learning_rate),
                               batch_size=c.batch_size, replace=False)
  result = ctx.fit("teacher", task, {"key": ctx.seed_keys("teacher", c.num_seeds)},
                   c.teacher.num_steps, data={"examples": {"x": d["x"], "y": d["y"]}})
  params = result.state.params
  accuracy = jax.jit(jax.vmap(lambda p: jnp.mean(
      jnp.argmax(teacher.apply(p, d["x_test"]), -1) == d["y_test"])))(params)
  return {"params": params, "test_accuracy": np.asarray(accuracy),
          "curve": result.curves["loss"]}


def train_student(ctx, c, d, teacher_params, kind: str) -> dict:
  teacher, student = networks(c)
  full = kind == "kd3"
  loss = kd3.kd3_loss_fn(
      student, teacher, selection={"kd_all": "all", "kd_teacher": "teacher",
                                   "kd3": "combined"}[kind],
      keep_fraction=c.kd3.keep_fraction, temperature=c.kd3.temperature,
      feature_weight=c.kd3.feature_weight if full else 0.0,
      classifier_weight=c.kd3.classifier_weight if full else 0.0,
      mix_weight=c.kd3.mix_weight if full else 0.0, mix_alpha=c.kd3.mix_alpha)
  task = tasks.minibatch_task(lambda key, rows: student.init(key, rows["x"]), loss,
                              optax.adam(c.learning_rate), batch_size=c.batch_size,
                              replace=False)
  # the frozen teacher travels as a per-run entry that minibatch_task adds to each batch
  runs = {"key": ctx.seed_keys("student", c.num_seeds),
          "hparams": {"teacher_params": teacher_params}}
  result = ctx.fit(kind, task, runs, c.student.num_steps, data={"examples": {"x": d["pool"]}})

  def evaluate(params, t_params):
    accuracy = jnp.mean(jnp.argmax(student.apply(params, d["x_test"]), -1) == d["y_test"])
    pool_t = teacher.apply(t_params, d["pool"])
    pool_s = student.apply(params, d["pool"])
    selected = kd3.top_fraction_mask(kd3.combined_confidence(pool_t, pool_s),
                                     c.kd3.keep_fraction)
    return accuracy, selected

  accuracy, selected = jax.jit(jax.vmap(evaluate))(result.state.params, teacher_params)
  selected = np.asarray(selected)
  # which rows the final teacher + student would keep, were the whole pool one batch
  return {"test_accuracy": np.asarray(accuracy), "curve": result.curves["kd"],
          "junk_selected": selected[:, d["is_junk"]].mean(1),
          "shifted_selected": selected[:, ~d["is_junk"]].mean(1),
          "selected_curve": result.curves["selected"]}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  d = ctx.stage("data", lambda: make_data(c, ctx.data_dir, ctx.key("junk")))
  teacher = ctx.stage("teacher", lambda: train_teacher(ctx, c, d))
  students = {k: ctx.stage(f"student-{k}", lambda k=k: train_student(
      ctx, c, d, teacher["params"], k)) for k in STUDENTS}
  acc = {k: students[k]["test_accuracy"] for k in STUDENTS}
  gain_all = acc["kd3"] - acc["kd_all"]
  gain_teacher = acc["kd3"] - acc["kd_teacher"]
  holds = (gain_all >= 0.02) & (gain_teacher >= 0.01)
  measured = {f"test_accuracy_{k}": acc[k] for k in STUDENTS}
  measured.update(
      teacher_test_accuracy=teacher["test_accuracy"],
      kd3_minus_kd_all=gain_all, kd3_minus_kd_teacher=gain_teacher,
      teacher_minus_kd_all=teacher["test_accuracy"] - acc["kd_all"],
      kd3_junk_selected=students["kd3"]["junk_selected"],
      kd3_shifted_selected=students["kd3"]["shifted_selected"],
      seeds_passing=float(holds.sum()))
  details = {"seeds_passing": f"{int(holds.sum())}/{c.num_seeds} seeds hold both claim "
                              "inequalities (ours: +0.02 vs KD-all, +0.01 vs teacher-selected KD)",
             "pool": {"shifted": int((~d["is_junk"]).sum()), "junk": int(d["is_junk"].sum())},
             "note": "synthetic stand-in for webly collected images; thresholds ours"}
  ctx.save_figure(plot(teacher, students))
  return experiment.Outcome(measured=measured, details=details)


def plot(teacher, students):
  fig, (ax_curves, ax_selected, ax_bars) = figures.panels(3)
  curves = {"teacher (CE, clean)": teacher["curve"]}
  curves.update({LABELS[k]: students[k]["curve"] for k in STUDENTS})
  figures.plot_curves(ax_curves, curves, ylabel="training loss (CE / KD term)",
                      title="training")
  figures.plot_curves(ax_selected, {LABELS[k]: students[k]["selected_curve"]
                                    for k in STUDENTS},
                      ylabel="fraction of batch selected", logy=False, title="selection")
  bars = {"teacher": teacher["test_accuracy"]}
  bars.update({LABELS[k]: students[k]["test_accuracy"] for k in STUDENTS})
  figures.bars_with_seeds(ax_bars, bars, ylabel="clean test accuracy",
                          title="MNIST-1D test")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="kd3", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
