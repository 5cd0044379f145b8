"""Rep4Ex: the linear-invariance MMR (vs NumPy), the autoencoder loss's value and gradient,
affine R², the simulator's interventional mean, the control function (closed form and
confounding removal)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.spatial.distance import pdist, squareform

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


def _np_linear_invariance_mmr(phi, a, bandwidth_factor=0.5):
  """NumPy transcription: standardised least-squares residuals of φ on [A, 1], Gaussian
  kernel with σ = factor · √median_{i<j}‖a_i − a_j‖², unbiased MMR (i ≠ j)."""
  design = np.concatenate([a, np.ones((len(a), 1))], 1)
  coef, *_ = np.linalg.lstsq(design, phi, rcond=None)
  r = (phi - design @ coef) / (phi.std(0) + 1e-6)
  sq = pdist(a, "sqeuclidean")
  kernel = np.exp(-squareform(sq) / (2 * (bandwidth_factor**2) * np.median(sq)))
  gram = (r @ r.T) * kernel
  n = len(a)
  return (gram.sum() - np.trace(gram)) / (n * (n - 1))


def _nonlinear_in_a(n=200, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.uniform(-1, 1, (n, 2))
  phi = np.stack([np.sin(3 * a[:, 0]) + 0.3 * a[:, 1], np.cos(3 * a[:, 1])], 1)
  return a, phi + 0.1 * rng.normal(size=phi.shape)


def test_linear_invariance_mmr_matches_numpy_and_ignores_scale():
  """MMR of the standardised residuals of φ's affine fit on A against a NumPy double sum
  (float64), positive for E[φ | A] far from affine, and invariant to a positive
  rescaling and a shift of each coordinate of φ (the constraint cannot be met by
  shrinking φ).

  Catches: the biased V-statistic (``unbiased=False``), dropping the standardisation
  ``/ (features.std(0) + 1e-6)``, the full median heuristic (bandwidth factor 1), and
  residuals of φ itself instead of its affine fit."""
  a, phi = _nonlinear_in_a()
  with jax.enable_x64(True):
    mmr = jax.jit(rep4ex.linear_invariance_mmr)
    value = float(mmr(jnp.asarray(phi), jnp.asarray(a)))
    rescaled = float(mmr(jnp.asarray(phi * np.array([0.05, 40.0]) + np.array([5.0, -2.0])),
                         jnp.asarray(a)))
  assert value == pytest.approx(_np_linear_invariance_mmr(phi, a), rel=1e-6)
  assert value > 0.05
  assert rescaled == pytest.approx(value, rel=1e-4)


def test_autoencoder_loss_value_and_gradient_carry_the_weighted_mmr():
  """L(θ; λ) − L(θ; 0) = λ · MMR(φ_θ(X), A) with the NumPy MMR, and its directional
  derivative along a random parameter direction equals a central finite difference of
  λ · MMR_NumPy (float64), on inputs that are a nonlinear function of A (so MMR > 0).

  Catches: dropping the MMR term from the autoencoder loss (difference 0), a
  ``stop_gradient`` on the constraint (the MMR is reported but does not train φ), and a
  ``stop_gradient`` on the batch std that standardises the residuals."""
  rng = np.random.default_rng(2)
  a = rng.uniform(-1, 1, (64, 2))
  x = np.concatenate([np.sin(2 * a), a**2, a[:, :1] * a[:, 1:], a[:, :1]], 1)
  model = rep4ex.Autoencoder(2, x.shape[1], 8)
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: p.astype(jnp.float64),
                          jax.jit(model.init)(jax.random.PRNGKey(3), jnp.asarray(x[:1])))
    loss_fn = rep4ex.autoencoder_loss_fn(model)
    batch = {"x": jnp.asarray(x), "a": jnp.asarray(a)}

    def penalty(p):  # L(θ; λ = 2) − L(θ; 0)
      return (loss_fn(p, {**batch, "mmr_weight": 2.0}, None)[0]
              - loss_fn(p, {**batch, "mmr_weight": 0.0}, None)[0])

    encode = jax.jit(lambda p: model.apply(p, jnp.asarray(x), method=rep4ex.Autoencoder.encode))

    def reference(p):
      return 2.0 * _np_linear_invariance_mmr(np.asarray(encode(p)), a)

    value, grads = jax.jit(jax.value_and_grad(penalty))(params)
    assert float(value) == pytest.approx(reference(params), rel=1e-6)
    assert float(value) > 1e-3
    leaves, treedef = jax.tree.flatten(params)
    direction = jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=l.shape)) for l in leaves])
    h = 1e-5
    moved = lambda s: jax.tree.map(lambda p, d: p + s * h * d, params, direction)
    finite_difference = (reference(moved(1.0)) - reference(moved(-1.0))) / (2 * h)
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads),
                                                         jax.tree.leaves(direction)))
  assert abs(finite_difference) > 1e-3
  assert analytic == pytest.approx(finite_difference, rel=1e-5)


class _KnownOutcome(rep4ex.AdditiveOutcome):
  """ν(φ) = φ·b + φ₁², κ(v) = v·c: the additive outcome model with closed-form parts."""

  def setup(self):
    self.nu = lambda phi: (phi @ jnp.array([1.0, -2.0]) + phi[..., 0] ** 2)[..., None]
    self.kappa = lambda v: (v @ jnp.array([0.5, 3.0]))[..., None]


def test_control_function_prediction_matches_closed_form():
  """With ν(φ) = φ·b + φ₁² and κ(v) = v·c, μ = Ŵᵀ[a; 1] and V̂ with mean v̄:
      Ê[Y | do(a)] = μ·b + v̄·b + μ₁² + 2μ₁v̄₁ + mean V̂₁² + v̄·c,
  and the fitted model is ν(φ) + κ(V̂). V̂ is deliberately not centred.

  Catches: the plug-in ν(Ŵᵀ[a; 1]) instead of averaging ν over μ + V̂_i (loses the
  variance term), dropping the κ average, and dropping κ(V̂) from the model's output."""
  model = _KnownOutcome()
  v_hat = 0.3 + 0.7 * jax.random.normal(jax.random.PRNGKey(4), (50, 2))
  w_hat = jnp.array([[1.5, 0.2], [-0.4, 1.0], [0.3, -0.6]])
  actions = jnp.array([[2.0, -2.0], [0.5, 0.5], [-3.0, 1.0]])
  b, c = np.array([1.0, -2.0]), np.array([0.5, 3.0])
  v, mu = np.asarray(v_hat, np.float64), np.c_[np.asarray(actions), np.ones(3)] @ np.asarray(w_hat)
  v_bar = v.mean(0)
  expected = (mu @ b + v_bar @ b + mu[:, 0] ** 2 + 2 * mu[:, 0] * v_bar[0]
              + np.mean(v[:, 0] ** 2) + v_bar @ c)
  np.testing.assert_allclose(rep4ex.predict_interventional(model, {}, w_hat, v_hat, actions),
                             expected, rtol=1e-5)
  phi = np.asarray(v_hat)[::-1]
  np.testing.assert_allclose(model.apply({}, jnp.asarray(phi), v_hat),
                             phi @ b + phi[:, 0] ** 2 + v @ c, rtol=1e-5)


def test_control_function_removes_hidden_confounding():
  """Stage 2 with the oracle representation φ = Z = A + V and V̂ its affine residuals:
  Y = Z₁ + 0.3 Z₂² + 0.8 (V₁ − V₂) + noise, so E[Y | do(a)] = a₁ + 0.3 (a₂² + σ²).
  The additive model fitted by ``control_function_loss_fn`` predicts it within 0.15,
  while least squares of Y on a quadratic in Z alone (no control function) is off
  by more than 0.3 (the confounding the test needs).

  Catches: dropping κ(V̂) from ``AdditiveOutcome.__call__`` (stage 2 then fits the
  confounded regression) and a control function of φ instead of V̂."""
  n = 1000
  k_a, k_v, k_u = jax.random.split(jax.random.PRNGKey(5), 3)
  a = jax.random.uniform(k_a, (n, 2), minval=-1.0, maxval=1.0)
  v = 0.5 * jax.random.normal(k_v, (n, 2))
  z = a + v
  y = z[:, 0] + 0.3 * z[:, 1] ** 2 + 0.8 * (v[:, 0] - v[:, 1]) + 0.2 * jax.random.normal(k_u, (n,))
  actions = jnp.array([[0.7, -0.7], [-0.7, 0.7], [0.5, 0.5], [0.0, 0.8]])
  truth = np.asarray(actions[:, 0] + 0.3 * (actions[:, 1] ** 2 + 0.25))
  model = rep4ex.AdditiveOutcome(16)
  loss_fn = rep4ex.control_function_loss_fn(model)
  optimizer = optax.adam(1e-2)

  @jax.jit
  def fit_and_predict(z, a, y):
    w_hat, v_hat = rep4ex.affine_fit(z, a), rep4ex.affine_residuals(z, a)
    batch = {"phi": z, "v_hat": v_hat, "y": y}
    params = model.init(jax.random.PRNGKey(6), z, v_hat)

    def step(carry, _):
      p, s = carry
      updates, s = optimizer.update(jax.grad(lambda q: loss_fn(q, batch, None)[0])(p), s, p)
      return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, 300)
    return rep4ex.predict_interventional(model, params, w_hat, v_hat, actions)

  error = np.abs(np.asarray(fit_and_predict(z, a, y)) - truth).max()
  zn, an = np.asarray(z, np.float64), np.asarray(actions, np.float64)
  quad = lambda q: np.stack([np.ones(len(q)), q[:, 0], q[:, 1], q[:, 0] ** 2, q[:, 1] ** 2,
                             q[:, 0] * q[:, 1]], 1)
  coef, *_ = np.linalg.lstsq(quad(zn), np.asarray(y, np.float64), rcond=None)
  v_res = zn - np.c_[np.asarray(a), np.ones(n)] @ np.linalg.lstsq(
      np.c_[np.asarray(a), np.ones(n)], zn, rcond=None)[0]
  confounded = np.array([np.mean(quad(act + v_res) @ coef) for act in an])
  assert np.abs(confounded - truth).max() > 0.3
  assert error < 0.15, error
