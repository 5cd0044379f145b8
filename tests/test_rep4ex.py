"""Rep4Ex: the linear-invariance MMR, affine R², the simulator's interventional mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.causal import rep4ex


def _data(n=512, seed=0):
  scm = rep4ex.random_scm(jax.random.PRNGKey(seed))
  return scm, rep4ex.sample(jax.random.PRNGKey(seed + 1), scm, n)


def test_mmr_vanishes_for_affine_representation_and_not_for_cubic():
  _, d = _data(1500)
  affine = d.z @ jnp.array([[1.0, 0.3], [-0.5, 2.0]]) + 1.0
  small = float(rep4ex.linear_invariance_mmr(affine, d.a))
  large = float(rep4ex.linear_invariance_mmr(d.z**3, d.a))
  assert large > 0.002 and abs(small) < 0.25 * large, (small, large)


def test_affine_r2_is_one_for_affine_maps_and_lower_for_cubes():
  _, d = _data()
  assert float(rep4ex.affine_r2(d.z @ jnp.array([[2.0, 1.0], [0.0, -1.0]]) - 3.0, d.z)) > 1 - 1e-5
  assert float(rep4ex.affine_r2(d.z**3, d.z)) < 0.95


def test_affine_residuals_are_orthogonal_to_actions():
  _, d = _data()
  r = rep4ex.affine_residuals(d.z, d.a)
  design = jnp.concatenate([d.a, jnp.ones((d.a.shape[0], 1))], 1)
  np.testing.assert_allclose(np.asarray(design.T @ r), 0.0, atol=1e-2)


def test_interventional_mean_matches_closed_form():
  """E[2 sin(μ₁ + V₁) + 0.3 (μ₂ + V₂)²] = 2 sin(μ₁) e^{−σ²/2} + 0.3 (μ₂² + σ²), μ = M₀a."""
  scm, _ = _data()
  actions = jnp.array([[2.0, -1.5], [0.0, 0.0], [-2.0, 2.0]])
  mc = rep4ex.interventional_mean(jax.random.PRNGKey(9), scm, actions, 200_000)
  mu = actions @ scm.mixing.T
  s2 = scm.noise_std**2
  exact = 2 * jnp.sin(mu[:, 0]) * jnp.exp(-s2 / 2) + 0.3 * (mu[:, 1] ** 2 + s2)
  np.testing.assert_allclose(np.asarray(mc), np.asarray(exact), atol=0.03)


def test_observation_map_is_injective_locally():
  scm, d = _data(50)
  jac = jax.vmap(jax.jacfwd(lambda z: rep4ex.observe(scm, z[None])[0]))(d.z)
  assert (np.linalg.matrix_rank(np.asarray(jac), tol=1e-4) == 2).all()


def test_control_function_prediction_with_known_components():
  """With ν, κ ≡ the model's MLPs, the do-prediction equals the explicit double average."""
  model = rep4ex.AdditiveOutcome(8)
  v = jax.random.normal(jax.random.PRNGKey(0), (30, 2))
  params = model.init(jax.random.PRNGKey(1), v, v)
  w_hat = jnp.array([[1.0, 0.5], [0.2, -1.0], [0.1, 0.3]])
  actions = jnp.array([[2.0, -2.0], [0.5, 0.5]])
  pred = rep4ex.predict_interventional(model, params, w_hat, v, actions)
  for i, a in enumerate(actions):
    mean_phi = jnp.concatenate([a, jnp.ones(1)]) @ w_hat
    nu = model.apply(params, mean_phi + v, method=rep4ex.AdditiveOutcome.structural).mean()
    kappa = model.apply(params, v, method=rep4ex.AdditiveOutcome.control).mean()
    assert float(pred[i]) == pytest.approx(float(nu + kappa), rel=1e-5)


def test_stage_losses_are_reconstruction_plus_weighted_mmr_and_outcome_mse():
  """autoencoder_loss_fn = reconstruction + λ·MMR with λ from the batch;
  control_function_loss_fn = mean squared error of ν(φ) + κ(V̂)."""
  _, d = _data(64)
  model = rep4ex.Autoencoder(2, d.x.shape[1], 8)
  params = model.init(jax.random.PRNGKey(2), d.x[:1])
  loss_fn = rep4ex.autoencoder_loss_fn(model)
  batch = {"x": d.x, "a": d.a}
  loss0, m0 = loss_fn(params, {**batch, "mmr_weight": 0.0}, None)
  loss3, m3 = loss_fn(params, {**batch, "mmr_weight": 3.0}, None)
  phi, recon = model.apply(params, d.x)
  assert float(loss0) == pytest.approx(float(jnp.mean(jnp.sum((recon - d.x) ** 2, -1))),
                                       rel=1e-6)
  assert float(m0["mmr"]) == pytest.approx(float(rep4ex.linear_invariance_mmr(phi, d.a)),
                                           rel=1e-5, abs=1e-8)
  assert float(loss3) == pytest.approx(float(m3["reconstruction"] + 3.0 * m3["mmr"]), rel=1e-6)
  outcome = rep4ex.AdditiveOutcome(8)
  out_params = outcome.init(jax.random.PRNGKey(3), d.z, d.z)
  mse, _ = rep4ex.control_function_loss_fn(outcome)(
      out_params, {"phi": d.z, "v_hat": d.z, "y": d.y}, None)
  by_hand = jnp.mean((outcome.apply(out_params, d.z, d.z) - d.y) ** 2)
  assert float(mse) == pytest.approx(float(by_hand), rel=1e-6)
