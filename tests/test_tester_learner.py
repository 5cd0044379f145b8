"""Tester-learner for halfspaces: the surrogate and its sphere gradient, the
testers' size and power, the samplers' moments and noise, and PSGD through ``fit``."""
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from jaxrep.core import fit, tasks
from jaxrep.theory import tester_learner as tl

CONFIG = tl.TesterConfig(sigma=0.1, learning_rate=0.05, num_steps=600, batch_size=256,
                         record_every=100, band_width=0.5, moment_degree=4,
                         label_tolerance=0.5 / 6, level=0.01)


def test_smoothed_ramp_is_a_c1_ramp():
  sigma = 0.2
  t = jnp.linspace(-0.5, 0.5, 2001)
  values = tl.smoothed_ramp(t, sigma)
  assert float(values[t <= -sigma].max()) == 0.0 and float(values[t >= sigma].min()) == 1.0
  assert abs(float(tl.smoothed_ramp(jnp.zeros(()), sigma)) - 0.5) < 1e-7
  assert bool(jnp.all(jnp.diff(values) >= 0))
  slope = jax.vmap(jax.grad(lambda s: tl.smoothed_ramp(s, sigma)))(t)
  # continuous derivative: steps ≤ max|ℓ″|·Δt = 6/(2σ)²·5e-4 ≈ 0.02 (a kink jumps 1/(2σ))
  assert float(jnp.max(jnp.abs(jnp.diff(slope)))) < 0.05
  assert abs(float(slope.max()) - 1.5 / (2 * sigma)) < 1e-3     # S'(½) = 3/2


def test_sphere_gradient_is_tangent_and_matches_finite_differences():
  with jax.enable_x64(True):
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (3000, 5), dtype=jnp.float64)
    y = jnp.sign(x[:, 0] + 0.3 * x[:, 1])
    w = jnp.asarray([0.6, -0.2, 0.5, 0.3, 0.1])
    w = w / jnp.linalg.norm(w)
    g = tl.sphere_gradient(w, x, y, 0.3)
    assert abs(float(g @ w)) < 1e-12
    for j in range(3):
      v = jax.random.normal(jax.random.fold_in(key, j), (5,), dtype=jnp.float64)
      v = v - (v @ w) * w
      v = v / jnp.linalg.norm(v)
      h = 1e-5
      along = lambda s: tl.surrogate_loss(jnp.cos(s) * w + jnp.sin(s) * v, x, y, 0.3)
      fd = (along(h) - along(-h)) / (2 * h)
      np.testing.assert_allclose(float(g @ v), float(fd), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(tl.surrogate_loss(3.7 * w, x, y, 0.3),
                               tl.surrogate_loss(w, x, y, 0.3), rtol=1e-12)


def test_orthonormal_complement():
  for seed, flip in [(0, 1.0), (1, -1.0)]:
    w = jax.random.normal(jax.random.PRNGKey(seed), (7,))
    w = w.at[0].set(flip * jnp.abs(w[0]))
    q = tl.orthonormal_complement(w)
    assert q.shape == (7, 6)
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(q.T @ w, np.zeros(6), atol=1e-5)


def test_band_mass_test_size_and_power():
  keys = jax.random.split(jax.random.PRNGKey(2), 400)
  level = 0.05
  rejects = jax.vmap(lambda k: tl.band_mass_test(jax.random.normal(k, (5000,)), 0.5, level)[1])
  rate = float(jnp.mean(rejects(keys)))
  lo, hi = scipy_stats.binom.ppf([0.001, 0.999], 400, level) / 400
  assert lo <= rate <= hi, rate
  piled = jnp.concatenate([jax.random.normal(keys[0], (4750,)), jnp.zeros(250)])
  assert bool(tl.band_mass_test(piled, 0.5, level)[1])


def test_massart_labels_flip_at_the_stated_rate():
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(key, (200000, 4))
  w_star, u = jnp.eye(4)[0], jnp.eye(4)[1]
  y = tl.massart_labels(jax.random.fold_in(key, 1), x, w_star, u, 0.3)
  flipped = y != jnp.where(x[:, 0] >= 0, 1.0, -1.0)
  noisy = x[:, 1] > 0
  assert abs(float(flipped[noisy].mean()) - 0.3) < 0.005
  assert float(flipped[~noisy].mean()) == 0.0


def test_band_barrier_matches_two_moments_and_traps_the_far_hemisphere():
  key = jax.random.PRNGKey(4)
  w_star = jnp.ones(6) / math.sqrt(6)
  u = jnp.asarray([1, -1, 0, 0, 0, 0.0]) / math.sqrt(2)
  x, y = tl.band_barrier_sample(key, 200000, w_star, u, 0.3, 0.05)
  np.testing.assert_allclose(x.mean(0), np.zeros(6), atol=0.01)
  np.testing.assert_allclose(jnp.cov(x.T), np.eye(6), atol=0.015)
  on_barrier = jnp.abs(jnp.abs(x @ w_star) - 1) < 1e-6
  on_barrier &= jnp.linalg.norm(x - (x @ w_star)[:, None] * w_star, axis=1) < 1e-6
  assert abs(float(on_barrier.mean()) - 0.05) < 0.003
  # every barrier point is an error of any w on the w* hemisphere, and of none on the other
  w_near = w_star + 0.3 * u
  assert float(jnp.mean(jnp.sign(x[on_barrier] @ w_near) != y[on_barrier])) == 1.0
  assert float(jnp.mean(jnp.sign(x[on_barrier] @ -w_near) != y[on_barrier])) == 0.0


def _gaussian_massart(key, n, d):
  x = tl.gaussian_marginal(key, n, d)
  w_star, u = jnp.eye(d)[0], jnp.eye(d)[1]
  return x, tl.massart_labels(jax.random.fold_in(key, 1), x, w_star, u, 0.3), w_star


def test_tester_learner_accepts_gaussian_massart_and_rejects_the_cube():
  d = 5
  x, y, w_star = _gaussian_massart(jax.random.PRNGKey(5), 16000, d)
  out = tl.tester_learner(jax.random.PRNGKey(6), x, y, CONFIG)
  assert float(jnp.arccos(jnp.clip(out.w_hat @ w_star, -1, 1))) < 0.15
  assert bool(out.accept)
  cube = tl.uniform_cube_marginal(jax.random.PRNGKey(7), 16000, d)
  y_cube = jnp.where(cube[:, 0] >= 0, 1.0, -1.0)
  out_cube = tl.tester_learner(jax.random.PRNGKey(6), cube, y_cube, CONFIG)
  assert bool(out_cube.reject_moments) and not bool(out_cube.accept)


def test_label_aware_test_rejects_a_rotated_halfspace():
  d = 5
  x, y, w_star = _gaussian_massart(jax.random.PRNGKey(8), 16000, d)
  reject_near = tl.band_conditional_tests(x, y, w_star, CONFIG)[1]
  rotated = jnp.cos(0.5) * w_star + jnp.sin(0.5) * jnp.eye(d)[2]
  free, aware, deviation = tl.band_conditional_tests(x, y, rotated, CONFIG)
  assert not bool(reject_near)
  assert bool(aware) and not bool(free) and float(deviation) > CONFIG.label_tolerance


def test_psgd_task_is_projected_sgd_on_the_sphere():
  """fit(psgd_task) equals a hand-written PSGD loop on the same minibatches, its
  iterates are unit vectors, and the candidates are every record_every-th one."""
  d, n, steps = 4, 500, 6
  x, y, _ = _gaussian_massart(jax.random.PRNGKey(9), n, d)
  config = CONFIG._replace(num_steps=steps, record_every=3, batch_size=32, sigma=0.3)
  key = jax.random.PRNGKey(10)
  result = fit.fit(tl.psgd_task(config), {"key": key[None], "x": x[None], "y": y[None]},
                   steps, progress=False)
  iterates = result.curves["w"][0]
  key_init, key_batches = jax.random.split(key)
  w = jax.random.normal(key_init, (d,))
  w = w / jnp.linalg.norm(w)
  for t in range(steps):
    idx = tasks.minibatch_indices(key_batches, t, n, config.batch_size, replace=True)
    g = jax.grad(tl.surrogate_loss)(w, x[idx], y[idx], config.sigma)
    w = w - config.learning_rate * (g - (g @ w) * w)
    w = w / jnp.linalg.norm(w)
    np.testing.assert_allclose(iterates[t], w, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(iterates, axis=-1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(tl.candidates(iterates, 3), iterates[[2, 5]])
