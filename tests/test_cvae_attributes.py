"""CVAE (``jaxrep.generative.cvae``): KL, ELBO ≤ IS-CLL ≤ log p on a linear-Gaussian model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxrep.generative import cvae

DZ, DX, DY, N = 3, 5, 2, 4


def linear_gaussian(seed=0):
  """p(z|y) = N(Ay, diag s²), p(x|z,y) = N(Wz + By, σ²I) with W = Q diag(d), Q
  orthonormal columns, so the exact posterior is diagonal: precision
  Λ = 1/s² + d²/σ², mean Λ⁻¹(Wᵀ(x − By)/σ² + Ay/s²); and
  p(x|y) = N(WAy + By, W diag(s²) Wᵀ + σ²I)."""
  rng = np.random.default_rng(seed)
  a, b = rng.standard_normal((DZ, DY)), rng.standard_normal((DX, DY))
  q_mat, _ = np.linalg.qr(rng.standard_normal((DX, DZ)))
  w = q_mat * rng.uniform(0.5, 2.0, DZ)
  s2, sigma2 = rng.uniform(0.5, 2.0, DZ), 0.3
  y = rng.standard_normal((N, DY))
  z = (y @ a.T) + np.sqrt(s2) * rng.standard_normal((N, DZ))
  x = z @ w.T + y @ b.T + np.sqrt(sigma2) * rng.standard_normal((N, DX))
  f = lambda m: jnp.asarray(m, jnp.float32)
  prior = lambda y_: (y_ @ f(a.T), jnp.broadcast_to(f(np.log(s2)), y_.shape[:-1] + (DZ,)))
  generate = lambda z_, y_: (z_ @ f(w.T) + y_ @ f(b.T),
                             jnp.full(z_.shape[:-1] + (DX,), np.log(sigma2), jnp.float32))
  precision = 1 / s2 + np.sum(w**2, 0) / sigma2

  def exact_posterior(x_, y_):
    mean = ((x_ - y_ @ f(b.T)) @ f(w) / sigma2 + y_ @ f(a.T) / f(s2)) / f(precision)
    return mean, jnp.broadcast_to(f(-np.log(precision)), mean.shape)

  cov = w @ np.diag(s2) @ w.T + sigma2 * np.eye(DX)
  log_p = np.array([stats.multivariate_normal(w @ a @ yi + b @ yi, cov).logpdf(xi)
                    for xi, yi in zip(x, y)])
  return prior, exact_posterior, generate, f(x), f(y), log_p


@pytest.mark.reference
def test_exact_posterior_makes_is_cll_exact_and_elbo_tight():
  """With q = the exact posterior every importance weight is p(x|y), so the IS
  estimate equals log p(x|y) (SciPy's Gaussian log-density) for any draw, and the
  ELBO (one draw, closed-form KL) equals it in expectation. Catches: a wrong
  log-density constant, a missing prior or proposal term in the weights, a mean
  instead of a log-mean-exp, a wrong KL."""
  prior, posterior, generate, x, y, log_p = linear_gaussian()
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  elbo = jax.jit(jax.vmap(lambda k: cvae.weighted_elbo(prior, posterior, generate, x, y,
                                                       k)))(keys)
  cll = jax.jit(lambda k: cvae.importance_sampled_cll(prior, posterior, generate, x, y, k,
                                                      num_samples=7))(keys[0])
  np.testing.assert_allclose(cll, log_p, rtol=1e-4, atol=1e-4)
  standard_error = np.std(elbo, 0) / np.sqrt(len(keys))
  assert np.all(np.abs(np.mean(elbo, 0) - log_p) < 5 * standard_error + 1e-4)


@pytest.mark.reference
def test_bounds_are_ordered_for_an_inexact_posterior():
  """For a perturbed q: E[ELBO] < E[IS-CLL, S=10] < E[IS-CLL, S=1000] ≤ log p(x|y),
  and S=1000 (mean of 50 estimates) is within 0.05 nats of log p. Catches: an upper instead of a lower
  bound (sign error in log q), IS without the 1/S, a KL of the wrong direction."""
  prior, posterior, generate, x, y, log_p = linear_gaussian(1)
  shifted = lambda x_, y_: (posterior(x_, y_)[0] + 0.3, posterior(x_, y_)[1] + 0.4)
  keys = jax.random.split(jax.random.PRNGKey(1), 400)

  @jax.jit
  def estimates(k):
    return (cvae.weighted_elbo(prior, shifted, generate, x, y, k),
            cvae.importance_sampled_cll(prior, shifted, generate, x, y, k, 10))

  elbo, cll10 = [np.mean(v, 0) for v in jax.vmap(estimates)(keys)]
  many = jax.jit(jax.vmap(lambda k: cvae.importance_sampled_cll(
      prior, shifted, generate, x, y, k, 1000)))(keys[:50])
  cll1000, error = np.mean(many, 0), np.std(many, 0) / np.sqrt(50)
  assert np.all(elbo < cll10 - 0.01)
  assert np.all(cll10 < cll1000)
  assert np.all(cll1000 <= log_p + 4 * error)
  np.testing.assert_allclose(cll1000, log_p, atol=0.05)


def test_kl_closed_form_matches_monte_carlo():
  """Diagonal-Gaussian KL(q‖p) against the Monte-Carlo mean of log q − log p over
  200k draws (within 5 standard errors). Catches: swapped arguments, a variance
  used as a std, a missing ½ or −1."""
  rng = np.random.default_rng(2)
  q = (jnp.asarray(rng.standard_normal(4), jnp.float32),
       jnp.asarray(rng.uniform(-1, 1, 4), jnp.float32))
  p = (jnp.asarray(rng.standard_normal(4), jnp.float32),
       jnp.asarray(rng.uniform(-1, 1, 4), jnp.float32))
  z = cvae.reparameterize(jax.random.PRNGKey(3), q, 200_000)
  log_ratio = np.asarray(cvae.gaussian_log_prob(z, *q) - cvae.gaussian_log_prob(z, *p),
                         np.float64)
  closed = float(cvae.gaussian_kl(q, p))
  error = log_ratio.std() / np.sqrt(len(log_ratio))
  assert abs(log_ratio.mean() - closed) < 5 * error
  assert abs(float(cvae.gaussian_kl(q, q))) < 1e-6


def test_loss_weights_the_kl_by_beta():
  """``cvae_loss_fn``: loss(β=3) − loss(β=1) = 2·mean KL / D for the same key, and
  β read from the batch equals β fixed. Catches: β ignored or applied to the
  likelihood term."""
  model = cvae.CVAE(data_dim=DX, latent_dim=DZ, hidden=(8,))
  x = jnp.asarray(np.random.default_rng(4).standard_normal((N, DX)), jnp.float32)
  y = jnp.asarray(np.random.default_rng(5).standard_normal((N, DY)), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, y,
                                             jax.random.PRNGKey(1)))
  rng = np.random.default_rng(6)
  params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype),
                        shapes)
  key = jax.random.PRNGKey(7)

  @jax.jit
  def losses(params):
    one, metrics = cvae.cvae_loss_fn(model, beta=1.0)(params, {"x": x, "y": y}, key)
    three, _ = cvae.cvae_loss_fn(model)(params, {"x": x, "y": y, "beta": 3.0}, key)
    return one, three, metrics["kl"]

  one, three, kl = losses(params)
  np.testing.assert_allclose(three - one, 2 * kl / DX, rtol=1e-4)
