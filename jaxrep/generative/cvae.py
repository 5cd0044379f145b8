r"""Conditional VAE from attributes: prior, recognition and generation networks.

Sohn, Lee, Yan, "Learning Structured Output Representation using Deep Conditional
Generative Models", NeurIPS 2015 (the CVAE), as used with attribute conditions in
"Learning Structured Output Representations from Attributes using Deep
Conditional Generative Models" (Debbagh 2023; no public code was found).

Three Gaussian networks with diagonal covariances,
prior p_ψ(z | y), recognition q_φ(z | x, y) and generation p_θ(x | z, y), give the
β-weighted conditional lower bound (Sohn et al. eq. 4 with a KL weight β, as in
β-VAE, Higgins et al. 2017):

    ELBO_β(x | y) = E_{q_φ(z|x,y)} log p_θ(x | z, y) − β KL(q_φ(z|x,y) ‖ p_ψ(z|y)),

with one reparameterised draw z = μ_q + σ_q ⊙ ε per example, and the KL in
closed form for diagonal Gaussians:

    KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) = ½ Σ_j [log σ_p²/σ_q² + (σ_q² + (μ_q − μ_p)²)/σ_p² − 1].

The conditional log-likelihood is estimated by importance sampling with q as the
proposal (Sohn et al. eq. 9):

    log p(x | y) ≈ log (1/S) Σ_s p_θ(x | z_s, y) p_ψ(z_s | y) / q_φ(z_s | x, y),
    z_s ~ q_φ(z | x, y),

a stochastic lower bound whose expectation rises with S towards log p(x | y)
(Burda et al. 2016); with β = 1 and S = 1 its expectation is the ELBO. Samples
with requested attributes are z ~ p_ψ(z | y), x = the mean of p_θ(x | z, y).

The bound and the estimator take the three networks as functions returning
(mean, log-variance), so they apply to any conditional Gaussian model (the
tests use a linear-Gaussian one with a closed-form likelihood); ``CVAE`` is the
MLP version and ``cvae_loss_fn`` the training loss for the core's train step.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Gaussian = tuple[jax.Array, jax.Array]          # (mean, log-variance), same shape


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """log N(x; mean, diag exp(log_var)), summed over the last axis."""
  return -0.5 * jnp.sum(np.log(2 * np.pi) + log_var + (x - mean)**2 / jnp.exp(log_var),
                        axis=-1)


def gaussian_kl(q: Gaussian, p: Gaussian) -> jax.Array:
  """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) for diagonal Gaussians, summed over the last axis."""
  (mean_q, log_var_q), (mean_p, log_var_p) = q, p
  return 0.5 * jnp.sum(log_var_p - log_var_q
                       + (jnp.exp(log_var_q) + (mean_q - mean_p)**2) / jnp.exp(log_var_p)
                       - 1.0, axis=-1)


def reparameterize(key: jax.Array, dist: Gaussian, num: int | None = None) -> jax.Array:
  """z = μ + σ ⊙ ε (one draw, or ``num`` draws on a new leading axis)."""
  mean, log_var = dist
  shape = mean.shape if num is None else (num,) + mean.shape
  return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, shape, mean.dtype)


PriorFn = Callable[[jax.Array], Gaussian]                       # y → p(z | y)
RecognitionFn = Callable[[jax.Array, jax.Array], Gaussian]      # x, y → q(z | x, y)
GenerationFn = Callable[[jax.Array, jax.Array], Gaussian]       # z, y → p(x | z, y)


def elbo_terms(prior: PriorFn, recognize: RecognitionFn, generate: GenerationFn,
               x: jax.Array, y: jax.Array, key: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(E_q log p(x | z, y) by one draw, KL(q ‖ p(z | y))), each (batch,), and the
  mean of p(x | z, y) at that draw (the reconstruction)."""
  q = recognize(x, y)
  mean_x, log_var_x = generate(reparameterize(key, q), y)
  return gaussian_log_prob(x, mean_x, log_var_x), gaussian_kl(q, prior(y)), mean_x


def weighted_elbo(prior: PriorFn, recognize: RecognitionFn, generate: GenerationFn,
                  x: jax.Array, y: jax.Array, key: jax.Array, beta: float | jax.Array = 1.0
                  ) -> jax.Array:
  """ELBO_β(x | y) per example (batch,), one reparameterised draw."""
  log_lik, kl, _ = elbo_terms(prior, recognize, generate, x, y, key)
  return log_lik - beta * kl


def importance_sampled_cll(prior: PriorFn, recognize: RecognitionFn, generate: GenerationFn,
                           x: jax.Array, y: jax.Array, key: jax.Array, num_samples: int
                           ) -> jax.Array:
  """log (1/S) Σ_s p(x | z_s, y) p(z_s | y) / q(z_s | x, y), z_s ~ q; (batch,)."""
  q, p = recognize(x, y), prior(y)
  z = reparameterize(key, q, num_samples)                       # (S, batch, dz)
  expand = lambda a: jnp.broadcast_to(a, (num_samples,) + a.shape)
  mean_x, log_var_x = jax.vmap(generate, in_axes=(0, None))(z, y)
  log_w = (gaussian_log_prob(expand(x), mean_x, log_var_x) + gaussian_log_prob(z, *p)
           - gaussian_log_prob(z, *q))
  return jax.nn.logsumexp(log_w, axis=0) - np.log(num_samples)


# ---------------------------------------------------------------------------
# The MLP CVAE


class _GaussianMLP(nn.Module):
  """inputs → (mean, log-variance) of ``features`` dims through ReLU hidden layers."""

  features: int
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, h: jax.Array) -> Gaussian:
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    return nn.Dense(self.features)(h), nn.Dense(self.features)(h)


class CVAE(nn.Module):
  """Prior, recognition and generation MLPs. ``apply(params, x, y, key)`` returns
  ``elbo_terms``; ``method=CVAE.prior | recognize | generate``
  give the three distributions. The generation network predicts the mean of x
  (flattened, ``data_dim``) and a learned per-dimension log-variance (not a
  function of z, y), clipped to ≥ ``min_log_var``."""

  data_dim: int
  latent_dim: int = 8
  hidden: Sequence[int] = (128,)
  min_log_var: float = -6.0

  def setup(self):
    self.prior_net = _GaussianMLP(self.latent_dim, tuple(self.hidden))
    self.recognition_net = _GaussianMLP(self.latent_dim, tuple(self.hidden))
    self.generation_net = _GaussianMLP(self.data_dim, tuple(self.hidden))
    self.output_log_var = self.param("output_log_var", nn.initializers.zeros,
                                     (self.data_dim,))

  def prior(self, y):
    return self.prior_net(y)

  def recognize(self, x, y):
    return self.recognition_net(jnp.concatenate([x, y], axis=-1))

  def generate(self, z, y):
    mean, _ = self.generation_net(jnp.concatenate([z, y], axis=-1))
    log_var = jnp.maximum(self.output_log_var, self.min_log_var)
    return mean, jnp.broadcast_to(log_var, mean.shape)

  def __call__(self, x, y, key):
    return elbo_terms(self.prior, self.recognize, self.generate, x, y, key)


def networks(model: CVAE, params) -> tuple[PriorFn, RecognitionFn, GenerationFn]:
  """The three distribution functions of a CVAE at ``params``."""
  bind = lambda method: lambda *a: model.apply(params, *a, method=method)
  return bind(CVAE.prior), bind(CVAE.recognize), bind(CVAE.generate)


def cvae_loss_fn(model: CVAE, beta: float | None = None):
  """``loss_fn(params, batch, rng)`` = −mean ELBO_β per data dimension.

  batch = {"x": (n, data_dim), "y": (n, dy)} and, when ``beta`` is None,
  "beta": a scalar (e.g. a per-run weight from ``minibatch_task``'s "hparams").
  Metrics: "nll" (−E log p(x|z,y)), "kl", "recon_mse" (‖x − mean‖² per dim).
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del axis_name
    x, y = batch["x"], batch["y"]
    b = batch["beta"] if beta is None else beta
    log_lik, kl, mean_x = elbo_terms(*networks(model, params), x, y, rng)
    loss = -jnp.mean(log_lik - b * kl) / x.shape[-1]
    return loss, {"nll": -jnp.mean(log_lik), "kl": jnp.mean(kl),
                  "recon_mse": jnp.mean((x - mean_x)**2)}

  return loss_fn


def sample_with_attributes(model: CVAE, params, y: jax.Array, key: jax.Array) -> jax.Array:
  """x = mean of p(x | z, y) at z ~ p(z | y): one sample per row of y."""
  prior, _, generate = networks(model, params)
  return generate(reparameterize(key, prior(y)), y)[0]
