r"""CATCH against the DomainBed baselines on synthetic multi-platform posts.

Paper: Sheth et al., "Causality Guided Disentanglement for Cross-Platform Hate
Speech Detection", WSDM 2024 (arXiv 2308.02080). Method: ``jaxrep.shift.catch``.

Command, runtime and expected result: ``experiments/configs/catch_hate_speech.py``.

Protocol (a synthetic stand-in: no real text, no language model). Four
"platforms" of bag-of-token posts from ``catch.platform_token_envs``: hate is
caused by platform-invariant cue tokens (the same law on every platform); the
target group a post mentions is platform-dependent and correlates with hate in a
direction that flips between the training platforms (0, 1: group 0 marks hate)
and the unseen ones (2, 3: group 0 marks non-hate). Each training platform is
split 80/20 into train and held-out rows (``split_environments``); the unseen
platforms are used whole for testing.

Compared under one budget (same backbone — an embedding bag with a 2-layer MLP —,
optimizer Adam, steps, per-platform batch of 64 rows, and number of hyperparameter
draws): ERM, IRMv1, V-REx, CORAL and GroupDRO from ``jaxrep.shift`` with
DomainBed's hyperparameter rule (``sweep_hparams``: row 0 the defaults, the other
rows seed-hash random draws per trial = seed; batch size fixed, since a batch
shape cannot vary across vmapped runs), and CATCH with ERM's learning-rate draws.
Each algorithm's hyperparameter setting is picked per seed by training-domain
validation (mean held-out accuracy over the training platforms; the test
platforms are never looked at). The "best baseline" is then the baseline with the
highest seed-mean unseen-platform macro-F1 — a deliberately strict comparison.

Deviations from the paper: (1) the paper trains on one platform; here two
training platforms are pooled, because with one environment IRM, V-REx, CORAL and
GroupDRO reduce to ERM and the required baseline comparison would be empty (CATCH
itself ignores the platform labels). (2) RoBERTa/BART become an embedding bag and
a bag-of-tokens decoder. (3) The loss weights are all 1 (the paper's are not
known to us); Gumbel temperature 0.5. (4) Targets are the mentioned group of
every post, hateful or not.

Measured (per seed, after selection): unseen-platform macro-F1 (mean over the two
unseen platforms) and in-platform macro-F1 (mean over the training platforms'
held-out rows) of every algorithm; the CATCH − ERM and CATCH − best-baseline
differences; ``erm_shift_drop`` (ERM's in-platform minus unseen F1: the gate that
the shift is real, so the baseline is not at ceiling); the gates that ERM and
CATCH fit the training platforms (in-platform F1 ≥ 0.8).

History:
2026-12-02, first default run (5 seeds × 4 hyperparameter draws per method, 2,000
steps): FAIL, 0/5 seeds. Gates hold (every method fits the training platforms,
in-platform macro-F1 0.92; ERM loses 0.63 macro-F1 on the unseen platforms, so
the shift is real). Unseen macro-F1: ERM 0.29 (the best baseline), GroupDRO 0.29,
CORAL 0.28, V-REx 0.26, IRM 0.21, CATCH 0.09. Diagnosis: nothing in CATCH's
objective removes target information from X_c. The hate head on X_c is trained
on the pooled training platforms, where the mentioned group predicts hate
(P(y | group 0) ≈ 0.95) at least as well as the invariant cues (0.875), so X_c
encodes the group; the KL bottleneck on X_c (β = 1) favours the single most
predictive token set over the cue/group combination, and the target
cross-entropy on the shared backbone sharpens group features further — so CATCH
relies on the flipped correlation more than ERM does. Training curves plateau by
step ~1,000 (the wide band is the small-learning-rate draws, not selected). Not
tuned after the verdict; the thresholds, seeds and protocol are as fixed before
the run. Whether an adversarial or conditional-independence term on X_c (absent
from the paper's objective as we read it) would change this is untested.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import catch_hate_speech as configs
from jaxrep.core import experiment, figures
from jaxrep.shift import baselines, catch, envs, groupdro, hparams, selection



def make_data(c, key) -> dict:
  """Train/held-out stacks of the training platforms and the unseen platforms' stack."""
  posts = catch.platform_token_envs(key, c.data.num_per_platform)
  examples = {k: posts[k] for k in ("x", "y", "t")}
  train_rows = np.isin(posts["env"], c.data.train_platforms)
  env_index = {p: i for i, p in enumerate(c.data.train_platforms)}
  env = np.asarray([env_index.get(p, -1) for p in posts["env"]])
  train, held_out = envs.split_environments(
      jax.random.fold_in(key, 1), {k: v[train_rows] for k, v in examples.items()},
      env[train_rows], len(c.data.train_platforms), c.data.holdout_fraction)
  test = envs.stack_environments([{k: v[posts["env"] == p] for k, v in examples.items()}
                                  for p in c.data.test_platforms])
  return {"train": train, "held_out": held_out, "test": test}


def hparam_runs(algorithm: str, c) -> dict[str, np.ndarray]:
  """DomainBed's draws (num_hparams, num_seeds) per name (trial seed = seed); the
  batch size and weight decay (0 at DomainBed's small scale) are left out."""
  source = "ERM" if algorithm == "CATCH" else algorithm
  per_seed = [hparams.sweep_hparams(source, c.num_hparams, trial_seed=s, scale="small")
              for s in range(c.num_seeds)]
  names = [n for n in per_seed[0] if n not in ("batch_size", "weight_decay")]
  return {n: np.stack([row[n] for row in per_seed], axis=1).astype(
      np.int32 if n.endswith("anneal_iters") else np.float32) for n in names}


def make_task(algorithm: str, c):
  """(task, apply_fn for evaluation) of one algorithm."""
  vocab = catch.platform_vocab_size()
  adam = lambda inputs: optax.adam(inputs["hparams"]["lr"])
  if algorithm == "CATCH":
    model = catch.CatchModel(vocab, num_targets=4, embed_dim=c.model.embed_dim,
                             hidden=c.model.hidden, causal_dim=c.model.causal_dim)
    loss = catch.catch_loss_fn(model, kl_weight=c.catch.kl_weight,
                               temperature=c.catch.temperature)
    return envs.environment_task(catch.catch_init(model), loss, adam,
                                 batch_size=c.train.batch_size), model.apply
  model = catch.TokenClassifier(vocab, embed_dim=c.model.embed_dim, hidden=c.model.hidden)
  apply = model.apply
  kwargs = {"batch_size": c.train.batch_size}
  if algorithm == "GroupDRO":
    return groupdro.groupdro_task(model.init, apply, adam, **kwargs), apply
  if algorithm == "ERM":
    loss = baselines.erm_loss_fn(apply)
  elif algorithm == "IRM":
    loss = baselines.irm_loss_fn(apply, split_batch=True)
    kwargs["reset_optimizer_at"] = lambda i: i["hparams"]["irm_penalty_anneal_iters"]
  elif algorithm == "VREx":
    loss = baselines.vrex_loss_fn(apply)
    kwargs["reset_optimizer_at"] = lambda i: i["hparams"]["vrex_penalty_anneal_iters"]
  elif algorithm == "CORAL":
    loss = baselines.coral_loss_fn(
        lambda p, x: model.apply(p, x, method=catch.TokenClassifier.features),
        lambda p, f: model.apply(p, f, method=catch.TokenClassifier.classify))
  else:
    raise ValueError(algorithm)
  return envs.environment_task(model.init, loss, adam, **kwargs), apply


def train_and_evaluate(ctx: experiment.Context, algorithm: str, c, data: dict) -> dict:
  """Every (hparam setting, seed) of one algorithm; held-out accuracy per training
  platform, macro-F1 in-platform and on the unseen platforms; the training curve."""
  task, apply = make_task(algorithm, c)
  keys = ctx.seed_keys("training", c.num_seeds)          # the same keys for every method
  runs = {"key": jnp.broadcast_to(keys, (c.num_hparams,) + keys.shape),
          "hparams": hparam_runs(algorithm, c)}
  result = ctx.fit(algorithm, task, runs, c.train.num_steps, data={"envs": data["train"]},
                   run_axes=2)
  flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), result.state.params)

  def evaluate(params):
    return (envs.env_accuracy(apply, params, data["held_out"]),
            catch.env_macro_f1(apply, params, data["held_out"]).mean(),
            catch.env_macro_f1(apply, params, data["test"]).mean())

  val_acc, in_f1, unseen_f1 = jax.jit(jax.vmap(evaluate))(flat)
  shape = (c.num_hparams, c.num_seeds)
  val_acc = np.asarray(val_acc).reshape(shape + (-1,))
  in_f1, unseen_f1 = np.asarray(in_f1).reshape(shape), np.asarray(unseen_f1).reshape(shape)
  picked = [selection.training_domain_validation(val_acc[:, s], unseen_f1[:, s]).index[0]
            for s in range(c.num_seeds)]
  seeds = np.arange(c.num_seeds)
  curve = result.curves["hate_ce" if algorithm == "CATCH" else "nll"]
  return {"unseen_f1": unseen_f1[picked, seeds], "in_f1": in_f1[picked, seeds],
          "picked": np.asarray(picked), "unseen_f1_all": unseen_f1,
          "curve": curve.reshape((-1, curve.shape[-1]))}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  data = ctx.stage("data", lambda: make_data(c, ctx.key("posts")))
  methods = tuple(c.baselines) + ("CATCH",)
  results = {m: ctx.stage(f"train-{m}", lambda m=m: train_and_evaluate(ctx, m, c, data))
             for m in methods}
  unseen = {m: results[m]["unseen_f1"] for m in methods}
  in_f1 = {m: results[m]["in_f1"] for m in methods}
  best = max(c.baselines, key=lambda m: float(np.mean(unseen[m])))
  gap_erm = unseen["CATCH"] - unseen["ERM"]
  gap_best = unseen["CATCH"] - unseen[best]
  gap_in = in_f1["CATCH"] - in_f1["ERM"]
  holds = (gap_erm >= 0.05) & (gap_best >= 0.0) & (gap_in >= -0.02)
  measured = {f"unseen_f1_{m.lower()}": unseen[m] for m in methods}
  measured.update({f"in_platform_f1_{m.lower()}": in_f1[m] for m in methods})
  measured.update(unseen_f1_catch_minus_erm=gap_erm,
                  unseen_f1_catch_minus_best_baseline=gap_best,
                  in_platform_f1_catch_minus_erm=gap_in,
                  unseen_f1_best_baseline=unseen[best],
                  erm_shift_drop=in_f1["ERM"] - unseen["ERM"],
                  seeds_passing=float(holds.sum()))
  details = {"best_baseline": best,
             "seeds_passing": f"{int(holds.sum())}/{c.num_seeds} seeds hold all three "
                              "claim inequalities (ours: +0.05 vs ERM, ≥ best, in-platform ≥ −0.02)",
             "picked_hparam_index": {m: results[m]["picked"].tolist() for m in methods},
             "unseen_f1_every_hparam": {m: results[m]["unseen_f1_all"].tolist()
                                        for m in methods},
             "note": "synthetic stand-in for real platforms; thresholds ours"}
  ctx.save_figure(plot(results, best))
  return experiment.Outcome(measured=measured, details=details)


def plot(results, best):
  fig, (ax_curves, ax_unseen, ax_in) = figures.panels(3)
  figures.plot_curves(ax_curves, {m: r["curve"] for m, r in results.items()},
                      ylabel="training hate cross-entropy", title="training (all runs)")
  figures.bars_with_seeds(ax_unseen, {m + (" (best)" if m == best else ""):
                                      r["unseen_f1"] for m, r in results.items()},
                          ylabel="macro-F1", title="unseen platforms")
  figures.bars_with_seeds(ax_in, {m: r["in_f1"] for m, r in results.items()},
                          ylabel="macro-F1", title="in-platform (held-out)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="catch_hate_speech", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
