r"""Rep4Ex: intervention extrapolation with a linear-invariance (MMR) autoencoder.

Paper: Saengkyongam, Rosenfeld, Ravikumar, Pfister & Peters, "Identifying
Representations for Intervention Extrapolation", ICLR 2024.

Command, runtime and expected result: ``experiments/configs/rep4ex.py``.

Setup (the paper's synthetic design, our constants): A ~ U[−1, 1]², Z = M₀A + V
with V ~ N(0, 0.5² I), M₀ = Q·diag(U[1, 2]); X = g₀(Z) ∈ R¹⁰ with g₀ a random
injective 2-hidden-layer leaky-ReLU map; Y = 2 sin(Z₁) + 0.3 Z₂² + U with
U = 0.8 (V₁ − V₂) + 0.2 ε (confounded with Z). Test actions: the 9×9 grid on
[−1.5, 1.5]² minus the training box [−1, 1]² (56 points; the notes suggest [−3, 3]²,
where M₀a* would leave the region the training Z covers, so ν would have to
extrapolate in Z-space, which no MLP does).
Both pipelines (λ = ``mmr_weight`` and λ = 0) share data, seeds and every other
hyperparameter and train together: each stage is one ``fit`` with run axes
(seeds, λ) — the autoencoder (``rep4ex.autoencoder_loss_fn``, λ a per-run
hyperparameter), then the control-function outcome model
(``rep4ex.control_function_loss_fn``) on the frozen φ. Minibatches are drawn
without replacement within a step (a uniform random subset of the sample),
as in the old code; since the migration the minibatch key is the second half
of the stage key's split rather than the stage key itself (seed noise). Hyperparameters
(widths 32, Adam 1e-3, λ = 100, 3,000 autoencoder / 2,000 outcome steps at batch
512) were set once before the first default run, not tuned on its result. Design
pilot (before any default run): with V ~ N(0, I), M₀ singular values in [0.5, 1] and
the full median-heuristic kernel, MMR could not tell φ = Z from φ = Z³ at batch
256 (both ≈ −0.006), i.e. the constraint carried no information; A's effect on Z was
raised relative to V and the kernel narrowed to half the median distance, where
MMR(Z) ≈ −0.0006 and MMR(Z³) ≈ 0.004 at batch 512.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.configs import rep4ex as configs
from jaxrep.causal import rep4ex
from jaxrep.core import experiment, figures, tasks

LABELS = ("Rep4Ex (MMR)", "AE + CF, no MMR")


def action_grid(c) -> tuple[np.ndarray, np.ndarray]:
  """All grid actions (m, 2) and the mask of those outside [−1, 1]²."""
  g = np.linspace(-c.grid_max, c.grid_max, c.grid_size)
  actions = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
  return actions.astype(np.float32), np.abs(actions).max(1) > 1 + 1e-6


def make_data(seed_key, actions, c) -> dict:
  """One seed's SCM, standardised training/test observations, the true
  E[Y | do(a)] on the grid and the stage keys."""
  k_scm, k_train, k_test, k_truth, k_ae, k_out, k_v = jax.random.split(seed_key, 7)
  scm = rep4ex.random_scm(k_scm, x_dim=c.x_dim)
  data, test = rep4ex.sample(k_train, scm, c.n_train), rep4ex.sample(k_test, scm, c.n_test)
  x_mean, x_std = data.x.mean(0), data.x.std(0) + 1e-6
  return {"x": (data.x - x_mean) / x_std, "a": data.a, "y": data.y,
          "x_test": (test.x - x_mean) / x_std, "z_test": test.z,
          "truth": rep4ex.interventional_mean(k_truth, scm, actions),
          "k_ae": k_ae, "k_out": k_out, "k_v": k_v}


def control_function_inputs(model, params, d) -> dict:
  """Standardised φ(X), Ŵ, V̂ = φ − [A, 1]Ŵ and the affine R²(φ(X_test) → Z_test)."""
  encode = lambda x: model.apply(params, x, method=rep4ex.Autoencoder.encode)
  phi = encode(d["x"])
  phi = (phi - phi.mean(0)) / (phi.std(0) + 1e-6)
  return {"phi": phi, "w_hat": rep4ex.affine_fit(phi, d["a"]),
          "v_hat": rep4ex.affine_residuals(phi, d["a"]),
          "r2": rep4ex.affine_r2(encode(d["x_test"]), d["z_test"])}


def pipelines(ctx: experiment.Context, c, actions) -> dict:
  """Both pipelines × seeds: predictions and truth on the grid, R², curves."""
  data = jax.jit(jax.vmap(lambda k: make_data(k, actions, c)))(
      ctx.seed_keys("rep4ex", c.num_seeds))
  pair = lambda a: jnp.repeat(a[:, None], 2, axis=1)          # (seeds, λ, ...)
  both = lambda f: jax.jit(jax.vmap(jax.vmap(f)))
  optimizer = optax.adam(c.learning_rate)
  model = rep4ex.Autoencoder(2, c.x_dim, c.width)
  ae = ctx.fit("autoencoder", tasks.minibatch_task(
      lambda key, rows: model.init(key, rows["x"]), rep4ex.autoencoder_loss_fn(model),
      optimizer, batch_size=c.batch_size, replace=False),
      {"key": pair(data["k_ae"]), "examples": {"x": pair(data["x"]), "a": pair(data["a"])},
       "hparams": {"mmr_weight": jnp.tile(jnp.asarray([c.mmr_weight, 0.0]),
                                          (c.num_seeds, 1))}},
      c.ae_steps, run_axes=2)
  cf = both(lambda p, d: control_function_inputs(model, p, d))(
      ae.state.params, jax.tree.map(pair, data))
  outcome = rep4ex.AdditiveOutcome(c.width)
  out = ctx.fit("outcome", tasks.minibatch_task(
      lambda key, rows: outcome.init(key, rows["phi"], rows["v_hat"]),
      rep4ex.control_function_loss_fn(outcome), optimizer, batch_size=c.batch_size,
      replace=False),
      {"key": pair(data["k_out"]), "examples": {"phi": cf["phi"], "v_hat": cf["v_hat"],
                                                "y": pair(data["y"])}},
      c.outcome_steps, run_axes=2)

  def predict(params, w_hat, v_hat, k_v):
    v_sub = v_hat[jax.random.choice(k_v, c.n_train, (c.num_v_samples,), replace=False)]
    return rep4ex.predict_interventional(outcome, params, w_hat, v_sub, jnp.asarray(actions))

  prediction = both(predict)(out.state.params, cf["w_hat"], cf["v_hat"], pair(data["k_v"]))
  return {"pred": np.asarray(prediction), "truth": np.asarray(pair(data["truth"])),
          "r2": np.asarray(cf["r2"]), "mmr": ae.curves["mmr"][..., -100:].mean(-1),
          "reconstruction": ae.curves["reconstruction"], "outcome_mse": out.curves["mse"]}


def run(c: ml_collections.ConfigDict, ctx: experiment.Context) -> experiment.Outcome:
  actions, outside = action_grid(c)
  out = ctx.stage("pipelines", lambda: pipelines(ctx, c, actions))
  sq_err = (out["pred"] - out["truth"]) ** 2  # (seeds, 2, m)
  mse_out = sq_err[..., outside].mean(-1)
  mse_in = sq_err[..., ~outside].mean(-1)
  ratio = mse_out[:, 0] / mse_out[:, 1]
  ratio_of_means = float(mse_out[:, 0].mean() / mse_out[:, 1].mean())
  measured = {
      "oos_mse_rep4ex": mse_out[:, 0], "oos_mse_no_mmr": mse_out[:, 1],
      "oos_mse_ratio": ratio, "oos_mse_ratio_of_means": ratio_of_means,
      "affine_r2_rep4ex": out["r2"][:, 0], "affine_r2_no_mmr": out["r2"][:, 1],
      "in_support_mse_rep4ex": mse_in[:, 0], "in_support_mse_no_mmr": mse_in[:, 1],
      "final_mmr_rep4ex": out["mmr"][:, 0], "final_mmr_no_mmr": out["mmr"][:, 1],
  }
  details = {"num_outside_actions": int(outside.sum())}
  ctx.save_figure(plot(c, actions, out))
  return experiment.Outcome(measured=measured, details=details)


def plot(c, actions, out):
  fig, axes = figures.panels(3)
  row = np.isclose(actions[:, 1], 0.0)
  order = np.argsort(actions[row, 0])
  a1 = actions[row, 0][order]
  axes[0].plot(a1, out["truth"][0, 0, row][order], "k-", lw=2, label="truth E[Y|do(a)]")
  axes[0].plot(a1, out["pred"][0, 0, row][order], "o-", label=LABELS[0])
  axes[0].plot(a1, out["pred"][0, 1, row][order], "s--", label=LABELS[1])
  axes[0].axvspan(-1, 1, color="gray", alpha=0.15, label="training support")
  axes[0].set(xlabel="a₁ (a₂ = 0)", ylabel="E[Y | do(a)]", title="seed 0")
  axes[0].legend(fontsize=8)
  err = np.abs(out["pred"][:, 0] - out["truth"][:, 0]).mean(0).reshape(c.grid_size, c.grid_size)
  im = axes[1].imshow(err.T, origin="lower", extent=[-c.grid_max, c.grid_max] * 2)
  axes[1].plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "w--")
  axes[1].set(xlabel="a₁", ylabel="a₂", title="Rep4Ex |error| (mean over seeds)")
  fig.colorbar(im, ax=axes[1])
  curves = {f"{label}: AE reconstruction": out["reconstruction"][:, i]
            for i, label in enumerate(LABELS)}
  curves.update({f"{label}: outcome MSE": out["outcome_mse"][:, i]
                 for i, label in enumerate(LABELS)})
  figures.plot_curves(axes[2], curves, ylabel="training loss (batch)",
                      title="both stages, both pipelines")
  return fig


EXPERIMENT = experiment.Experiment(
    paper_id="rep4ex", get_config=configs.get_config, run=run,
    quick=configs.quick, validate=configs.validate)

if __name__ == "__main__":
  experiment.main(EXPERIMENT)
