"""Samplers given the exact denoiser of a Gaussian mixture reproduce the mixture;
DDIM is deterministic and inverts; DDPM = DDIM(η=1); Heun is second order; guidance."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxrep.diffusion import gaussian_mixture, parameterization as param, samplers, schedules

WEIGHTS = jnp.array([0.3, 0.7])
MEANS = jnp.array([[-2.0], [1.5]])
COVS = jnp.array([[[0.25]], [[0.64]]])
NUM = 4000


def mixture_cdf(x):
  return sum(float(w) * stats.norm.cdf(x, float(m[0]), float(np.sqrt(c[0, 0])))
             for w, m, c in zip(WEIGHTS, MEANS, COVS))


def exact(process, prediction="x0", weights=WEIGHTS, means=MEANS, covs=COVS):
  """The mixture's exact denoiser, rewritten as a ``prediction`` of another kind."""
  x0_fn = gaussian_mixture.gaussian_mixture_denoiser(process, weights, means, covs)

  def denoise_fn(x, t):
    c = schedules.coefficients(process, t, x)
    return param.convert(x0_fn(x, t), "x0", prediction, x, c)

  return denoise_fn


@functools.lru_cache(maxsize=None)
def run(sampler, process, prediction, num_steps, key=0, shape=(NUM, 1), eta=None):
  """Samples (cached: tests that share a configuration share the compile)."""
  kwargs = {} if eta is None else {"eta": eta}
  fn = functools.partial(sampler, denoise_fn=exact(process, prediction), shape=shape,
                         num_steps=num_steps, process=process, prediction=prediction,
                         **kwargs)
  return np.asarray(jax.jit(fn)(jax.random.PRNGKey(key)))


CASES = [
    ("ddpm", samplers.ddpm_sample, schedules.VPLinear.from_ddpm(), "eps", 100, {}),
    ("ddim", samplers.ddim_sample, schedules.VPCosine(), "v", 100, {}),
    ("ddim_eta", samplers.ddim_sample, schedules.VPCosine(), "score", 100, {"eta": 0.5}),
    ("euler", samplers.euler_sample, schedules.LinearInterpolant(), "velocity", 200, {}),
    ("heun", samplers.heun_sample, schedules.EDM(), "x0", 60, {}),
]


@pytest.mark.parametrize("name,sampler,process,prediction,num_steps,kwargs", CASES,
                         ids=[c[0] for c in CASES])
def test_sampler_with_the_exact_denoiser_reproduces_the_mixture(name, sampler, process,
                                                                prediction, num_steps, kwargs):
  """KS test of 4000 samples against the mixture's CDF, and the left mode's weight."""
  x = run(sampler, process, prediction, num_steps, **kwargs)[:, 0]
  assert np.all(np.isfinite(x))
  assert stats.kstest(x, mixture_cdf).pvalue > 1e-3
  assert abs((x < -0.5).mean() - 0.3) < 0.03


def test_two_dimensional_mixture_weights_and_means():
  weights = jnp.array([0.2, 0.5, 0.3])
  means = jnp.array([[-3.0, 0.0], [2.0, 2.0], [2.0, -2.5]])
  covs = jnp.array([[[0.3, 0.1], [0.1, 0.2]], 0.25 * jnp.eye(2), [[0.4, 0.0], [0.0, 0.05]]])
  process = schedules.LinearInterpolant()
  fn = exact(process, "velocity", weights, means, covs)
  x = np.asarray(jax.jit(lambda k: samplers.heun_sample(
      k, fn, (NUM, 2), 40, process=process, prediction="velocity"))(jax.random.PRNGKey(0)))
  nearest = np.argmin(((x[:, None] - np.asarray(means)[None])**2).sum(-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=3) / NUM, weights, atol=0.03)
  for k in range(3):
    np.testing.assert_allclose(x[nearest == k].mean(0), means[k], atol=0.1)
    np.testing.assert_allclose(np.cov(x[nearest == k].T), covs[k], atol=0.08)


def test_ddim_with_eta_one_is_ddpm():
  process = CASES[0][2]
  ddpm = run(samplers.ddpm_sample, process, "eps", 100)
  ddim = run(samplers.ddim_sample, process, "eps", 100, eta=1.0)
  np.testing.assert_allclose(ddim, ddpm, atol=2e-4)


def test_ddim_eta_zero_is_deterministic_and_inverts():
  """Same start, other keys: identical samples. Inverting data then sampling gives the
  data back, with an error that halves when the steps double (first order)."""
  process = schedules.VPCosine()
  fn = exact(process, "eps")
  x_start = gaussian_mixture.sample_gaussian_mixture(jax.random.PRNGKey(5), 512, WEIGHTS,
                                                     MEANS, COVS)

  @functools.partial(jax.jit, static_argnums=2)
  def sample(key, x_init, steps):
    return samplers.ddim_sample(key, fn, x_init.shape, steps, process=process,
                                x_init=x_init, denoise_last=False)

  @jax.jit
  def sample_traced_eta(key, x_init, eta):        # takes the stochastic code path
    return samplers.ddim_sample(key, fn, x_init.shape, 100, process=process, eta=eta,
                                x_init=x_init, denoise_last=False)

  noise = jax.random.normal(jax.random.PRNGKey(1), (512, 1))
  np.testing.assert_array_equal(sample_traced_eta(jax.random.PRNGKey(2), noise, 0.0),
                                sample_traced_eta(jax.random.PRNGKey(3), noise, 0.0))
  errors = {}
  for steps in (100, 200):
    latent = jax.jit(lambda x: samplers.ddim_invert(fn, x, steps, process=process))(x_start)
    assert 0.9 < float(jnp.std(latent)) < 1.15         # close to the N(0, 1) prior
    errors[steps] = np.abs(np.asarray(sample(jax.random.PRNGKey(4), latent, steps) - x_start))
  assert np.median(errors[200]) < 0.02 and np.max(errors[200]) < 0.2
  assert 1.6 < np.median(errors[100]) / np.median(errors[200]) < 2.6
  moved = np.asarray(sample(jax.random.PRNGKey(4), latent + 0.3, 200) - x_start)
  assert np.median(np.abs(moved)) > 0.1


def test_heun_is_second_order_and_euler_first_order():
  """Errors against a 1000-step Heun solution from the same start: halving h divides
  Heun's error by ≈ 4 and Euler's by ≈ 2."""
  process = schedules.LinearInterpolant()
  fn = exact(process, "velocity")
  x_init = jax.random.normal(jax.random.PRNGKey(0), (512, 1))

  def solve(sampler, steps):
    return np.asarray(jax.jit(lambda x: sampler(None, fn, x.shape, steps, process=process,
                                                prediction="velocity", x_init=x))(x_init))

  reference = solve(samplers.heun_sample, 1000)
  error = lambda sampler, steps: np.mean(np.abs(solve(sampler, steps) - reference))
  heun_ratio = error(samplers.heun_sample, 20) / error(samplers.heun_sample, 40)
  euler_ratio = error(samplers.euler_sample, 20) / error(samplers.euler_sample, 40)
  assert 3.0 < heun_ratio < 6.0 and 1.6 < euler_ratio < 2.6


def test_samplers_vmap_over_keys():
  process = schedules.LinearInterpolant()
  fn = exact(process, "velocity")
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  one = lambda k: samplers.euler_sample(k, fn, (8, 1), 10, process=process,
                                        prediction="velocity")
  batched = np.asarray(jax.jit(jax.vmap(one))(keys))
  single = jax.jit(one)
  for i in (0, 2):
    np.testing.assert_allclose(batched[i], single(keys[i]), atol=1e-5)
  assert np.abs(batched[0] - batched[1]).max() > 0.1


def test_guidance_interpolates_the_conditional_and_unconditional_predictions():
  def denoise_fn(x, t, label):
    return x * (1.0 + label[:, None].astype(x.dtype)) + t[:, None]

  x, t, label = jnp.ones((4, 1)), jnp.full(4, 0.5), jnp.array([0, 1, 2, 3])
  unconditional = denoise_fn(x, t, jnp.full(4, 9))
  conditional = denoise_fn(x, t, label)
  at = lambda scale: samplers.guided(denoise_fn, scale, label, 9)(x, t)
  np.testing.assert_allclose(at(0.0), unconditional)
  np.testing.assert_allclose(at(1.0), conditional)
  np.testing.assert_allclose(at(3.0), unconditional + 3.0 * (conditional - unconditional))
