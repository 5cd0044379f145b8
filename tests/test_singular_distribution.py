"""Instance-noise likelihood fits (Chae et al. 2023): the IWAE bound on a model with a
known likelihood, the Sinkhorn W1 estimate, and the manifold samplers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxrep.generative import instance_noise as inz


def _linear_gaussian(seed=0, dim=3, latent=2, sigma=0.5):
  """p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I): log p(x) = log N(x; b, WWᵀ + σ²I)."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  w = jax.random.normal(k1, (dim, latent))
  b = jax.random.normal(k2, (dim,))
  x = jax.random.normal(k3, (4, dim)) * 2.0
  log_likelihood = lambda x, z: inz.gaussian_log_density(
      x, z @ w.T + b, jnp.full(x.shape[-1:], np.log(sigma)))
  exact = scipy.stats.multivariate_normal(np.asarray(b, np.float64),
                                          np.asarray(w @ w.T, np.float64)
                                          + sigma**2 * np.eye(dim)).logpdf(np.asarray(x))
  # a deliberately imperfect proposal: the exact posterior N(m, S), S = (I + WᵀW/σ²)⁻¹,
  # with its mean shifted and its standard deviations inflated by 50%
  cov = jnp.linalg.inv(jnp.eye(latent) + w.T @ w / sigma**2)
  log_std = jnp.log(1.5 * jnp.sqrt(jnp.diag(cov)))
  encode = lambda x: ((x - b) @ w @ cov / sigma**2 + 0.1,
                      jnp.broadcast_to(log_std, (x.shape[0], latent)))
  return x, encode, log_likelihood, exact


@pytest.mark.reference
def test_iwae_bound_below_likelihood_and_converges():
  """L_1 (ELBO) ≤ L_8 ≤ L_512 ≤ log p(x), and L_K → the exact log N(x; b, WWᵀ+σ²I)
  (scipy) within 0.01 nats (mean of 8 draws) at K = 20,000. Catches: a missing − log K (bound above
  log p), a log-mean-exp replaced by a mean (no convergence), a wrong q term."""
  with jax.enable_x64(True):
    x, encode, log_likelihood, exact = _linear_gaussian()
    def bounds(k, reps):
      fn = lambda key: inz.iwae_bound(key, x, k, encode, log_likelihood)
      return np.asarray(jax.jit(jax.vmap(fn))(jax.random.split(jax.random.PRNGKey(k), reps)))

    draws = {k: bounds(k, reps) for k, reps in ((1, 400), (8, 100), (512, 20))}
    mean = {k: v.mean(0) for k, v in draws.items()}
    stderr = {k: v.std(0) / np.sqrt(len(v)) for k, v in draws.items()}
    assert np.all(mean[1] + 3 * stderr[1] < mean[8] - 3 * stderr[8])
    assert np.all(mean[8] < mean[512] + 3 * stderr[512])
    assert np.all(mean[512] < exact + 3 * stderr[512] + 1e-4)
    assert np.all(mean[1] < exact - 0.05)              # the proposal is not the posterior
    np.testing.assert_allclose(bounds(20_000, 8).mean(0), exact, atol=0.01)


def test_model_bound_is_finite_and_sigma_parameterised():
  """The flax model's IWAE loss runs on a batch and σ = softplus(s) + min_sigma.
  Catches: a decoder/encoder shape mix-up or a σ that can reach 0."""
  model = inz.LatentVariableModel(data_dim=5, latent_dim=2, hidden=(8,))
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
  params = model.init(jax.random.PRNGKey(1), x)
  loss, metrics = inz.iwae_loss_fn(model, 4)(params, {"x": x}, jax.random.PRNGKey(2))
  assert np.isfinite(loss)
  np.testing.assert_allclose(np.exp(metrics["log_sigma"]), np.log(2.0) + 1e-4, rtol=1e-5)
  assert inz.generate(model, params, jax.random.PRNGKey(3), 7).shape == (7, 5)


@pytest.mark.reference
def test_wasserstein1_translation_and_marginals():
  """W1(μ, μ + v) = ‖v‖ for the Euclidean cost, and the Sinkhorn plan's marginals
  are uniform (ott-jax); W1 of a cloud to itself is ≈ 0. Catches: a squared-Euclidean
  cost (gives ‖v‖² plus spread), an unnormalised plan."""
  from ott.geometry import costs, pointcloud
  from ott.solvers import linear
  x = jax.random.normal(jax.random.PRNGKey(0), (200, 4))
  v = jnp.array([0.6, -0.3, 0.2, 0.0])
  np.testing.assert_allclose(inz.wasserstein1(x, x + v), jnp.linalg.norm(v), rtol=0.03)
  assert inz.wasserstein1(x, x) < 0.05
  geom = pointcloud.PointCloud(x, x[::-1] + v, cost_fn=costs.Euclidean(), epsilon=1e-2)
  plan = linear.solve(geom).matrix
  np.testing.assert_allclose(plan.sum(1), np.full(200, 1 / 200), atol=1e-4)
  np.testing.assert_allclose(plan.sum(0), np.full(200, 1 / 200), atol=1e-4)


@pytest.mark.parametrize("name,dim", [("circle", 1), ("spiral", 1), ("torus", 2)])
def test_manifold_embedding_is_isometric_and_low_rank(name, dim):
  """Embedded samples keep pairwise distances and span a subspace of the low dim; the
  circle and torus have unit radius. Catches: a non-isometric embedding."""
  coords = inz.manifold_coordinates(jax.random.PRNGKey(0), name, 300)
  m = inz.random_isometry(jax.random.PRNGKey(1), coords.shape[1], 10)
  y = coords @ m
  d = lambda a: jnp.linalg.norm(a[:, None] - a[None], axis=-1)
  np.testing.assert_allclose(d(y), d(coords), atol=1e-5)
  assert np.linalg.matrix_rank(np.asarray(y), tol=1e-4) == coords.shape[1]
  if name != "spiral":
    np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), 1.0, atol=1e-5)
  noisy = inz.perturb(jax.random.PRNGKey(2), jnp.zeros((20000, 10)), 0.2)
  np.testing.assert_allclose(noisy.std(), 0.2, rtol=0.02)
