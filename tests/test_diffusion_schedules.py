"""Noise processes, parameterizations, the denoising loss and EMA (jaxrep.diffusion)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.core import fit as fit_lib
from jaxrep.core import parallel, tasks
from jaxrep.diffusion import ema, parameterization as param, schedules

PROCESSES = [schedules.VPLinear(), schedules.VPCosine(), schedules.EDM(sigma_max=20.0),
             schedules.LinearInterpolant()]
IDS = ["vp_linear", "vp_cosine", "edm", "interpolant"]
TIMES = jnp.array([0.05, 0.3, 0.6, 0.9])


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_forward_marginals_match_closed_form(process):
  """x_t | x₀ has mean α(t) x₀ and variance σ(t)² (4 std errors of the estimates)."""
  n, x0_value = 20000, 1.5
  x0 = jnp.full((len(TIMES), n), x0_value)
  draws = np.asarray(schedules.q_sample(process, jax.random.PRNGKey(0), x0, TIMES))
  for t, x_t in zip(TIMES, draws):
    alpha, sigma = float(process.alpha(t)), float(process.sigma(t))
    assert abs(x_t.mean() - alpha * x0_value) < 4 * sigma / np.sqrt(n)
    assert abs(x_t.var() / sigma**2 - 1) < 4 * np.sqrt(2 / n)


def test_closed_forms_of_each_schedule():
  t = np.linspace(0.01, 0.99, 50)
  vp = schedules.VPLinear.from_ddpm(1000)
  steps = np.array([10, 100, 500, 999])
  table = np.asarray(schedules.ddpm_alpha_bars(1000))[steps - 1]
  np.testing.assert_allclose(np.asarray(vp.alpha(steps / 1000.0))**2, table, rtol=0, atol=1e-3)
  cosine = schedules.VPCosine()
  f = lambda s: np.cos((s + 0.008) / 1.008 * np.pi / 2)**2
  np.testing.assert_allclose(np.asarray(cosine.alpha(t))**2, f(t) / f(0.0), rtol=1e-5)
  for process in (vp, cosine):
    np.testing.assert_allclose(process.alpha(t)**2 + process.sigma(t)**2, 1.0, atol=1e-6)
  edm = schedules.EDM()
  grid = schedules.time_grid(edm, 18)
  np.testing.assert_allclose(edm.sigma(grid)[:-1], schedules.edm_sigmas(19)[:-2], rtol=1e-5)
  np.testing.assert_allclose(edm.sigma(grid[jnp.array([0, -1])]), [80.0, 0.002], rtol=1e-5)
  np.testing.assert_allclose(edm.time_of_sigma(edm.sigma(t)), t, atol=1e-5)
  flow = schedules.LinearInterpolant()
  np.testing.assert_allclose(flow.alpha(t), 1 - t, atol=1e-7)
  np.testing.assert_allclose(flow.sigma(t), t, atol=1e-7)


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_time_derivatives_match_finite_differences(process):
  h = 1e-3
  c = schedules.coefficients(process, TIMES)
  fd = lambda f: (f(TIMES + h) - f(TIMES - h)) / (2 * h)
  np.testing.assert_allclose(c.alpha_dot, fd(process.alpha), rtol=2e-2, atol=1e-3)
  np.testing.assert_allclose(c.sigma_dot, fd(process.sigma), rtol=2e-2, atol=1e-3)


def _draw(shape=(4, 3, 2)):
  k1, k2 = jax.random.split(jax.random.PRNGKey(3))
  return jax.random.normal(k1, shape), jax.random.normal(k2, shape)


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_velocity_target_is_the_time_derivative_of_x_t(process):
  """u = α̇ x₀ + σ̇ ε = ∂x_t/∂t (central differences at fixed x₀, ε)."""
  x0, eps = _draw()
  h = 2e-3
  x_at = lambda t: schedules.q_sample(process, eps, x0, t)
  finite = (x_at(TIMES + h) - x_at(TIMES - h)) / (2 * h)
  target = param.from_x0_eps("velocity", x0, eps, schedules.coefficients(process, TIMES, x0))
  np.testing.assert_allclose(target, finite, rtol=2e-2, atol=5e-3)


@pytest.mark.parametrize("process", PROCESSES[:2], ids=IDS[:2])
def test_v_target_is_the_angular_derivative_of_x_t_for_vp(process):
  """With α = cos φ, σ = sin φ, v = α ε − σ x₀ = ∂x_t/∂φ (Salimans & Ho 2022)."""
  x0, eps = _draw()
  h = 2e-3
  x_at = lambda t: schedules.q_sample(process, eps, x0, t)
  phi = lambda t: jnp.arctan2(process.sigma(t), process.alpha(t))
  dphi = schedules.expand_time(phi(TIMES + h) - phi(TIMES - h), x0)
  finite = (x_at(TIMES + h) - x_at(TIMES - h)) / dphi
  target = param.from_x0_eps("v", x0, eps, schedules.coefficients(process, TIMES, x0))
  np.testing.assert_allclose(target, finite, rtol=1e-2, atol=5e-3)


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_conversions_round_trip(process):
  x0, eps = _draw()
  c = schedules.coefficients(process, TIMES, x0)
  x_t = schedules.q_sample(process, eps, x0, TIMES)
  for kind in param.PREDICTIONS:
    back_x0, back_eps = param.to_x0_eps(kind, param.from_x0_eps(kind, x0, eps, c), x_t, c)
    np.testing.assert_allclose(back_x0, x0, rtol=1e-4, atol=2e-4, err_msg=kind)
    np.testing.assert_allclose(back_eps, eps, rtol=1e-4, atol=2e-4, err_msg=kind)
    for other in param.PREDICTIONS:
      converted = param.convert(param.from_x0_eps(kind, x0, eps, c), kind, other, x_t, c)
      np.testing.assert_allclose(converted, param.from_x0_eps(other, x0, eps, c),
                                 rtol=1e-4, atol=3e-4, err_msg=f"{kind}->{other}")


def _gaussian_optimum(process, scale):
  """The exact x₀-denoiser for x₀ ~ N(0, scale²): E[x₀|x_t] = α s² x_t / (α² s² + σ²)."""

  def apply_fn(params, x_t, t):
    del params
    c = schedules.coefficients(process, t, x_t)
    return c.alpha * scale**2 * x_t / (c.alpha**2 * scale**2 + c.sigma**2)

  return apply_fn


@pytest.mark.parametrize("prediction", ["x0", "eps", "velocity"])
def test_denoising_loss_at_the_optimum_is_the_posterior_variance(prediction):
  """In x₀ space the loss of E[x₀|x_t] is E_t[s²σ²/(α²s²+σ²)], whatever the network
  predicts (the prediction is converted to the target's space exactly)."""
  process, scale = schedules.LinearInterpolant(t_min=0.05, t_max=0.95), 1.7
  optimum = _gaussian_optimum(process, scale)
  x = scale * jax.random.normal(jax.random.PRNGKey(0), (40000, 1))

  def loss_of(shrink):
    def apply_fn(params, x_t, t):
      c = schedules.coefficients(process, t, x_t)
      return param.convert(shrink * optimum(params, x_t, t), "x0", prediction, x_t, c)

    loss_fn = param.denoising_loss_fn(apply_fn, process, prediction=prediction, target="x0")
    return jax.jit(loss_fn)(None, {"x": x}, jax.random.PRNGKey(1))

  loss, metrics = loss_of(1.0)
  t = jnp.linspace(0.05, 0.95, 2001)
  alpha, sigma = process.alpha(t), process.sigma(t)
  expected = float(jnp.mean(scale**2 * sigma**2 / (alpha**2 * scale**2 + sigma**2)))
  assert abs(float(loss) - expected) < 0.03 * expected
  assert float(metrics["denoise_mse"]) == pytest.approx(float(loss))
  assert float(loss_of(0.7)[0]) > 1.1 * expected


def test_edm_preconditioning_with_a_zero_network_is_optimal_for_gaussian_data():
  """For x₀ ~ N(0, σ_d²), E[x₀|x_σ] = σ_d²/(σ² + σ_d²) x_σ = c_skip x_σ: F ≡ 0 is optimal."""
  edm, sigma_data = schedules.EDM(), 0.5
  denoiser = param.edm_preconditioned(lambda p, x, t: jnp.zeros_like(x), edm, sigma_data)
  x, t = jnp.ones((4, 3)), jnp.array([0.1, 0.4, 0.7, 1.0])
  sigma = edm.sigma(t)[:, None]
  np.testing.assert_allclose(denoiser(None, x, t), sigma_data**2 / (sigma**2 + sigma_data**2)
                             * x, rtol=1e-5)
  ones = param.edm_preconditioned(lambda p, x, t: jnp.ones_like(x), edm, sigma_data)
  np.testing.assert_allclose(ones(None, 0 * x, t), np.broadcast_to(
      sigma * sigma_data / np.sqrt(sigma**2 + sigma_data**2), x.shape), rtol=1e-5)


def test_label_dropout_passes_the_null_label_at_the_rate():
  seen = []

  def apply_fn(params, x_t, t, label):
    seen.append(label)
    return x_t

  loss_fn = param.denoising_loss_fn(apply_fn, schedules.VPCosine(), label_dropout=0.3,
                                    null_label=10)
  jax.jit(loss_fn)(None, {"x": jnp.zeros((4000, 2)), "label": jnp.zeros(4000, jnp.int32)},
                   jax.random.PRNGKey(0))
  labels = np.asarray(jax.jit(param.drop_labels, static_argnums=(2, 3))(
      jax.random.PRNGKey(1), jnp.zeros(4000, jnp.int32), 0.3, 10))
  assert seen[0].shape == (4000,)
  assert set(np.unique(labels)) == {0, 10}
  assert abs((labels == 10).mean() - 0.3) < 0.03
  with pytest.raises(ValueError):
    param.denoising_loss_fn(apply_fn, schedules.VPCosine(), label_dropout=0.1)


def test_edm_training_times_are_lognormal_in_sigma():
  edm = schedules.EDM()
  t = schedules.edm_lognormal_time(edm, jax.random.PRNGKey(0), (20000,))
  log_sigma = np.log(np.asarray(edm.sigma(t)))
  assert abs(log_sigma.mean() + 1.2) < 0.05 and abs(log_sigma.std() - 1.2) < 0.05


class _Denoiser(nn.Module):
  @nn.compact
  def __call__(self, x, t):
    h = jnp.concatenate([x, t[:, None]], axis=-1)
    return nn.Dense(x.shape[-1])(nn.silu(nn.Dense(32)(h)))


def test_training_on_the_core_road_carries_the_ema():
  """denoising_loss_fn + with_params_ema compose with minibatch_task and fit; the EMA
  equals a hand-written average of the parameter trajectory's last step."""
  model, process = _Denoiser(), schedules.LinearInterpolant()
  loss_fn = param.denoising_loss_fn(model.apply, process, prediction="velocity")
  optimizer = ema.with_params_ema(optax.adam(1e-2), decay=0.9)
  task = tasks.minibatch_task(lambda key, rows: model.init(key, rows["x"], jnp.zeros(1)),
                              loss_fn, optimizer, batch_size=64)
  x = jax.random.normal(jax.random.PRNGKey(0), (256, 2)) * 0.1 + 2.0
  result = fit_lib.fit(task, {"key": jax.random.split(jax.random.PRNGKey(1), 2)}, 200,
                       data={"examples": {"x": x}}, progress=False,
                       mesh=parallel.make_mesh(num_data=1, num_seed=1))
  loss = result.curves["loss"]
  assert np.all(np.isfinite(loss)) and loss[:, -20:].mean() < 0.5 * loss[:, :20].mean()
  averaged = ema.ema_params(result.state.opt_state)
  gap = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), averaged,
                     result.state.params)
  assert 0 < max(jax.tree.leaves(gap)) < 0.5
  with pytest.raises(TypeError):
    ema.ema_params(result.state.params)


def test_ema_update_is_optax_incremental_update():
  params = {"w": jnp.ones(3)}
  optimizer = ema.with_params_ema(optax.sgd(1.0), decay=0.75)
  state = optimizer.init(params)
  updates, state = optimizer.update({"w": jnp.full(3, 2.0)}, state, params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["w"], -1.0)
  np.testing.assert_allclose(ema.ema_params(state)["w"], 0.75 * 1.0 + 0.25 * -1.0)
