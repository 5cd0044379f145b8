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

and ``auto_lambda`` retunes the strengths once during training:
λ_j ← λ_j · (min_{k: λ_k≠0} R_k / R_j)^p  (p = 2; a zero λ stays zero), so the
symmetry the data respect (smallest R) keeps the largest strength.

Representations are sums of tensor representations T_r of the 3-d defining
representation (r = 0 scalars, 1 vectors, 2 matrices), so every group here is
a subgroup of O(3) acting by g ↦ g^{⊗r}. Projectors are built per block of
tensor ranks (the constraint decouples across channels), which keeps them
small; ``dense_projector`` builds the full one for tests.

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

import dataclasses
import functools
from typing import NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


# ---------------------------------------------------------------- groups

class MatrixGroup(NamedTuple):
  """A subgroup of GL(3) by generators of its defining representation."""

  name: str
  lie_algebra: tuple        # (k, 3, 3) as nested tuples (hashable)
  discrete: tuple           # (m, 3, 3)


def _so3_generators() -> np.ndarray:
  generators = np.zeros((3, 3, 3))
  for axis in range(3):
    i, j = [a for a in range(3) if a != axis]
    generators[axis, j, i], generators[axis, i, j] = 1.0, -1.0
  return generators


def _tuple(array: np.ndarray) -> tuple:
  return tuple(map(tuple, np.asarray(array, float).reshape(-1, 9).tolist()))


def o3() -> MatrixGroup:
  """O(3): so(3) plus the point reflection −I."""
  return MatrixGroup("O3", _tuple(_so3_generators()), _tuple(-np.eye(3)[None]))


def so3() -> MatrixGroup:
  return MatrixGroup("SO3", _tuple(_so3_generators()), ())


def o2_about(axis: int) -> MatrixGroup:
  """O(2) acting on the plane orthogonal to ``axis`` and fixing that axis
  (EMLP's Embed(O(2), 3, ·)): the rotation generator about the axis and one
  in-plane reflection."""
  if axis not in (0, 1, 2):
    raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
  reflection = np.eye(3)
  reflection[[a for a in range(3) if a != axis][0]] *= -1
  return MatrixGroup(f"O2_{'xyz'[axis]}", _tuple(_so3_generators()[axis][None]),
                     _tuple(reflection[None]))


def generators(group: MatrixGroup) -> tuple[np.ndarray, np.ndarray]:
  lie = np.asarray(group.lie_algebra, float).reshape(-1, 3, 3)
  disc = np.asarray(group.discrete, float).reshape(-1, 3, 3)
  return lie, disc


def sample_element(key: jax.Array, group: MatrixGroup) -> jax.Array:
  """A random element (3, 3): exp of a random Lie-algebra element times a
  random product of discrete generators (spread over the group, not Haar)."""
  lie, disc = generators(group)
  key_z, key_d = jax.random.split(key)
  dtype = jnp.result_type(float)
  z = 3.0 * jax.random.normal(key_z, (lie.shape[0],), dtype)
  g = jax.scipy.linalg.expm(jnp.einsum("k,kij->ij", z, jnp.asarray(lie, dtype)))
  for i, h in enumerate(disc):
    flip = jax.random.bernoulli(jax.random.fold_in(key_d, i))
    g = jnp.where(flip, jnp.asarray(h, dtype) @ g, g)
  return g


# ---------------------------------------------------------------- tensor representations

@dataclasses.dataclass(frozen=True)
class TensorRep:
  """⊕_r counts[r]·T_r with T_r = (R³)^{⊗r}; flattened as scalars, then vectors
  (channel-major, 3 each), then matrices (row-major, 9 each)."""

  counts: tuple[int, ...]

  @property
  def size(self) -> int:
    return sum(n * 3**r for r, n in enumerate(self.counts))

  def blocks(self) -> list[tuple[int, int, int]]:
    """(rank, start, stop) of each nonempty rank block."""
    out, start = [], 0
    for r, n in enumerate(self.counts):
      if n:
        out.append((r, start, start + n * 3**r))
        start += n * 3**r
    return out


def tensor_rho(g: jax.Array, rank: int) -> jax.Array:
  """g^{⊗rank}, (3^rank, 3^rank)."""
  out = jnp.ones((1, 1), g.dtype)
  for _ in range(rank):
    out = jnp.kron(out, g)
  return out


def rep_rho(rep: TensorRep, g: jax.Array) -> jax.Array:
  """The block-diagonal matrix of g acting on ``rep``, (size, size)."""
  return jax.scipy.linalg.block_diag(*[jnp.kron(jnp.eye(n, dtype=g.dtype), tensor_rho(g, r))
                                       for r, n in enumerate(rep.counts) if n])


def _tensor_lie(a: np.ndarray, rank: int) -> np.ndarray:
  """dρ_r(A) = Σ_i I⊗…⊗A⊗…⊗I (i-th slot)."""
  out = np.zeros((3**rank, 3**rank))
  for slot in range(rank):
    term = np.ones((1, 1))
    for i in range(rank):
      term = np.kron(term, a if i == slot else np.eye(3))
    out += term
  return out


def _tensor_disc(h: np.ndarray, rank: int) -> np.ndarray:
  out = np.ones((1, 1))
  for _ in range(rank):
    out = np.kron(out, h)
  return out


def _rep_mats(rep: TensorRep, mats: np.ndarray, fn) -> list[np.ndarray]:
  from scipy.linalg import block_diag
  return [block_diag(*[np.kron(np.eye(n), fn(m, r)) for r, n in enumerate(rep.counts) if n])
          for m in mats]


# ---------------------------------------------------------------- projectors

def equivariant_basis(lie_in: Sequence[np.ndarray], lie_out: Sequence[np.ndarray],
                      disc_in: Sequence[np.ndarray], disc_out: Sequence[np.ndarray],
                      tol: float = 1e-8) -> np.ndarray:
  """Orthonormal basis Q (d_out·d_in, r) of {W : ρ_out W = W ρ_in} (row-major vec W).

  Constraints: (dρ_out(A) ⊗ I − I ⊗ dρ_in(A)ᵀ) vec W = 0 for Lie generators,
  (ρ_out(h) ⊗ I − I ⊗ ρ_in(h)ᵀ) vec W = 0 for discrete ones; Q spans the
  null space (singular values ≤ tol·max) of the stacked constraints.
  """
  d_in = (lie_in or disc_in)[0].shape[0]
  d_out = (lie_out or disc_out)[0].shape[0]
  eye_in, eye_out = np.eye(d_in), np.eye(d_out)
  rows = [np.kron(a_out, eye_in) - np.kron(eye_out, a_in.T) for a_in, a_out in zip(lie_in, lie_out)]
  rows += [np.kron(h_out, eye_in) - np.kron(eye_out, h_in.T)
           for h_in, h_out in zip(disc_in, disc_out)]
  constraints = np.concatenate(rows, axis=0)
  _, singular, vt = np.linalg.svd(constraints)
  scale = max(singular.max(initial=0.0), 1.0)
  rank = int(np.sum(singular > tol * scale))
  return vt[rank:].T


@functools.lru_cache(maxsize=None)
def rank_block_projector(group: MatrixGroup, rank_out: int, rank_in: int) -> np.ndarray:
  """P for maps T_rank_in → T_rank_out (3^{out+in} square, float64)."""
  lie, disc = generators(group)
  if rank_in == 0 and rank_out == 0:
    return np.eye(1)
  basis = equivariant_basis([_tensor_lie(a, rank_in) for a in lie],
                            [_tensor_lie(a, rank_out) for a in lie],
                            [_tensor_disc(h, rank_in) for h in disc],
                            [_tensor_disc(h, rank_out) for h in disc])
  return basis @ basis.T


@functools.partial(jax.jit, static_argnames=("group", "rep_in", "rep_out"))
def project_weight(w: jax.Array, group: MatrixGroup, rep_in: TensorRep,
                   rep_out: TensorRep) -> jax.Array:
  """P_G W for W (rep_out.size, rep_in.size), block by block of tensor ranks."""
  chex.assert_shape(w, (rep_out.size, rep_in.size))
  rows = []
  for r_out, s_out, e_out in rep_out.blocks():
    cols = []
    m, d_out = rep_out.counts[r_out], 3**r_out
    for r_in, s_in, e_in in rep_in.blocks():
      n, d_in = rep_in.counts[r_in], 3**r_in
      p = jnp.asarray(rank_block_projector(group, r_out, r_in), w.dtype)
      block = w[s_out:e_out, s_in:e_in].reshape(m, d_out, n, d_in).transpose(0, 2, 1, 3)
      block = block.reshape(m, n, d_out * d_in) @ p
      cols.append(block.reshape(m, n, d_out, d_in).transpose(0, 2, 1, 3).reshape(m * d_out, n * d_in))
    rows.append(jnp.concatenate(cols, axis=1))
  return jnp.concatenate(rows, axis=0)


@functools.partial(jax.jit, static_argnames=("group", "rep_out"))
def project_bias(b: jax.Array, group: MatrixGroup, rep_out: TensorRep) -> jax.Array:
  """P_G b: the G-invariant part of a bias in ``rep_out``."""
  return project_weight(b[:, None], group, TensorRep((1,)), rep_out)[:, 0]


def dense_projector(group: MatrixGroup, rep_in: TensorRep, rep_out: TensorRep) -> np.ndarray:
  """The full (d_out·d_in)² projector from one SVD of the layer's constraints
  (reference for tests; ``project_weight`` is the block-wise equivalent)."""
  lie, disc = generators(group)
  basis = equivariant_basis(_rep_mats(rep_in, lie, _tensor_lie), _rep_mats(rep_out, lie, _tensor_lie),
                            _rep_mats(rep_in, disc, _tensor_disc),
                            _rep_mats(rep_out, disc, _tensor_disc))
  return basis @ basis.T


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
