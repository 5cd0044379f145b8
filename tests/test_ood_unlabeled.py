"""RSS training: the closed-form inner sup vs grid searches, φ_γ ≥ ℓ and φ_γ → ℓ,
rotation invariance and gradients of the objective, the sampler and the exact
accuracy, and RSS trained through ``fit`` beating ERM."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from jaxrep.causal import robust_self_supervised as rss
from jaxrep.core import fit


def _random_cases(key, num):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  theta = jax.random.normal(k1, (num, 2)) * jax.random.uniform(k2, (num, 1), minval=0.2,
                                                               maxval=3.0)
  x = jax.random.normal(k3, (num, 2))
  y = jnp.where(jax.random.uniform(k4, (num,)) < 0.5, 1.0, -1.0)
  return theta, x, y


def test_inner_sup_matches_a_fine_line_search():
  with jax.enable_x64(True):
    theta, x, y = _random_cases(jax.random.PRNGKey(0), 60)
    deltas = jnp.linspace(0.0, 6.0, 600001)

    @jax.jit
    def gap(t, xi, yi, gamma):
      s = jnp.linalg.norm(t)
      margin = yi * (t @ xi)
      closed = rss.robust_truncated_hinge(margin, s, gamma)
      searched = jnp.max(rss.truncated_hinge(margin - s * deltas) - gamma * deltas ** 2)
      return closed - searched

    for gamma in (0.1, 1.0, 10.0):
      gaps = jax.lax.map(lambda a: gap(*a, gamma), (theta, x, y))
      # a step Δδ = 1e-5 undershoots by ≤ (slope ≤ 3)·Δδ; the search can never exceed the sup
      assert float(gaps.min()) > -1e-12 and float(gaps.max()) < 1e-4, gamma


def test_inner_sup_matches_a_grid_search_over_z_in_the_plane():
  """The 1-D reduction: sup over every z ∈ R² equals the closed form."""
  with jax.enable_x64(True):
    theta, x, y = _random_cases(jax.random.PRNGKey(1), 12)
    offsets = jnp.linspace(-2.5, 2.5, 1001)
    grid = jnp.stack(jnp.meshgrid(offsets, offsets, indexing="ij"), -1).reshape(-1, 2)

    @jax.jit
    def gap(t, xi, yi, gamma):
      z = xi + grid
      searched = jnp.max(rss.truncated_hinge(yi * (z @ t)) - gamma * jnp.sum(grid ** 2, 1))
      return rss.robust_truncated_hinge(yi * (t @ xi), jnp.linalg.norm(t), gamma) - searched

    for gamma in (0.3, 3.0):
      gaps = jax.lax.map(lambda a: gap(*a, gamma), (theta, x, y))
      # grid step 0.005: the search undershoots by at most ‖θ‖·0.005·√2 ≈ 0.02
      assert float(gaps.min()) >= -1e-9 and float(gaps.max()) < 0.025


def test_robust_loss_bounds_and_limit():
  margins = jnp.linspace(-3.0, 3.0, 601)
  s = 1.7
  plain = rss.truncated_hinge(margins)
  previous = jnp.full_like(margins, jnp.inf)
  for gamma in (0.01, 0.1, 1.0, 10.0, 1e3, 1e7):
    phi = rss.robust_truncated_hinge(margins, s, gamma)
    assert bool(jnp.all(phi >= plain - 1e-7)) and bool(jnp.all(phi <= 1.0 + 1e-7))
    assert bool(jnp.all(phi <= previous + 1e-7))            # non-increasing in γ
    previous = phi
  np.testing.assert_allclose(previous, plain, atol=1e-5)
  # small γ: every point with positive geometric margin ρ costs 1 − γρ² (or 1)
  rho = margins / s
  np.testing.assert_allclose(rss.robust_truncated_hinge(margins, s, 1e-3),
                             jnp.where(rho > 0, jnp.maximum(1 - 1e-3 * rho ** 2, plain), 1.0),
                             atol=1e-6)


def _batch(key, m=8, n=30, d=6):
  k1, k2, k3 = jax.random.split(key, 3)
  x = jax.random.normal(k1, (m, d))
  y = jnp.where(jnp.arange(m) % 2 == 0, 1.0, -1.0)
  xu = jax.random.normal(k2, (n, d))
  theta = jax.random.normal(k3, (d,))
  return theta, {"x": x, "y": y, "x_unlabeled": xu, "w_unlabeled": jnp.full((n,), 1.0 / n)}


HP = dict(gamma=0.7, gamma_unlabeled=0.2, lam=2.0, weight_decay=0.05)


def test_objective_is_rotation_invariant_and_decomposes():
  theta, batch = _batch(jax.random.PRNGKey(2))
  x, y, xu = batch["x"], batch["y"], batch["x_unlabeled"]
  q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(3), (6, 6)))
  value = rss.rss_objective(theta, batch, **HP)
  rotated = rss.rss_objective(q @ theta, {**batch, "x": x @ q.T, "x_unlabeled": xu @ q.T},
                              **HP)
  np.testing.assert_allclose(value, rotated, rtol=1e-5)
  s = jnp.linalg.norm(theta)
  by_hand = (jnp.mean(rss.robust_truncated_hinge(y * (x @ theta), s, 0.7))
             + 2.0 * jnp.mean(rss.robust_truncated_hinge(jnp.abs(xu @ theta), s, 0.2))
             + 0.05 * s ** 2)
  np.testing.assert_allclose(value, by_hand, rtol=1e-5)
  # pseudo-labels: flipping the sign of an unlabeled point changes nothing
  flipped = rss.rss_objective(theta, {**batch, "x_unlabeled": xu.at[:5].multiply(-1)}, **HP)
  np.testing.assert_allclose(value, flipped, rtol=1e-6)


def test_objective_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    theta, batch = _batch(jax.random.PRNGKey(4))
    batch = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), batch)
    theta = theta.astype(jnp.float64)
    f = jax.jit(lambda t: rss.rss_objective(t, batch, **HP))
    grad = jax.grad(f)(theta)
    h = 1e-6
    for j in range(theta.shape[0]):
      e = jnp.zeros_like(theta).at[j].set(h)
      np.testing.assert_allclose(grad[j], (f(theta + e) - f(theta - e)) / (2 * h),
                                 rtol=1e-4, atol=1e-7)


def test_sampler_and_exact_accuracy():
  key = jax.random.PRNGKey(5)
  mean = rss.random_unit_vector(key, 20)
  shifted = rss.shifted_mean(jax.random.fold_in(key, 1), mean, 0.5)
  np.testing.assert_allclose(jnp.linalg.norm(shifted - mean), 0.5, rtol=1e-5)
  x, y = rss.two_gaussian_sample(jax.random.fold_in(key, 2), mean, 200000)
  assert float(y.sum()) == 0.0
  np.testing.assert_allclose((y[:, None] * x).mean(0), mean, atol=0.01)
  np.testing.assert_allclose(jnp.var(x - y[:, None] * mean, axis=0), np.ones(20), atol=0.02)
  theta = mean + 0.8 * rss.random_unit_vector(jax.random.fold_in(key, 3), 20)
  monte_carlo = jnp.mean(y * (x @ theta) > 0)
  np.testing.assert_allclose(rss.population_accuracy(theta, mean), monte_carlo, atol=0.004)
  np.testing.assert_allclose(rss.bayes_accuracy(mean), scipy_stats.norm.cdf(1.0), rtol=1e-6)


def test_rss_uses_unlabeled_cluster_structure():
  """A small instance trained through ``fit``: with many unlabeled samples RSS
  (from the ERM solution) beats ERM clearly."""
  hp = dict(gamma=1.0, gamma_unlabeled=0.03, lam=5.0, weight_decay=0.0)
  keys = jax.random.split(jax.random.PRNGKey(6), 4)
  problems = jax.vmap(lambda k: rss.sample_problem(k, dim=50, num_labeled=10,
                                                   num_unlabeled=2000, alpha=0.5,
                                                   std=1.0))(keys)
  train = lambda objective, theta0: fit.fit(
      rss.linear_gd_task(objective, learning_rate=0.5, momentum=0.9),
      {"theta0": theta0, "batch": problems["batch"]}, 200, progress=False
  ).state.params["theta"]
  erm = train(functools.partial(rss.erm_objective, weight_decay=0.0), jnp.zeros((4, 50)))
  robust = train(functools.partial(rss.rss_objective, **hp), erm)
  accuracy = jax.vmap(rss.population_accuracy)
  gain = accuracy(robust, problems["mean"]) - accuracy(erm, problems["mean"])
  assert float(jnp.mean(gain)) > 0.05
  bayes = jax.vmap(rss.bayes_accuracy)(problems["mean"])
  assert bool(jnp.all(accuracy(robust, problems["mean"]) <= bayes + 1e-6))
