r"""Causal de Finetti: causal direction from exchangeable multi-environment data.

Guo, Tóth, Schölkopf & Huszár, "Causal de Finetti: On the Identification of
Invariant Causal Structure in Exchangeable Data", NeurIPS 2023
(official code: syguo96/Causal-de-Finetti).

Bivariate rule (Theorem 2 / Algorithm 1 of the paper). Every environment e
contributes two exchangeable samples (X₁, Y₁), (X₂, Y₂) that share the
environment's latent mechanism parameters. Under the independent-causal-
mechanism principle,
    X → Y  ⇔  X₁ ⊥ Y₂ | X₂,  Y₁ ⊥̸ X₂ | Y₂,  X₁ ⊥̸ Y₁,
    Y → X  ⇔  the mirror image,
    no edge ⇔  all three independences hold.
With p-values p_XY (X₁ ⊥ Y₂ | X₂), p_YX (Y₁ ⊥ X₂ | Y₂), p_ind (X₁ ⊥ Y₁) from the
KCI test at level α, a pattern that matches none of the three cases is
resolved, as in the official code, by the largest of the three p-values.

Generator (the paper's ``scm_bivariate_continuous``): N_e ~ U(−1, 1)², the two
samples of environment e are N'_e ~ Laplace(N_e, 1); a mixing A (lower-triangular
for X → Y, upper for Y → X, I for no edge, integer entries in 1..9, unit diagonal
at the root) gives (X, Y) = A N'; in a random half of the environments the
quadratic term c (A − I) N'² (c ∈ 1..9) is added.

Pooled i.i.d. baseline: the 2E samples are treated as i.i.d.; an HSIC test
decides "no edge", otherwise the pairwise likelihood-ratio measure of
DirectLiNGAM (Hyvärinen & Smith, JMLR 2013; maximum-entropy approximation of
the differential entropy H) orients the edge:
    R = H(y) + H(r_{x|y}/σ) − H(x) − H(r_{y|x}/σ),   R > 0 ⇒ X → Y,
for standardised x, y and least-squares residuals r.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrep.stats import kci

X_TO_Y, Y_TO_X, NO_EDGE = 0, 1, 2


class PairedSamples(NamedTuple):
  x: jax.Array  # (num_env, 2): the two samples of X per environment
  y: jax.Array  # (num_env, 2)
  structure: jax.Array  # () int: X_TO_Y, Y_TO_X or NO_EDGE


def sample_bivariate_scm(key: jax.Array, num_env: int) -> PairedSamples:
  """One SCM of the paper's continuous bivariate generator, 2 samples per environment."""
  k_mode, k_n, k_lap, k_a, k_c, k_env = jax.random.split(key, 6)
  mode = jax.random.randint(k_mode, (), 0, 3)
  latent = jax.random.uniform(k_n, (2, num_env, 1), minval=-1.0, maxval=1.0)
  noise = latent + jax.random.laplace(k_lap, (2, num_env, 2))
  ints = jax.random.randint(k_a, (2, 2), 1, 10).astype(noise.dtype)
  lower = jnp.tril(ints).at[0, 0].set(1.0)
  upper = jnp.triu(ints).at[1, 1].set(1.0)
  mixing = jnp.stack([lower, upper, jnp.eye(2, dtype=noise.dtype)])[mode]
  c = jax.random.randint(k_c, (), 1, 10).astype(noise.dtype)
  quadratic_envs = jax.random.permutation(k_env, num_env) < num_env // 2
  data = jnp.einsum("ij,jeh->ieh", mixing, noise)
  data = data + quadratic_envs[None, :, None] * jnp.einsum(
      "ij,jeh->ieh", c * (mixing - jnp.eye(2)), noise**2)
  return PairedSamples(data[0], data[1], mode)


def direction_p_values(x: jax.Array, y: jax.Array, truncate: bool = True) -> jax.Array:
  """(p_XY, p_YX, p_ind) for paired samples x, y of shape (num_env, 2)."""
  p_xy = kci.kci_conditional(x[:, 0], y[:, 1], x[:, 1], truncate=truncate).p_value
  p_yx = kci.kci_conditional(y[:, 0], x[:, 1], y[:, 1], truncate=truncate).p_value
  p_ind = kci.kci_unconditional(x[:, 0], y[:, 0]).p_value
  return jnp.stack([p_xy, p_yx, p_ind])


def decide_direction(p_values: jax.Array, alpha: float = 0.05) -> jax.Array:
  """The bivariate rule on (p_XY, p_YX, p_ind): X_TO_Y, Y_TO_X or NO_EDGE."""
  p_xy, p_yx, p_ind = p_values
  x_to_y = (p_xy >= alpha) & (p_yx <= alpha) & (p_ind <= alpha)
  y_to_x = (p_xy <= alpha) & (p_yx >= alpha) & (p_ind <= alpha)
  none = (p_xy >= alpha) & (p_yx >= alpha) & (p_ind >= alpha)
  fallback = jnp.argmax(p_values)
  return jnp.where(x_to_y, X_TO_Y, jnp.where(y_to_x, Y_TO_X, jnp.where(none, NO_EDGE, fallback)))


def causal_de_finetti_bivariate(x: jax.Array, y: jax.Array, alpha: float = 0.05,
                                truncate: bool = True) -> jax.Array:
  """Estimated structure from paired samples (num_env, 2) of X and Y."""
  return decide_direction(direction_p_values(x, y, truncate), alpha)


def maxent_entropy(u: jax.Array) -> jax.Array:
  """Hyvärinen's (1998) approximation of the differential entropy of a standardised u."""
  k1, k2, gamma = 79.047, 7.4129, 0.37457
  return ((1 + jnp.log(2 * jnp.pi)) / 2 - k1 * (jnp.mean(jnp.log(jnp.cosh(u))) - gamma)**2
          - k2 * jnp.mean(u * jnp.exp(-u**2 / 2))**2)


def lingam_pairwise_measure(x: jax.Array, y: jax.Array) -> jax.Array:
  """R > 0 ⇒ X → Y (DirectLiNGAM's pairwise likelihood ratio), x, y of shape (n,)."""
  x = (x - x.mean()) / x.std()
  y = (y - y.mean()) / y.std()
  rho = jnp.mean(x * y)
  r_y, r_x = y - rho * x, x - rho * y
  return (maxent_entropy(y) + maxent_entropy(r_x / r_x.std())
          - maxent_entropy(x) - maxent_entropy(r_y / r_y.std()))


def pooled_iid_baseline(x: jax.Array, y: jax.Array, alpha: float = 0.05) -> jax.Array:
  """Structure estimated from the pooled samples as if i.i.d. (HSIC + pairwise LiNGAM)."""
  xs, ys = x.reshape(-1), y.reshape(-1)
  dependent = kci.kci_unconditional(xs, ys).p_value <= alpha
  direction = jnp.where(lingam_pairwise_measure(xs, ys) > 0, X_TO_Y, Y_TO_X)
  return jnp.where(dependent, direction, NO_EDGE)
