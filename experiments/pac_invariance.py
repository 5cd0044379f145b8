r"""PAC generalization of ε-approximate invariance across unseen interventions.

Paper: Parulekar, Shanmugam & Shakkottai, "PAC Generalization via Invariant
Representations", ICML 2023.

Command, runtime and expected result: ``experiments/configs/pac_invariance.py``.

Protocol. For each ambient dimension d and each of ``num_sems`` random SEMs per seed
(DAG with in-degree ≤ 2, weights ±U[0.5, 2], noise std U[0.5, 2]; target y = d//2;
intervention sites S = {an ancestor of y, a descendant of y}; an environment redraws
the incoming weights on the existing edges and the noise std at S from the same
ranges), a pool of ``num_candidates`` covariate sets (pa(y) with parents dropped
at random, plus up to two random relatives of y) is scored on T training
environments with exact population moments: a candidate is selected when its
invariance gap max_e ‖β_e − β̄_T‖ ≤ ε. Each selected candidate's violation rate is
the fraction of ``num_test_envs`` fresh environments with ‖β_e − β̄_T‖ > 2ε; the
reported rate at (d, T) averages over all selected candidates of all SEMs of a
seed. Training sets are nested prefixes of one stream of environments.
ε = 0.1 (coefficients are O(1)) was fixed before the first run.

No training: selection and violation rates are exact population computations
(closed-form regression coefficients per environment), so nothing goes through
``fit``; the figure shows the measured rates against T.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs import pac_invariance as configs
from jaxrep.causal import pac_invariance as pac
from jaxrep.core import experiment, figures



@functools.partial(jax.jit, static_argnames=("d", "c"))
def _selected_and_violations(seed_key, *, d, c):
  """(num_T, sems·M) selected flags and violation rates for one seed."""
  max_t = max(c.train_env_counts)

  def one_sem(key):
    k_fam, k_cand, k_train, k_test = jax.random.split(key, 4)
    family = pac.random_family(k_fam, d)
    indices, valid = pac.candidate_pool(k_cand, family, c.num_candidates,
                                        c.max_candidate_size)
    train = pac.environment_coefficients(jax.random.split(k_train, max_t), family,
                                         indices, valid)
    test = pac.environment_coefficients(jax.random.split(k_test, c.num_test_envs), family,
                                        indices, valid)
    out = [pac.violation_rates(train, test, c.epsilon, t) for t in c.train_env_counts]
    return jnp.stack([o[0] for o in out]), jnp.stack([o[1] for o in out])

  selected, violation = jax.lax.map(one_sem, jax.random.split(seed_key, c.num_sems))
  flat = lambda a: jnp.moveaxis(a, 1, 0).reshape(len(c.train_env_counts), -1)
  return flat(selected), flat(violation)


def loglog_fit(ts, rates, floor: float = 1e-4) -> tuple[float, float]:
  """rate ≈ C·T^slope by least squares on log(max(rate, floor)); returns (slope, C)."""
  slope, intercept = np.polyfit(np.log(ts), np.log(np.maximum(rates, floor)), 1)
  return float(slope), float(np.exp(intercept))


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  frozen = ml_collections.FrozenConfigDict(c)
  seed_keys = ctx.seed_keys("sems", c.num_seeds)
  ts = np.asarray(c.train_env_counts, float)
  rates, selected_fraction = {}, {}
  meter = ctx.progress("dimensions", len(c.dims))
  for i, d in enumerate(c.dims):
    def compute(d=d):
      outs = [_selected_and_violations(k, d=d, c=frozen) for k in seed_keys]
      sel = np.stack([np.asarray(o[0]) for o in outs])  # (seeds, T, n)
      vio = np.stack([np.asarray(o[1]) for o in outs])
      rate = (sel * vio).sum(-1) / np.maximum(sel.sum(-1), 1)
      return {"rate": rate, "selected": sel.mean(-1)}
    result = ctx.stage(f"d{d}", compute)
    rates[d], selected_fraction[d] = result["rate"], result["selected"]
    meter.update(i + 1, f"d={d}: rate(T={c.train_env_counts[0]})="
                        f"{rates[d][:, 0].mean():.4f} → rate(T={c.train_env_counts[-1]})="
                        f"{rates[d][:, -1].mean():.4f}")

  measured, fits = {}, {}
  for d in c.dims:
    slopes = [loglog_fit(ts, r)[0] for r in rates[d]]
    fits[d] = loglog_fit(ts, rates[d].mean(0))
    measured[f"slope_d{d}"] = np.asarray(slopes)
    for j, t in enumerate(c.train_env_counts):
      if t in (c.train_env_counts[0], 100, c.train_env_counts[-1]):
        measured[f"violation_d{d}_T{t}"] = rates[d][:, j]
  d_lo, d_hi = min(c.dims), max(c.dims)
  measured["violation_excess_dmax_vs_dmin"] = rates[d_hi].mean(1) - rates[d_lo].mean(1)
  measured["max_loglog_slope_mean_rate"] = max(fits[d][0] for d in c.dims)
  details = {"train_env_counts": list(c.train_env_counts),
             "mean_violation_rate": {str(d): rates[d].mean(0) for d in c.dims},
             "selected_fraction": {str(d): selected_fraction[d].mean(0) for d in c.dims},
             "loglog_fit_slope_C": {str(d): fits[d] for d in c.dims}}
  ctx.save_figure(plot(c, ts, rates, fits))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, ts, rates, fits):
  fig, (ax,) = figures.panels(1, width=6.0, height=4.2)
  for d in c.dims:
    mean, std = rates[d].mean(0), rates[d].std(0)
    line = ax.errorbar(ts, np.maximum(mean, 1e-4), std, marker="o", label=f"d = {d}")
    slope, const = fits[d]
    ax.plot(ts, const * ts**slope, ls="--", color=line[0].get_color(), lw=0.8,
            label=f"fit T^{slope:.2f}")
  ax.set(xscale="log", yscale="log", xlabel="training environments T",
         ylabel="2ε-violation rate on unseen environments",
         title=f"ε-invariant selection, ε = {c.epsilon}")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, which="both")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="pac_invariance", get_config=configs.get_config, run=run, quick=configs.quick,
    validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
