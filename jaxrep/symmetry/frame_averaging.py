"""Frame averaging: exact E(3)/O(3) equivariance for any backbone.

Puny, Atzmon, Ben-Hamu, Misra, Grover, Smith, Lipman. "Frame Averaging for
Invariant and Equivariant Network Design", ICLR 2022.

A frame is a set-valued map F(X) ⊂ G with F(gX) = g F(X). Averaging a backbone
φ over it,

    ⟨φ⟩_F(X) = (1/|F(X)|) Σ_{g ∈ F(X)} g · φ(g⁻¹ · X),

is G-equivariant for any φ (invariant: drop the outer g·). For E(3) acting
on a point cloud X ∈ R^{n×3} by x_i ↦ R x_i + t the PCA frame is

    t = (1/n) Σ_i x_i,   C = Σ_i (x_i − t)(x_i − t)ᵀ = V Λ Vᵀ,
    F(X) = {(V diag(s), t) : s ∈ {±1}³}          (8 elements, O(3)),

or the 4 sign patterns with det V diag(s) = +1 for SE(3). Eigenvectors are
defined up to sign, and all signs are in the frame, so F(RX + t) = (R, t)·F(X)
whenever C has distinct eigenvalues (a measure-zero exception). Centroid and
covariance are permutation invariant, so a permutation-equivariant backbone
stays permutation-equivariant after averaging.

Here the averaged function takes positions (moved by R·+t), vectors such as
velocities (moved by R only) and invariant extras (passed through), and its
output is a point set (``"points"``: R·y + t), vectors (``"vectors"``: R·y) or
invariant (``"invariant"``).

The official n-body model (``FA_GNN``) also re-frames latent vector features
between GNN layers; this module averages once around the whole backbone, which
is the paper's definition and already exactly equivariant.
"""
from __future__ import annotations

from typing import Callable, Literal

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Group = Literal["O3", "SO3"]
Output = Literal["points", "vectors", "invariant"]

_SIGNS_O3 = np.array([[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)], float)


def pca_frames(points: jax.Array, group: Group = "O3") -> tuple[jax.Array, jax.Array]:
  """The PCA frame of a point cloud (n, 3): rotations (k, 3, 3) and the centroid (3,).

  Frame element j is x ↦ R_j x + t with R_j = V diag(s_j) (eigenvectors of the
  centred covariance as columns); k = 8 for O(3), 4 for SO(3).
  """
  chex.assert_rank(points, 2)
  chex.assert_axis_dimension(points, 1, 3)
  centre = points.mean(axis=0)
  centred = points - centre
  _, eigenvectors = jnp.linalg.eigh(centred.T @ centred)
  if group == "O3":
    signs = jnp.asarray(_SIGNS_O3, points.dtype)
  elif group == "SO3":
    first_two = jnp.asarray(_SIGNS_O3[::2, :2], points.dtype)  # the 4 patterns of (s1, s2)
    third = jnp.linalg.det(eigenvectors) * first_two[:, 0] * first_two[:, 1]
    signs = jnp.concatenate([first_two, third[:, None]], axis=1)
  else:
    raise ValueError(f"unknown frame group {group!r}; use 'O3' or 'SO3'")
  rotations = eigenvectors[None, :, :] * signs[:, None, :]
  return rotations, centre


def frame_average(backbone: Callable[..., jax.Array], group: Group = "O3",
                  output: Output = "points") -> Callable[..., jax.Array]:
  """⟨φ⟩_F for ``backbone(points, vectors, *extras)``.

  Returns ``f(points (n,3), vectors=None, *extras)`` that evaluates
  φ(R_jᵀ(X − t), R_jᵀV, *extras) for every frame element (R_j, t), maps each
  output back (R_j y + t, R_j y, or y) and averages. ``vectors`` may have any
  shape ending in 3 (or be None). Frames carry no gradient.
  """
  if output not in ("points", "vectors", "invariant"):
    raise ValueError(f"unknown output type {output!r}; use 'points', 'vectors' or 'invariant'")

  def averaged(points: jax.Array, vectors: jax.Array | None = None, *extras) -> jax.Array:
    rotations, centre = jax.lax.stop_gradient(pca_frames(points, group))

    def one(rotation):
      framed_points = (points - centre) @ rotation
      framed_vectors = None if vectors is None else vectors @ rotation
      y = backbone(framed_points, framed_vectors, *extras)
      if output == "points":
        return y @ rotation.T + centre
      if output == "vectors":
        return y @ rotation.T
      return y

    return jnp.mean(jax.vmap(one)(rotations), axis=0)

  return averaged


# ---------------------------------------------------------------- the backbone

class GraphConvLayer(nn.Module):
  """EGNN-repo GCL on a fully connected graph: m_ij = φ_e(h_i, h_j, a_ij),
  h_i ← h_i + φ_h(h_i, Σ_{j≠i} m_ij). Permutation-equivariant, not E(3)-equivariant."""

  hidden: int

  @nn.compact
  def __call__(self, h: jax.Array, edge_attr: jax.Array) -> jax.Array:
    n = h.shape[0]
    pair = jnp.concatenate([jnp.broadcast_to(h[:, None], (n, n, h.shape[-1])),
                            jnp.broadcast_to(h[None, :], (n, n, h.shape[-1])),
                            edge_attr], axis=-1)
    m = nn.silu(nn.Dense(self.hidden)(pair))
    m = nn.silu(nn.Dense(self.hidden)(m))
    m = m * (1.0 - jnp.eye(n, dtype=m.dtype))[:, :, None]
    update = nn.silu(nn.Dense(self.hidden)(jnp.concatenate([h, m.sum(axis=1)], axis=-1)))
    return h + nn.Dense(self.hidden)(update)


class NBodyGNN(nn.Module):
  """The n-body backbone of the EGNN/FA papers: node input [x_i, v_i], edge
  attributes [c_i c_j, ‖x_i − x_j‖²], ``layers`` GCLs, an MLP decoder to R³.

  ``__call__(points (n,3), vectors (n,3), charges (n,)) -> (n, 3)``, the
  signature ``frame_average`` expects.
  """

  hidden: int = 60
  layers: int = 4

  @nn.compact
  def __call__(self, points: jax.Array, vectors: jax.Array, charges: jax.Array) -> jax.Array:
    chex.assert_shape([points, vectors], (points.shape[0], 3))
    dist2 = jnp.sum((points[:, None] - points[None, :]) ** 2, axis=-1)
    edge_attr = jnp.stack([jnp.outer(charges, charges), dist2], axis=-1)
    h = nn.Dense(self.hidden)(jnp.concatenate([points, vectors], axis=-1))
    for _ in range(self.layers):
      h = GraphConvLayer(self.hidden)(h, edge_attr)
    return nn.Dense(3)(nn.silu(nn.Dense(self.hidden)(h)))
