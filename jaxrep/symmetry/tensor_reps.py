"""Equivariant linear maps between tensor representations of subgroups of O(3).

A matrix group G ⊂ GL(3) is given by Lie-algebra generators A_k and discrete
generators h_m of its defining representation; a representation is a sum of
tensor representations T_r = (R³)^{⊗r} (r = 0 scalars, 1 vectors, 2 matrices)
on which g acts by g^{⊗r}. The G-equivariant linear maps W: V_in → V_out form

    E = {W : dρ_out(A_k) W − W dρ_in(A_k) = 0,  ρ_out(h_m) W − W ρ_in(h_m) = 0},

the null space of the stacked constraints (found with an SVD, as in EMLP:
Finzi, Welling, Wilson, ICML 2021). With Q an orthonormal basis of E,
P = Q Qᵀ is the orthogonal projector onto it. Projectors are built per block
of tensor ranks (the constraint decouples across channels), which keeps them
small; ``dense_projector`` builds the full one for tests.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import chex
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
