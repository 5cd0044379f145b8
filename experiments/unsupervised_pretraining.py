r"""Unsupervised MLE pretraining + ERM vs supervised ERM: excess risk over an (n, m) grid.

Paper: Ge, Tang, Fan & Jin, "On the Provable Advantage of Unsupervised
Pretraining", ICLR 2024.

Command, runtime and expected result: ``experiments/configs/unsupervised_pretraining.py``.

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

Training: the one gradient-trained model, the mixture's composed-class ERM, goes
through ``fit`` (``up.composed_erm_task``: full batch, no minibatches, as
before), one fit per n with run axes (seeds, restarts) — the n labeled samples
differ in size between fits; the figure shows its curves. PPCA is closed form,
EM and Newton's logistic regression are fixed-point iterations (no optimizer,
no curves), so they stay plain functions.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs import unsupervised_pretraining as configs
from jaxrep.core import experiment, figures
from jaxrep.theory import unsupervised_pretraining as up

LABELED_N = 50       # the n column the measures read (the first n when absent)
UNLABELED_M = 10000  # the m row of the ratio measures (reported only when in the grid)
MODELS = ("factor", "mixture")


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
  """Excess logistic risks of one seed: pretrained (m, n) and logistic-CV (n); plus
  the labeled and test data and restart keys for the composed-class ERM."""
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
  logistic = []
  for n in c.labeled_sizes:
    w_lin, _ = up.logistic_cv_fit(x_lab[:n], y_lab[:n], jnp.asarray(mc.cv_penalties),
                                  mc.cv_folds)
    logistic.append(excess(up.logistic_predict(w_lin, x_test)))
  erm_keys = jnp.stack([jax.random.split(jax.random.fold_in(key_erm, n), mc.erm_restarts)
                        for n in c.labeled_sizes])
  return {"pretrained": jnp.stack(pretrained), "ridge": jnp.stack(logistic),
          "x_lab": x_lab, "y_lab": y_lab, "x_test": x_test, "p_star": p_star,
          "erm_keys": erm_keys}


@jax.jit
def best_restart_excess(params, x, y, x_test, p_star):
  """Excess risk of the restart (leading axis of params) of least training loss."""
  losses = jax.vmap(lambda p: up.composed_erm_loss(p, {"x": x, "y": y})[0])(params)
  best = jax.tree.map(lambda a: a[jnp.argmin(losses)], params)
  return jnp.mean(up.bernoulli_kl(p_star, up.composed_erm_predict(best, x_test)))


def stack_seeds(seed_fn, keys, c, meter, done: int, label: str) -> dict:
  """``seed_fn(key, c=...)`` for each seed, one after another (memory), stacked."""
  frozen, outs = ml_collections.FrozenConfigDict(c), []
  for i, key in enumerate(keys):
    outs.append(jax.device_get(seed_fn(key, c=frozen)))
    meter.update(done + i + 1, label)
  return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


def mixture_all_seeds(ctx, c, keys, meter):
  """Every seed's closed-form fits, then the composed-class ERM: one fit per n."""
  data = stack_seeds(mixture_seed, keys, c, meter, c.num_seeds, "mixture")
  mc, erm, curves = c.mixture, [], {}
  for j, n in enumerate(c.labeled_sizes):
    tile = lambda a: np.repeat(a[:, None, :n], mc.erm_restarts, axis=1)
    result = ctx.fit(f"mixture_erm_n{n}", up.composed_erm_task(mc.num_components,
                                                               mc.erm_learning_rate),
                     {"key": data["erm_keys"][:, j], "x": tile(data["x_lab"]),
                      "y": tile(data["y_lab"])}, mc.erm_steps, run_axes=2)
    erm.append(np.asarray(jax.vmap(best_restart_excess)(
        result.state.params, data["x_lab"][:, :n], data["y_lab"][:, :n], data["x_test"],
        data["p_star"])))
    curves[n] = result.curves["loss"]
  return {"pretrained": data["pretrained"], "ridge": data["ridge"],
          "erm": np.stack(erm, 1), "erm_curves": curves}


BASELINE_NAMES = {"factor": ("min-norm least squares (ERM)", "ridge, LOO-CV"),
                  "mixture": ("composed-class ERM", "L2 logistic on x, 5-fold CV")}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  meter = ctx.progress("pretraining grid", len(MODELS) * c.num_seeds, unit="seeds")
  keys = {name: ctx.seed_keys(f"unsupervised_pretraining/{name}", c.num_seeds)
          for name in MODELS}
  results = {"factor": ctx.stage("factor", lambda: stack_seeds(
                 factor_seed, keys["factor"], c, meter, 0, "factor")),
             "mixture": ctx.stage("mixture", lambda: mixture_all_seeds(
                 ctx, c, keys["mixture"], meter))}

  measured, details = {}, {}
  has_ratio_cell = LABELED_N in c.labeled_sizes and UNLABELED_M in c.unlabeled_sizes
  n_col = c.labeled_sizes.index(LABELED_N) if LABELED_N in c.labeled_sizes else 0
  n = c.labeled_sizes[n_col]
  for name, r in results.items():
    pre, erm, ridge = r["pretrained"], r["erm"], r["ridge"]      # (seeds, m, n), (seeds, n)
    mean_pre = pre.mean(0)
    details[name] = {"labeled_sizes": list(c.labeled_sizes),
                     "unlabeled_sizes": list(c.unlabeled_sizes),
                     "pretrained_mean": mean_pre, "erm_mean": erm.mean(0),
                     "regularised_mean": ridge.mean(0)}
    curve = mean_pre[:, n_col]
    measured[f"{name}_max_step_ratio_along_m"] = float(np.max(curve[1:] / curve[:-1]))
    measured[f"{name}_excess_ratio_mmax_to_mmin"] = float(curve[-1] / curve[0])
    for i, m in enumerate(c.unlabeled_sizes):
      measured[f"{name}_pretrained_excess_n{n}_m{m}"] = pre[:, i, n_col]
    measured[f"{name}_erm_excess_n{n}"] = erm[:, n_col]
    measured[f"{name}_regularised_excess_n{n}"] = ridge[:, n_col]
    if has_ratio_cell:
      m_row = c.unlabeled_sizes.index(UNLABELED_M)
      ratio = float(mean_pre[m_row, n_col] / erm[:, n_col].mean())
      ratio_reg = float(mean_pre[m_row, n_col] / ridge[:, n_col].mean())
      measured[f"{name}_ratio_to_erm"] = pre[:, m_row, n_col] / erm[:, n_col]
      measured[f"{name}_ratio_to_regularised"] = pre[:, m_row, n_col] / ridge[:, n_col]
      measured[f"{name}_ratio_of_means_to_erm"] = ratio
      details[name].update(ratio_of_means_to_erm=ratio,
                           ratio_of_means_to_regularised=ratio_reg)
  details["factor"]["bayes_risk_mean"] = float(results["factor"]["bayes_risk"].mean())
  ctx.save_figure(plot(c, results))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, results):
  fig, axes = figures.panels(3, width=5.5, height=4.5)
  for ax, (name, r) in zip(axes, results.items()):
    pre = r["pretrained"].mean(0)                                   # (m, n)
    for i, m in enumerate(c.unlabeled_sizes):
      ax.loglog(c.labeled_sizes, pre[i], "o-", label=f"pretrained, m = {m:g}",
                color=f"C{i}")
    erm_label, reg_label = BASELINE_NAMES[name]
    ax.loglog(c.labeled_sizes, r["erm"].mean(0), "k--", label=erm_label)
    ax.loglog(c.labeled_sizes, r["ridge"].mean(0), "k:", label=reg_label)
    ax.set(xlabel="labeled n", ylabel="excess risk", title=f"{name}: excess risk vs n")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
  figures.plot_curves(axes[2], {f"n = {n}": curve for n, curve in
                                results["mixture"]["erm_curves"].items()},
                      ylabel="training log-loss",
                      title="mixture: composed-class ERM (Adam, all restarts)")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="unsupervised_pretraining", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
