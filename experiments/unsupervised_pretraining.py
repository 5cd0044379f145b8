r"""Unsupervised MLE pretraining + ERM vs supervised ERM: excess risk over an (n, m) grid.

Paper: Ge, Tang, Fan & Jin, "On the Provable Advantage of Unsupervised
Pretraining", ICLR 2024.

Command:   jaxrep run unsupervised_pretraining --workdir runs/unsupervised_pretraining
           (= python -m experiments.unsupervised_pretraining --workdir=...)
Runtime:   1 min 03 s measured on 2 CPU cores (quick mode: seconds).
Expected:  for both the factor model and the Gaussian mixture, at n = 50 labels
           and m = 10⁴ unlabeled samples the pretrained excess risk is ≤ 0.25 × the
           supervised ERM baseline's, and at n = 50 it falls with m.

Models (fixed before the first run, not tuned):
* factor model, d = 100, r = 5: B_ij ~ N(0, 1/r) (so tr BBᵀ ≈ d σ²: half of x's
  variance is signal), μ = 0, σ = 1, β ~ N(0, I_r / r), τ = 0.5. Pretraining:
  closed-form PPCA MLE; downstream: least squares on E[z|x]. Supervised ERM over
  Φ∘Ψ = all linear maps of x: minimum-norm least squares. Also reported: ridge
  on x with the penalty chosen by exact leave-one-out CV (a regularised baseline
  outside the paper's ERM comparison). Excess squared risk is exact.
* Gaussian mixture, d = 20, K = 4, π uniform, means 3·(orthonormal random
  directions), σ² = 1, y | z = k ~ Ber(q_k), q = (0.9, 0.1, 0.9, 0.1).
  Pretraining: EM (4 restarts, 100 steps); downstream: logistic regression on the
  responsibilities (L2 = 1e-3). Supervised ERM over Φ∘Ψ: all mixture and
  logistic parameters fitted on the n labels (Adam, 4 restarts, least training
  loss). Also reported: L2-logistic regression on x, penalty by 5-fold CV.
  Excess logistic risk = E_x KL(p*(·|x) ‖ p̂(·|x)) on 20,000 fresh x.
Grid n ∈ {20, 50, 100, 200, 500}, m ∈ {10², 10³, 10⁴, 10⁵}; 10 seeds (each
draws its own model parameters and samples).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrep.core import experiment
from jaxrep.theory import unsupervised_pretraining as up

CLAIM = ("MLE pretraining on m = 10⁴ unlabeled samples cuts excess risk at n = 50 labels to "
         "≤ 0.25× that of supervised ERM (factor model and Gaussian mixture), and at n = 50 "
         "the pretrained excess risk falls with m.")
MAX_RATIO = 0.25
CLAIM_N = 50
CLAIM_M = 10000
FALL_TOLERANCE = 0.05   # a step up the m grid may raise the mean excess risk ≤ 5%
MODELS = ("factor", "mixture")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 10
  c.labeled_sizes = (20, 50, 100, 200, 500)
  c.unlabeled_sizes = (100, 1000, 10000, 100000)
  c.factor = ml_collections.ConfigDict(dict(
      dim=100, rank=5, noise_std=1.0, label_noise_std=0.5,
      ridge_penalties=tuple(float(v) for v in np.logspace(-2, 5, 36))))
  c.mixture = ml_collections.ConfigDict(dict(
      dim=20, num_components=4, mean_norm=3.0, variance=1.0,
      label_probs=(0.9, 0.1, 0.9, 0.1), em_steps=100, em_restarts=4, logistic_l2=1e-3,
      erm_steps=1000, erm_restarts=4, erm_learning_rate=0.03, cv_folds=5,
      cv_penalties=tuple(float(v) for v in np.logspace(-4, 1, 11)), num_test=20000))
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.labeled_sizes = (20, 50)
  c.unlabeled_sizes = (100, 1000)
  c.factor.dim = 20
  c.mixture.dim = 6
  c.mixture.em_steps = 20
  c.mixture.erm_steps = 50
  c.mixture.num_test = 2000
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.factor.rank >= c.factor.dim:
    raise experiment.ConfigError("factor.rank must be < factor.dim")
  if len(c.mixture.label_probs) != c.mixture.num_components:
    raise experiment.ConfigError("mixture.label_probs needs one entry per component")
  if any(not 0 <= q <= 1 for q in c.mixture.label_probs):
    raise experiment.ConfigError("mixture.label_probs must lie in [0, 1]")
  if c.mixture.num_components > c.mixture.dim:
    raise experiment.ConfigError("mixture.num_components must be ≤ mixture.dim "
                                 "(orthonormal means)")
  if min(c.labeled_sizes) < max(c.mixture.cv_folds, c.mixture.num_components + 1):
    raise experiment.ConfigError("every labeled size must exceed the CV folds and K")
  if min(c.unlabeled_sizes) < c.mixture.num_components:
    raise experiment.ConfigError("every unlabeled size must be ≥ the number of components")


# ------------------------------------------------------------------ factor model

def draw_factor_model(key, fc) -> up.FactorModel:
  key_b, key_beta = jax.random.split(key)
  loadings = jax.random.normal(key_b, (fc.dim, fc.rank)) / np.sqrt(fc.rank)
  beta = jax.random.normal(key_beta, (fc.rank,)) / np.sqrt(fc.rank)
  return up.FactorModel(loadings, jnp.zeros(fc.dim), fc.noise_std, beta, fc.label_noise_std)


@functools.partial(jax.jit, static_argnames=("c",))
def factor_seed(key, *, c):
  """Excess risks of one seed: pretrained (m, n), min-norm ERM (n), ridge-LOO (n)."""
  fc = c.factor
  key_model, key_unlabeled, key_labeled = jax.random.split(key, 3)
  model = draw_factor_model(key_model, fc)
  x_lab, y_lab = up.factor_sample(key_labeled, model, max(c.labeled_sizes))
  pretrained = []
  for m in c.unlabeled_sizes:
    x_unl, _ = up.factor_sample(jax.random.fold_in(key_unlabeled, m), model, m)
    params = up.ppca_fit(x_unl, fc.rank)
    pretrained.append(jnp.stack([up.factor_excess_risk(
        model, *up.pretrained_predictor(params, x_lab[:n], y_lab[:n]))
        for n in c.labeled_sizes]))
  penalties = jnp.asarray(fc.ridge_penalties)
  erm = jnp.stack([up.factor_excess_risk(model, *up.min_norm_predictor(x_lab[:n], y_lab[:n]))
                   for n in c.labeled_sizes])
  ridge = jnp.stack([up.factor_excess_risk(
      model, *up.ridge_loo_predictor(x_lab[:n], y_lab[:n], penalties)[:2])
      for n in c.labeled_sizes])
  return {"pretrained": jnp.stack(pretrained), "erm": erm, "ridge": ridge,
          "bayes_risk": up.factor_bayes_risk(model)}


# ------------------------------------------------------------------ mixture

def draw_mixture(key, mc) -> up.Mixture:
  directions = jnp.linalg.qr(jax.random.normal(key, (mc.dim, mc.num_components)))[0].T
  return up.Mixture(jnp.full((mc.num_components,), 1.0 / mc.num_components),
                    mc.mean_norm * directions, jnp.asarray(mc.variance))


@functools.partial(jax.jit, static_argnames=("c",))
def mixture_seed(key, *, c):
  """Excess logistic risks of one seed (as for ``factor_seed``), plus logistic-CV."""
  mc = c.mixture
  key_model, key_unlabeled, key_labeled, key_test, key_em, key_erm = jax.random.split(key, 6)
  mixture = draw_mixture(key_model, mc)
  q = jnp.asarray(mc.label_probs)
  x_lab, y_lab, _ = up.mixture_sample(key_labeled, mixture, q, max(c.labeled_sizes))
  x_test, _, _ = up.mixture_sample(key_test, mixture, q, mc.num_test)
  p_star = up.responsibilities(mixture, x_test) @ q
  excess = lambda p_hat: jnp.mean(up.bernoulli_kl(p_star, p_hat))

  pretrained = []
  for m in c.unlabeled_sizes:
    x_unl, _, _ = up.mixture_sample(jax.random.fold_in(key_unlabeled, m), mixture, q, m)
    fit = up.em_fit(jax.random.fold_in(key_em, m), x_unl, mc.num_components, mc.em_steps,
                    mc.em_restarts)
    row = []
    for n in c.labeled_sizes:
      w = up.logistic_fit(up.responsibilities(fit, x_lab[:n]), y_lab[:n], mc.logistic_l2)
      row.append(excess(up.logistic_predict(w, up.responsibilities(fit, x_test))))
    pretrained.append(jnp.stack(row))
  erm, logistic = [], []
  for n in c.labeled_sizes:
    fit, w = up.composed_erm_fit(jax.random.fold_in(key_erm, n), x_lab[:n], y_lab[:n],
                                 mc.num_components, mc.erm_steps, mc.erm_restarts,
                                 mc.erm_learning_rate)
    erm.append(excess(jax.nn.sigmoid(up.responsibilities(fit, x_test) @ w[:-1] + w[-1])))
    w_lin, _ = up.logistic_cv_fit(x_lab[:n], y_lab[:n], jnp.asarray(mc.cv_penalties),
                                  mc.cv_folds)
    logistic.append(excess(up.logistic_predict(w_lin, x_test)))
  return {"pretrained": jnp.stack(pretrained), "erm": jnp.stack(erm),
          "ridge": jnp.stack(logistic)}


SEED_FNS = {"factor": factor_seed, "mixture": mixture_seed}
BASELINE_NAMES = {"factor": ("min-norm least squares (ERM)", "ridge, LOO-CV"),
                  "mixture": ("composed-class ERM", "L2 logistic on x, 5-fold CV")}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  frozen = ml_collections.FrozenConfigDict(c)
  meter = ctx.progress("pretraining grid", len(MODELS) * c.num_seeds, unit="seeds")
  results = {}
  for j, name in enumerate(MODELS):
    keys = ctx.seed_keys(f"unsupervised_pretraining/{name}", c.num_seeds)

    def all_seeds():
      per_seed = []
      for i, key in enumerate(keys):
        per_seed.append(jax.device_get(SEED_FNS[name](key, c=frozen)))
        meter.update(j * c.num_seeds + i + 1, name)
      return {k: np.stack([s[k] for s in per_seed]) for k in per_seed[0]}

    results[name] = ctx.stage(name, all_seeds)

  measured, details, passed = {}, {}, True
  has_claim_cell = CLAIM_N in c.labeled_sizes and CLAIM_M in c.unlabeled_sizes
  for name, r in results.items():
    pre, erm, ridge = r["pretrained"], r["erm"], r["ridge"]      # (seeds, m, n), (seeds, n)
    mean_pre = pre.mean(0)
    details[name] = {"labeled_sizes": list(c.labeled_sizes),
                     "unlabeled_sizes": list(c.unlabeled_sizes),
                     "pretrained_mean": mean_pre, "erm_mean": erm.mean(0),
                     "regularised_mean": ridge.mean(0)}
    n_col = c.labeled_sizes.index(CLAIM_N) if CLAIM_N in c.labeled_sizes else 0
    curve = mean_pre[:, n_col]
    falls = bool(np.all(curve[1:] <= curve[:-1] * (1 + FALL_TOLERANCE)) and curve[-1] < curve[0])
    details[name]["falls_with_m_at_n"] = {"n": c.labeled_sizes[n_col], "falls": falls}
    for i, m in enumerate(c.unlabeled_sizes):
      measured[f"{name}_pretrained_excess_n{c.labeled_sizes[n_col]}_m{m}"] = pre[:, i, n_col]
    measured[f"{name}_erm_excess_n{c.labeled_sizes[n_col]}"] = erm[:, n_col]
    measured[f"{name}_regularised_excess_n{c.labeled_sizes[n_col]}"] = ridge[:, n_col]
    if has_claim_cell:
      m_row = c.unlabeled_sizes.index(CLAIM_M)
      ratio = float(mean_pre[m_row, n_col] / erm[:, n_col].mean())
      ratio_reg = float(mean_pre[m_row, n_col] / ridge[:, n_col].mean())
      measured[f"{name}_ratio_to_erm"] = pre[:, m_row, n_col] / erm[:, n_col]
      measured[f"{name}_ratio_to_regularised"] = pre[:, m_row, n_col] / ridge[:, n_col]
      details[name].update(ratio_of_means_to_erm=ratio,
                           ratio_of_means_to_regularised=ratio_reg)
      passed = passed and ratio <= MAX_RATIO and falls
  if "bayes_risk" in results["factor"]:
    details["factor"]["bayes_risk_mean"] = float(results["factor"]["bayes_risk"].mean())
  ctx.save_figure(plot(c, results))
  return experiment.Outcome(measured=measured, passed=passed if has_claim_cell else None,
                            details=details)


def plot(c, results):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
  cmap = plt.get_cmap("viridis")
  for row, (name, r) in enumerate(results.items()):
    pre = r["pretrained"].mean(0)                                   # (m, n)
    ax = axes[row, 0]
    for i, m in enumerate(c.unlabeled_sizes):
      ax.loglog(c.labeled_sizes, pre[i], "o-", color=cmap(i / max(1, len(c.unlabeled_sizes) - 1)),
                label=f"pretrained, m = {m:g}")
    erm_label, reg_label = BASELINE_NAMES[name]
    ax.loglog(c.labeled_sizes, r["erm"].mean(0), "k--", label=erm_label)
    ax.loglog(c.labeled_sizes, r["ridge"].mean(0), "k:", label=reg_label)
    ax.set(xlabel="labeled n", ylabel="excess risk", title=f"{name}: excess risk vs n")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax = axes[row, 1]
    log_pre = np.log10(pre)
    image = ax.imshow(log_pre, origin="lower", aspect="auto", cmap="magma")
    bright = (log_pre - log_pre.min()) / max(np.ptp(log_pre), 1e-12) > 0.6
    ax.set_xticks(range(len(c.labeled_sizes)), c.labeled_sizes)
    ax.set_yticks(range(len(c.unlabeled_sizes)), [f"{m:g}" for m in c.unlabeled_sizes])
    for i in range(pre.shape[0]):
      for j in range(pre.shape[1]):
        ax.text(j, i, f"{pre[i, j]:.3g}", ha="center", va="center", fontsize=7,
                color="k" if bright[i, j] else "w")
    ax.set(xlabel="labeled n", ylabel="unlabeled m", title=f"{name}: log10 pretrained excess")
    fig.colorbar(image, ax=ax)
  fig.tight_layout()
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="unsupervised_pretraining", claim=CLAIM, get_config=get_config, run=run,
    quick=quick, validate=validate, runtime_s=70,
    headline=("factor_ratio_to_erm", "mixture_ratio_to_erm", "factor_ratio_to_regularised",
              "mixture_ratio_to_regularised"))

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
