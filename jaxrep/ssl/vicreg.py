r"""VICReg: variance–invariance–covariance regularization.

Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022, Eqs. 1–6 (and the official main_vicreg.py).

Two views of N examples give embeddings Z, Z' ∈ R^{N×D}. With centred columns
Z̄ = Z − mean_rows(Z), the unbiased covariance C(Z) = Z̄ᵀZ̄/(N − 1) and
S(z_d) = sqrt(C(Z)_dd + ε):

    s(Z, Z') = (1/N) Σ_i ‖z_i − z'_i‖² / D                       (invariance, MSE)
    v(Z)     = (1/D) Σ_d max(0, γ − S(z_d))                      (variance, hinge)
    c(Z)     = (1/D) Σ_{d≠e} C(Z)_de²                            (covariance)
    L = λ s(Z, Z') + μ [v(Z) + v(Z')]/2 + ν [c(Z) + c(Z')],

with the official λ = μ = 25, ν = 1, γ = 1, ε = 1e-4 (the halving of the variance
term and not of the covariance term follow the official code).

Data-parallel: with ``axis_name`` set, each device holds n = N/D_dev rows; the
column sums, the centred squared sums and Z̄ᵀZ̄ are ``lax.psum``-ed, so the variance
and covariance use global-batch statistics (the official code all-gathers), while
the invariance is this device's mean, whose mean over devices is s. So 1 and 8
devices give the same L.
"""
from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
from jax import lax


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else lax.psum(x, axis_name)


def _centred_covariance(z: jax.Array, axis_name: str | None) -> jax.Array:
  """C(Z) = Z̄ᵀZ̄/(N − 1) over the global batch, (D, D)."""
  num_devices = 1 if axis_name is None else lax.axis_size(axis_name)
  num_global = z.shape[0] * num_devices
  mean = _psum(z.sum(axis=0), axis_name) / num_global
  centred = z - mean
  return _psum(centred.T @ centred, axis_name) / (num_global - 1)


def variance_term(covariance: jax.Array, gamma: float = 1.0, eps: float = 1e-4) -> jax.Array:
  """v = mean_d max(0, γ − sqrt(C_dd + ε)) for a (D, D) covariance."""
  std = jnp.sqrt(jnp.diagonal(covariance) + eps)
  return jnp.mean(jax.nn.relu(gamma - std))


def covariance_term(covariance: jax.Array) -> jax.Array:
  """c = Σ_{d≠e} C_de² / D for a (D, D) covariance."""
  dim = covariance.shape[0]
  off_diagonal = covariance * (1.0 - jnp.eye(dim, dtype=covariance.dtype))
  return jnp.sum(off_diagonal ** 2) / dim


def vicreg_loss(z1: jax.Array, z2: jax.Array, *, invariance_weight: float = 25.0,
                variance_weight: float = 25.0, covariance_weight: float = 1.0,
                gamma: float = 1.0, eps: float = 1e-4, axis_name: str | None = None,
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """VICReg loss L of two views and its three unweighted terms.

  Args:
    z1, z2: (n, D) embeddings of two views of the same n examples (this device's
      shard when ``axis_name`` names the data axis; the global batch needs N ≥ 2).
    invariance_weight, variance_weight, covariance_weight: λ, μ, ν.
    gamma: γ, the target standard deviation.
    eps: ε inside the square root.
    axis_name: the data axis to sum statistics over, or None (global batch).

  Returns:
    ``(L, {"invariance": s, "variance": (v(Z)+v(Z'))/2, "covariance": c(Z)+c(Z')})``.
  """
  chex.assert_equal_shape((z1, z2))
  chex.assert_rank(z1, 2)
  invariance = jnp.mean((z1 - z2) ** 2)
  cov1, cov2 = _centred_covariance(z1, axis_name), _centred_covariance(z2, axis_name)
  variance = (variance_term(cov1, gamma, eps) + variance_term(cov2, gamma, eps)) / 2
  covariance = covariance_term(cov1) + covariance_term(cov2)
  loss = (invariance_weight * invariance + variance_weight * variance
          + covariance_weight * covariance)
  return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}


def vicreg_loss_fn(encode: Callable[..., jax.Array], *, invariance_weight: float = 25.0,
                   variance_weight: float = 25.0, covariance_weight: float = 1.0):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for VICReg on two views.

  Args:
    encode: ``encode(params, x) -> (n, D)`` embeddings (the expander's output).
    invariance_weight, variance_weight, covariance_weight: λ, μ, ν (25, 25, 1).

  Returns:
    ``loss_fn`` for ``batch = {"view1": x1, "view2": x2}``, returning
    ``(L, {"vicreg": L, "invariance": s, "variance": v, "covariance": c})``;
    statistics are global under ``shard_map``/``pmap`` (it declares ``axis_name``).
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del rng
    loss, terms = vicreg_loss(encode(params, batch["view1"]), encode(params, batch["view2"]),
                              invariance_weight=invariance_weight,
                              variance_weight=variance_weight,
                              covariance_weight=covariance_weight, axis_name=axis_name)
    return loss, {"vicreg": loss, **terms}

  return loss_fn
