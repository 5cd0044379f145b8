r"""SIE: split invariant–equivariant self-supervised representations.

Garrido, Najman, LeCun, "Self-supervised learning of Split Invariant Equivariant
representations", ICML 2023 (arXiv 2302.10283), Sec. 3 and Eq. 1–4; hyperparameters
and the loss as in the official code, facebookresearch/SIE ``src/models.py`` (class
``SIE``), ``src/hypernetwork.py`` (``ParametrizedNet`` with ``--hypernetwork linear``)
and the README's pretraining command (sim 10, std 10, cov 1, equi-factor 0.45).

Two views x, y of one object differ by a known transformation with parameters z
(the relative rotation; a quaternion in 3DIEBench, (cos Δθ, sin Δθ) in 2-D). The
representation r = f(x) ∈ R^{d} is split into an invariant part r_inv = r[:d_i] and
an equivariant part r_eq = r[d_i:], each with its own projector (expander):
u = g_inv(r_inv), e = g_eq(r_eq). The predictor ψ_z is a linear map whose
weights come from a bias-free linear hypernetwork of z,

    W(z) = Σ_k z_k H_k ∈ R^{D_e×D_e},     ψ_z(e) = W(z) e,          (Sec. 3.2)

so ψ is bilinear in (e, z). With [a, b] the concatenation and v(·), c(·) the
VICReg variance and covariance terms (``jaxrep.ssl.vicreg``; unbiased covariance of
the global batch, γ = 1, ε = 1e-4), the loss is

    L = λ MSE(u_x, u_y) + λ·η MSE(ψ_z(e_x), e_y)
        + μ [v([u_x,e_x]) + v([u_y,e_y])]/2 + μ v(ψ_z(e_x))/2
        + ν [c([u_x,e_x]) + c([u_y,e_y])],

with λ = μ = 10, ν = 1, η = 0.45 (official). The variance/covariance terms act on
the concatenated embedding so that the two parts do not duplicate information; the
invariance acts on the invariant part only and the prediction on the equivariant
part only (the split is exact: the invariance term has zero gradient with respect to
the equivariant embedding and vice versa, a property test).

Not taken from the official code here: its online evaluators (trained alongside with
detached features; we probe after training) and the ResNet-18 backbone (the encoder
is any ``encode(params, x) -> r``; the experiment uses a small MLP on 16×16 digits).
"""
from __future__ import annotations

from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.probe.encoders import MLPEncoder
from jaxrep.ssl import vicreg

# Official loss weights (README command: --sim-coeff 10 --std-coeff 10 --cov-coeff 1
# --equi-factor 0.45).
SIM_WEIGHT, STD_WEIGHT, COV_WEIGHT, EQUI_FACTOR = 10.0, 10.0, 1.0, 0.45


def hypernetwork_weights(hyper_kernel: jax.Array, z: jax.Array) -> jax.Array:
  """W(z) = Σ_k z_k H_k: the predictor's weights from a bias-free linear hypernetwork.

  Args:
    hyper_kernel: (K, D_out, D_in) stacked H_k.
    z: (n, K) transformation parameters.

  Returns:
    (n, D_out, D_in) per-example weight matrices, linear in z.
  """
  chex.assert_rank(hyper_kernel, 3)
  chex.assert_rank(z, 2)
  return jnp.einsum("nk,koi->noi", z, hyper_kernel)


def hyper_linear_predict(hyper_kernel: jax.Array, e: jax.Array, z: jax.Array) -> jax.Array:
  """ψ_z(e) = W(z) e per example: e (n, D_in), z (n, K) → (n, D_out); bilinear in (e, z)."""
  chex.assert_rank(e, 2)
  return jnp.einsum("noi,ni->no", hypernetwork_weights(hyper_kernel, z), e)


class HyperLinearPredictor(nn.Module):
  """ψ_z(e) = (Σ_k z_k H_k) e, the official ``ParametrizedNet`` with a linear,
  bias-free hypernetwork and no hidden predictor layer (``--predictor ""``)."""

  transform_dim: int

  @nn.compact
  def __call__(self, e: jax.Array, z: jax.Array) -> jax.Array:
    dim = e.shape[-1]
    # Official init: torch Linear(K, D·D) default, U(±1/sqrt(K)); we use the same.
    bound = 1.0 / jnp.sqrt(self.transform_dim)
    hyper_kernel = self.param(
        "hyper_kernel", lambda key, shape: jax.random.uniform(key, shape, minval=-bound,
                                                              maxval=bound),
        (self.transform_dim, dim, dim))
    return hyper_linear_predict(hyper_kernel, e, z)


def _projector(features: Sequence[int]) -> MLPEncoder:
  """Dense–ReLU stack with widths ``features`` (the last layer linear)."""
  return MLPEncoder(latent_dim=features[-1], hidden=tuple(features[:-1]))


class SIEModel(nn.Module):
  """Encoder → representation r = [r_inv | r_eq] → two projectors and the predictor.

  ``__call__(x, y, z)`` returns a dict with the representations ``rep_x``, ``rep_y``
  (n, d), the embeddings ``inv_x``, ``inv_y`` (n, D_i), ``equi_x``, ``equi_y``
  (n, D_e) and ``equi_pred`` = ψ_z(e_x) (n, D_e). The projectors are Dense–ReLU
  (the official ones add BatchNorm; we leave it out so one Flax params tree is the
  whole state).
  """

  encoder: nn.Module
  inv_dim: int
  projector_inv: Sequence[int]
  projector_equi: Sequence[int]
  transform_dim: int

  def setup(self):
    self.proj_inv = _projector(self.projector_inv)
    self.proj_equi = _projector(self.projector_equi)
    self.predictor = HyperLinearPredictor(self.transform_dim)

  def represent(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def embed(self, rep: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.proj_inv(rep[:, :self.inv_dim]), self.proj_equi(rep[:, self.inv_dim:])

  def __call__(self, x: jax.Array, y: jax.Array, z: jax.Array) -> dict[str, jax.Array]:
    rep_x, rep_y = self.represent(x), self.represent(y)
    (inv_x, equi_x), (inv_y, equi_y) = self.embed(rep_x), self.embed(rep_y)
    return {"rep_x": rep_x, "rep_y": rep_y, "inv_x": inv_x, "inv_y": inv_y,
            "equi_x": equi_x, "equi_y": equi_y, "equi_pred": self.predictor(equi_x, z)}


def sie_loss(inv_x: jax.Array, inv_y: jax.Array, equi_x: jax.Array, equi_y: jax.Array,
             equi_pred: jax.Array, *, sim_weight: float = SIM_WEIGHT,
             std_weight: float = STD_WEIGHT, cov_weight: float = COV_WEIGHT,
             equi_factor: float = EQUI_FACTOR, axis_name: str | None = None,
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The SIE loss L (module docstring) and its unweighted terms.

  Args:
    inv_x, inv_y: (n, D_i) invariant embeddings of the two views.
    equi_x, equi_y: (n, D_e) equivariant embeddings; ``equi_x`` enters only
      through ``equi_pred`` and the variance/covariance of [u_x, e_x].
    equi_pred: (n, D_e) ψ_z(e_x), the prediction of ``equi_y``.
    sim_weight, std_weight, cov_weight, equi_factor: λ, μ, ν, η (10, 10, 1, 0.45).
    axis_name: the data axis (statistics over the global batch), or None.

  Returns:
    ``(L, {"invariance", "equivariance", "variance", "pred_variance", "covariance"})``
    with ``variance`` = [v(x)+v(y)]/2, ``pred_variance`` = v(ψ)/2 (as weighted in L)
    and ``covariance`` = c(x)+c(y).
  """
  chex.assert_equal_shape((inv_x, inv_y))
  chex.assert_equal_shape((equi_x, equi_y, equi_pred))
  invariance = jnp.mean((inv_x - inv_y) ** 2)
  equivariance = jnp.mean((equi_pred - equi_y) ** 2)
  both_x = jnp.concatenate([inv_x, equi_x], axis=1)
  both_y = jnp.concatenate([inv_y, equi_y], axis=1)
  _, terms = vicreg.vicreg_loss(both_x, both_y, axis_name=axis_name)
  pred_variance = vicreg.variance_term(vicreg._centred_covariance(equi_pred, axis_name)) / 2  # pylint: disable=protected-access
  loss = (sim_weight * invariance + sim_weight * equi_factor * equivariance
          + std_weight * (terms["variance"] + pred_variance)
          + cov_weight * terms["covariance"])
  return loss, {"invariance": invariance, "equivariance": equivariance,
                "variance": terms["variance"], "pred_variance": pred_variance,
                "covariance": terms["covariance"]}


def sie_loss_fn(model: SIEModel, *, sim_weight: float = SIM_WEIGHT,
                std_weight: float = STD_WEIGHT, cov_weight: float = COV_WEIGHT,
                equi_factor: float = EQUI_FACTOR,
                make_views: Callable[[jax.Array, dict], dict] | None = None):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for SIE.

  Args:
    model: an ``SIEModel``.
    sim_weight, std_weight, cov_weight, equi_factor: λ, μ, ν, η.
    make_views: optional ``make_views(rng, batch) -> {"view1", "view2", "z"}`` that
      draws the transformation inside the step (e.g. random rotations); without it
      the batch must hold ``view1``, ``view2`` and ``z``.

  Returns:
    ``loss_fn`` returning ``(L, {"sie": L, **terms})``.
  """

  def loss_fn(params, batch, rng, axis_name=None):
    views = batch if make_views is None else make_views(rng, batch)
    out = model.apply(params, views["view1"], views["view2"], views["z"])
    loss, terms = sie_loss(out["inv_x"], out["inv_y"], out["equi_x"], out["equi_y"],
                           out["equi_pred"], sim_weight=sim_weight, std_weight=std_weight,
                           cov_weight=cov_weight, equi_factor=equi_factor,
                           axis_name=axis_name)
    return loss, {"sie": loss, **terms}

  return loss_fn


def r2_score(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Coefficient of determination averaged over outputs (scikit-learn's
  ``uniform_average``): mean_j [1 − Σ_i (y_ij − ŷ_ij)² / Σ_i (y_ij − ȳ_j)²].
  predictions, targets (n, k); returns a scalar."""
  chex.assert_equal_shape((predictions, targets))
  residual = jnp.sum((targets - predictions) ** 2, axis=0)
  total = jnp.sum((targets - targets.mean(0)) ** 2, axis=0)
  return jnp.mean(1.0 - residual / total)
