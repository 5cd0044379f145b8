"""Projection-based soft equivariance under mixed symmetries (PER).

Kim, Lee, Yang, Lee. "Regularizing Towards Soft Equivariance Under Mixed
Symmetries", ICML 2023 (official code: kim-hyunsu/PER, on EMLP).

For a linear layer W: V_in → V_out and a matrix group G_j (given by its
Lie-algebra generators A_k and discrete generators h_m in the defining
representation), the G_j-equivariant weights form the subspace

    E_j = {W : dρ_out(A_k) W − W dρ_in(A_k) = 0,  ρ_out(h_m) W − W ρ_in(h_m) = 0},

the null space of a stacked constraint matrix (found with an SVD). With Q_j an
orthonormal basis of E_j, P_j = Q_j Q_jᵀ is the orthogonal projector onto it and

    R_j(W) = ½ ‖W − P_j W‖²     (and likewise for the bias, with V_in trivial)

is zero exactly when the layer is G_j-equivariant. The training loss is

    L = MSE + Σ_j λ_j Σ_layers R_j + wd · ½‖W‖²,

(``per_loss_fn``), and ``auto_lambda`` retunes the strengths once during training:
λ_j ← λ_j · (min_{k: λ_k≠0} R_k / R_j)^p  (p = 2; a zero λ stays zero), so the
symmetry the data respect (smallest R) keeps the largest strength.

Representations are sums of tensor representations T_r of the 3-d defining
representation (r = 0 scalars, 1 vectors, 2 matrices), so every group here is
a subgroup of O(3) acting by g ↦ g^{⊗r}; the groups, representations and the
projectors P_j (built per block of tensor ranks) are in
``jaxrep.symmetry.tensor_reps``, re-exported here.

The network (``TensorMLP``) follows SoftEMLP's block: a soft linear layer into
the hidden representation plus one gate scalar per non-scalar channel, a fixed
O(3)-equivariant bilinear term (outer products of vector pairs into matrix
channels, matrix–vector products into vector channels, dot products into
scalars, each with a learned invariant per-channel scale), and the gated nonlinearity (swish on scalars, σ(gate)·x on tensors).
Simplification: SoftEMLP's bilinear layer is a learned EMLP BiLinear; ours is
a fixed pattern of equivariant products with learned per-channel scales, and
hidden tensors stop at rank 2.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# The representation side (groups, tensor representations, projectors) lives in
# tensor_reps; re-exported here as this paper's public names.
from jaxrep.symmetry.tensor_reps import (MatrixGroup, TensorRep, dense_projector, o2_about, o3,
                                         project_bias, project_weight, rank_block_projector,
                                         rep_rho, sample_element, so3)


# ---------------------------------------------------------------- regularizer and auto-λ

@functools.partial(jax.jit, static_argnames=("group", "rep_in", "rep_out"))
def projection_penalty(w: jax.Array, b: jax.Array, group: MatrixGroup, rep_in: TensorRep,
                       rep_out: TensorRep) -> jax.Array:
  """R = ½‖W − P W‖² + ½‖b − P b‖²."""
  dw = w - project_weight(w, group, rep_in, rep_out)
  db = b - project_bias(b, group, rep_out)
  return 0.5 * jnp.sum(dw**2) + 0.5 * jnp.sum(db**2)


def auto_lambda(lambdas: jax.Array, penalties: jax.Array, power: float = 2.0) -> jax.Array:
  """λ_j ← λ_j (min_{k: λ_k ≠ 0} R_k / R_j)^power; zero strengths stay zero."""
  active = lambdas != 0
  smallest = jnp.min(jnp.where(active, penalties, jnp.inf))
  return jnp.where(active, lambdas * (smallest / penalties) ** power, 0.0)


# ---------------------------------------------------------------- the network

def gated(rep: TensorRep) -> TensorRep:
  """rep plus one gate scalar per non-scalar channel (gates follow the scalars)."""
  extra = sum(rep.counts[1:])
  return TensorRep((rep.counts[0] + extra,) + tuple(rep.counts[1:]))


def _split(x: jax.Array, rep: TensorRep) -> list[jax.Array]:
  """Blocks of a (..., size) array: ranks 0, 1, 2 as (..., n), (..., n, 3), (..., n, 3, 3)."""
  parts = []
  start = 0
  for r, n in enumerate(rep.counts):
    stop = start + n * 3**r
    parts.append(x[..., start:stop].reshape(*x.shape[:-1], n, *([3] * r)))
    start = stop
  return parts


def equivariant_products(x: jax.Array, rep: TensorRep,
                         coefficients: tuple[jax.Array, jax.Array, jax.Array] | None = None
                         ) -> jax.Array:
  """The O(3)-equivariant bilinear term on a gated rep (n0 + g, n1, n2), as
  the increments it adds (gates get none): matrix k += a_k v_{2k} ⊗ v_{2k+1},
  vector c += b_c M_c v_c, scalar c += s_c v_c · v_{c+1} (channel indices mod
  the channel count; a, b, s are invariant per-channel coefficients, 1 if None)."""
  counts = tuple(rep.counts) + (0,) * (3 - len(rep.counts))
  n1, n2 = counts[1], counts[2]
  n0 = counts[0] - n1 - n2
  if coefficients is None:
    coefficients = (jnp.ones(n0, x.dtype), jnp.ones(n1, x.dtype), jnp.ones(n2, x.dtype))
  c_s, c_v, c_m = coefficients
  s, v, m = _split(x, TensorRep(counts))
  ds, dv, dm = jnp.zeros_like(s), jnp.zeros_like(v), jnp.zeros_like(m)
  if n1 and n2:
    left, right = v[..., (2 * np.arange(n2)) % n1, :], v[..., (2 * np.arange(n2) + 1) % n1, :]
    dm = c_m[:, None, None] * left[..., :, None] * right[..., None, :]
    dv = c_v[:, None] * jnp.einsum("...cij,...cj->...ci", m[..., np.arange(n1) % n2, :, :], v)
  if n1 and n0:
    dots = jnp.sum(v[..., np.arange(n0) % n1, :] * v[..., (np.arange(n0) + 1) % n1, :], -1)
    ds = ds.at[..., :n0].set(c_s * dots)
  return jnp.concatenate([ds, dv.reshape(*x.shape[:-1], -1), dm.reshape(*x.shape[:-1], -1)], -1)


def gated_nonlinearity(x: jax.Array, rep: TensorRep) -> jax.Array:
  """On gated(rep): swish on scalars, σ(gate_c)·x_c on tensor channels; returns rep."""
  counts = tuple(rep.counts) + (0,) * (3 - len(rep.counts))
  n0, n1, n2 = counts
  s, v, m = _split(x, gated(TensorRep(counts)))
  scalars, gates = s[..., :n0], jax.nn.sigmoid(s[..., n0:])
  v = v * gates[..., :n1, None]
  m = m * gates[..., n1:, None, None]
  return jnp.concatenate([jax.nn.swish(scalars), v.reshape(*x.shape[:-1], -1),
                          m.reshape(*x.shape[:-1], -1)], -1)


class TensorMLP(nn.Module):
  """SoftEMLP-style network rep_in → [hidden]×L → rep_out.

  Each hidden block: linear (dense W, b) into gated(hidden), the equivariant
  products (per-channel invariant coefficients, initialised at
  ``product_scale`` like EMLP's BiLinear weights, not regularized), the gated
  nonlinearity. With ``exact_group`` every
  layer uses P_G W and P_G b instead (an exactly G-equivariant EMLP-style
  model); without it the weights are unconstrained and PER regularizes them.
  Params: ``linear_{i}_kernel`` (d_out, d_in), ``linear_{i}_bias`` and
  ``products_{i}_*`` coefficients.
  """

  rep_in: TensorRep
  hidden: TensorRep
  rep_out: TensorRep
  num_layers: int = 3
  exact_group: MatrixGroup | None = None
  product_scale: float = 0.1

  def layer_reps(self) -> list[tuple[TensorRep, TensorRep]]:
    ins = [self.rep_in] + [self.hidden] * self.num_layers
    outs = [gated(self.hidden)] * self.num_layers + [self.rep_out]
    return list(zip(ins, outs))

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, (rep_in, rep_out) in enumerate(self.layer_reps()):
      w = self.param(f"linear_{i}_kernel", nn.initializers.orthogonal(), (rep_out.size, rep_in.size))
      b = self.param(f"linear_{i}_bias",
                     lambda k, s: jax.random.uniform(k, s) / jnp.sqrt(s[0]), (rep_out.size,))
      if self.exact_group is not None:
        w = project_weight(w, self.exact_group, rep_in, rep_out)
        b = project_bias(b, self.exact_group, rep_out)
      x = x @ w.T + b
      if i < self.num_layers:
        n1, n2 = rep_out.counts[1], rep_out.counts[2]
        n0 = rep_out.counts[0] - n1 - n2
        init = nn.initializers.constant(self.product_scale)
        coefficients = (self.param(f"products_{i}_scalar", init, (n0,)),
                        self.param(f"products_{i}_vector", init, (n1,)),
                        self.param(f"products_{i}_matrix", init, (n2,)))
        x = gated_nonlinearity(x + equivariant_products(x, rep_out, coefficients), self.hidden)
    return x


def _block_residual_norms(w: jax.Array, projectors, rep_in: TensorRep,
                          rep_out: TensorRep) -> jax.Array:
  """Σ over rank blocks of ‖x − P_j x‖² for a stack of groups j, (G,)."""
  total = 0.0
  for r_out, s_out, e_out in rep_out.blocks():
    m, d_out = rep_out.counts[r_out], 3**r_out
    for r_in, s_in, e_in in rep_in.blocks():
      n, d_in = rep_in.counts[r_in], 3**r_in
      block = w[s_out:e_out, s_in:e_in].reshape(m, d_out, n, d_in).transpose(0, 2, 1, 3)
      block = block.reshape(m, n, d_out * d_in)
      p = jnp.asarray(np.stack([projectors(r_out, r_in, j) for j in range(projectors.size)]),
                      w.dtype)
      residual = block[None] - jnp.einsum("gde,mne->gmnd", p, block)
      total = total + jnp.sum(residual**2, axis=(1, 2, 3))
  return total


class _Projectors:
  def __init__(self, groups: Sequence[MatrixGroup]):
    self.groups, self.size = tuple(groups), len(groups)

  def __call__(self, r_out: int, r_in: int, j: int) -> np.ndarray:
    return rank_block_projector(self.groups[j], r_out, r_in)


def network_penalties(params, model: TensorMLP, groups: Sequence[MatrixGroup]) -> jax.Array:
  """(len(groups),): Σ_layers R_j = ½‖W − P_j W‖² + ½‖b − P_j b‖² of a TensorMLP's
  params, all groups of a rank block in one contraction."""
  p = params["params"]
  projectors = _Projectors(groups)
  total = 0.0
  for i, (rep_in, rep_out) in enumerate(model.layer_reps()):
    w, b = p[f"linear_{i}_kernel"], p[f"linear_{i}_bias"]
    total = total + _block_residual_norms(w, projectors, rep_in, rep_out)
    total = total + _block_residual_norms(b[:, None], projectors, TensorRep((1,)), rep_out)
  return 0.5 * total


def per_loss_fn(model: TensorMLP, groups: Sequence[MatrixGroup], weight_decay: float):
  """PER's training loss as ``loss_fn(params, batch, rng) -> (loss, metrics)``:

      L = mean ‖f(x) − y‖² + Σ_j λ_j R_j(θ) + wd · ½ Σ_layers ‖W‖²,

  over a batch ``{"x", "y", "lambdas"}`` (λ (len(groups),) rides with the batch,
  so auto-tuning changes it without rebuilding the step). Metrics: ``mse`` and
  the unweighted ``penalties`` R_j (len(groups),)."""

  def loss_fn(params, batch, rng):
    del rng
    mse = jnp.mean((model.apply(params, batch["x"]) - batch["y"]) ** 2)
    penalties = network_penalties(params, model, groups)
    decay = sum(0.5 * jnp.sum(v**2) for k, v in params["params"].items()
                if k.startswith("linear_"))
    loss = mse + jnp.dot(batch["lambdas"], penalties) + weight_decay * decay
    return loss, {"mse": mse, "penalties": penalties}

  return loss_fn


# ---------------------------------------------------------------- the modified-inertia task

def modified_inertia(key: jax.Array, num: int, num_bodies: int = 5, alpha: float = 0.3,
                     axis: int = 2) -> tuple[jax.Array, jax.Array]:
  """PER's ModifiedInertia: x = [softplus(z_1..k) masses, z positions (k×3)],
  z ~ N(0, I); y = I + α (I e_a) e_aᵀ flattened row-major, with
  I = Σ_i m_i (‖r_i‖² I₃ − r_i r_iᵀ). O(2) about axis a is an exact symmetry,
  O(3) an approximate one."""
  z = jax.random.normal(key, (num, 4 * num_bodies))
  masses = jax.nn.softplus(z[:, :num_bodies])
  positions = z[:, num_bodies:].reshape(num, num_bodies, 3)
  x = jnp.concatenate([masses, positions.reshape(num, -1)], axis=1)
  return x, inertia_target(x, num_bodies, alpha, axis)


def inertia_target(x: jax.Array, num_bodies: int = 5, alpha: float = 0.3, axis: int = 2) -> jax.Array:
  masses = x[:, :num_bodies]
  r = x[:, num_bodies:].reshape(x.shape[0], num_bodies, 3)
  eye = jnp.eye(3, dtype=x.dtype)
  inertia = jnp.einsum("nk,nkij->nij", masses,
                       jnp.sum(r**2, -1)[..., None, None] * eye - r[..., :, None] * r[..., None, :])
  e = eye[axis]
  target = inertia + alpha * (inertia @ e)[:, :, None] * e[None, None, :]
  return target.reshape(x.shape[0], 9)
