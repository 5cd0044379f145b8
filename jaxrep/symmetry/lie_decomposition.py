"""Lie group decompositions: Monte-Carlo group convolutions on R²⋊GL⁺(2) and R²⋊SL(2).

Mironenco, Forré. "Lie Group Decompositions for Equivariant Neural Networks",
ICLR 2024 (official code: mirceamironenco/rgenn).

GL⁺(2) and SL(2) are neither compact nor abelian, so their exponential map is
not surjective and there is no finite Haar measure to average over. The paper
works through the (left) polar decomposition

    g = P R,   P = (g gᵀ)^{1/2} ∈ SPD(2) (det P = 1 for SL(2)),   R = P⁻¹ g ∈ SO(2),

computed with one ``eigh`` of g gᵀ, so that log P (symmetric, traceless for SL)
and the angle of R are global coordinates on the group. Group elements are
sampled factor by factor: R from SO(2) (equidistant angles over the circle, the
official default, or Haar), P = exp(S) with S Gaussian in the symmetric (or
traceless symmetric) basis with variance ``spd_var`` (log-normal SPD), and the
network uses g = P^{1/2} R.

Layers (kernels are SIREN implicit neural representations, as in the paper):

* lifting, R² → R²⋊G, with group samples g_1..g_N:
      [L f](x, g_k) = Σ_y f(x + y) κ(g_k⁻¹ y) |det g_k⁻¹|;
* group convolution, R²⋊G → R²⋊G, input samples g̃_i, output samples g_j:
      [C f](x, g_j) = Σ_i Σ_y f(x + y, g̃_i) κ(g_j⁻¹ y, ξ(g_j⁻¹ g̃_i)) / |det g̃_i|,
  with ξ the polar coordinates of the relative element;
* global max pooling over space and group samples, then a linear read-out.

Kernels are masked to the unit disc of the transformed grid (a hard mask for
SL(2), a smooth sigmoid mask for GL⁺(2), as in the official layers). Both
layers are exactly equivariant when the input is transformed by h and every
sample set is left-multiplied by h (g ↦ h g), which is exact on a pixel grid
for 90° rotations; with random samples the network is equivariant in
distribution.

Deviation: the rotation part of ξ is fed to the kernel as (cos θ, sin θ)
instead of θ, so the kernel is continuous on the group.
"""
from __future__ import annotations

from typing import Literal

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep import groups

GroupName = Literal["gl2", "sl2"]

# Orthonormal (trace-metric) bases of symmetric and traceless symmetric 2×2 matrices.
_ROOT_HALF = 0.5**0.5
SYMMETRIC_BASIS = np.array([[[1.0, 0.0], [0.0, 0.0]],
                             [[0.0, _ROOT_HALF], [_ROOT_HALF, 0.0]],
                             [[0.0, 0.0], [0.0, 1.0]]])
TRACELESS_SYMMETRIC_BASIS = np.array([[[_ROOT_HALF, 0.0], [0.0, -_ROOT_HALF]],
                                       [[0.0, _ROOT_HALF], [_ROOT_HALF, 0.0]]])


# ---------------------------------------------------------------- SPD functions

def _spd_apply(matrix: jax.Array, fn) -> jax.Array:
  """V fn(Λ) Vᵀ for a symmetric matrix (..., 2, 2) = V Λ Vᵀ."""
  values, vectors = jnp.linalg.eigh(matrix)
  return (vectors * fn(values)[..., None, :]) @ jnp.swapaxes(vectors, -1, -2)


def sym_expm(s: jax.Array) -> jax.Array:
  """exp of a symmetric matrix (SPD result)."""
  return _spd_apply(s, jnp.exp)


def spd_logm(p: jax.Array) -> jax.Array:
  """log of an SPD matrix (symmetric result)."""
  return _spd_apply(p, jnp.log)


def spd_sqrt(p: jax.Array) -> jax.Array:
  return _spd_apply(p, jnp.sqrt)


# ---------------------------------------------------------------- polar decomposition

def polar_decomposition(g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Left polar decomposition g = P R of g ∈ GL⁺(2), batched over leading axes.

  P = (g gᵀ)^{1/2} is SPD, R = P⁻¹ g ∈ SO(2); for g ∈ SL(2), det P = 1.
  """
  values, vectors = jnp.linalg.eigh(g @ jnp.swapaxes(g, -1, -2))
  half_log = 0.5 * jnp.log(values)
  vt = jnp.swapaxes(vectors, -1, -2)
  p = (vectors * jnp.exp(half_log)[..., None, :]) @ vt
  p_inv = (vectors * jnp.exp(-half_log)[..., None, :]) @ vt
  return p, p_inv @ g


def rotation_angle(r: jax.Array) -> jax.Array:
  """θ ∈ (−π, π] of R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]."""
  return jnp.arctan2(r[..., 1, 0], r[..., 0, 0])


def polar_coordinates(g: jax.Array, group: GroupName) -> jax.Array:
  """Global coordinates of g from its polar factors: coefficients of log P in
  the (traceless) symmetric basis, then (cos θ, sin θ) of R; (..., 4) for SL(2),
  (..., 5) for GL⁺(2)."""
  p, r = polar_decomposition(g)
  basis = TRACELESS_SYMMETRIC_BASIS if group == "sl2" else SYMMETRIC_BASIS
  log_p = spd_logm(p)
  coefficients = jnp.einsum("...ij,kij->...k", log_p, jnp.asarray(basis, g.dtype))
  theta = rotation_angle(r)
  return jnp.concatenate([coefficients, jnp.cos(theta)[..., None], jnp.sin(theta)[..., None]],
                         axis=-1)


# ---------------------------------------------------------------- sampling

def sample_rotations(key: jax.Array, num: int, mode: str = "equidistant") -> jax.Array:
  """(num, 2, 2) rotations: ``"equidistant"`` θ_k = −π + 2πk/num (deterministic,
  the official default) or ``"haar"`` (θ ~ U[−π, π))."""
  dtype = jnp.result_type(float)
  if mode == "equidistant":
    theta = -jnp.pi + 2 * jnp.pi * jnp.arange(num, dtype=dtype) / num
  elif mode == "haar":
    theta = jax.random.uniform(key, (num,), dtype, -jnp.pi, jnp.pi)
  else:
    raise ValueError(f"unknown rotation sampler {mode!r}; use 'equidistant' or 'haar'")
  c, s = jnp.cos(theta), jnp.sin(theta)
  return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)


def sample_spd(key: jax.Array, num: int, group: GroupName, spd_var: float = 0.1) -> jax.Array:
  """Log-normal SPD samples P = exp(Σ_k z_k B_k), z ~ N(0, spd_var·I), with B
  the (traceless, for SL(2)) symmetric basis; (num, 2, 2)."""
  basis = jnp.asarray(TRACELESS_SYMMETRIC_BASIS if group == "sl2" else SYMMETRIC_BASIS,
                      jnp.result_type(float))
  z = jnp.sqrt(spd_var) * jax.random.normal(key, (num, basis.shape[0]), basis.dtype)
  return sym_expm(jnp.einsum("nk,kij->nij", z, basis))


def sample_group(key: jax.Array, num: int, group: GroupName, spd_var: float = 0.1,
                 rotations: str = "equidistant") -> tuple[jax.Array, jax.Array]:
  """``num`` elements g = P^{1/2} R and their inverses R⁻¹ P^{−1/2}, each (num, 2, 2)."""
  key_p, key_r = jax.random.split(key)
  p = sample_spd(key_p, num, group, spd_var)
  r = sample_rotations(key_r, num, rotations)
  half = spd_sqrt(p)
  half_inv = spd_sqrt(jnp.linalg.inv(p))
  return half @ r, jnp.swapaxes(r, -1, -2) @ half_inv


# ---------------------------------------------------------------- kernels

def kernel_offsets(kernel_size: int) -> jax.Array:
  """Kernel tap offsets in normalised coordinates (row, col), (K, K, 2):
  (2a + 1)/K − 1, i.e. pixel offsets from the centre times 2/K."""
  dtype = jnp.result_type(float)
  ticks = (2 * jnp.arange(kernel_size, dtype=dtype) + 1) / kernel_size - 1
  rows, cols = jnp.meshgrid(ticks, ticks, indexing="ij")
  return jnp.stack([rows, cols], axis=-1)


def _siren_init(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class Siren(nn.Module):
  """SIREN κ: R^d → R^out, sin(w0·(W x + b)) layers then a linear layer
  (Sitzmann et al. 2020 init; final layer scaled by √(gain/hidden)/√fan_in)."""

  out_features: int
  fan_in: int
  hidden: int = 32
  num_hidden: int = 2
  w0: float = 10.0
  final_gain: float = 6.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    h = jnp.sin(self.w0 * nn.Dense(self.hidden, kernel_init=_siren_init(1.0 / in_features))(x))
    for _ in range(self.num_hidden - 1):
      bound = (6.0 / self.hidden) ** 0.5 / self.w0
      h = jnp.sin(self.w0 * nn.Dense(self.hidden, kernel_init=_siren_init(bound))(h))
    final = (self.final_gain / self.hidden) ** 0.5 / self.fan_in**0.5
    return nn.Dense(self.out_features, kernel_init=_siren_init(final),
                    bias_init=nn.initializers.zeros)(h)


def _mask(points: jax.Array, group: GroupName) -> jax.Array:
  """Hard unit-disc mask (SL(2)) or smooth sigmoid(2(1 − ‖y‖)) mask (GL⁺(2))."""
  radius = jnp.linalg.norm(points, axis=-1)
  if group == "sl2":
    return (radius <= 1.0).astype(points.dtype)
  return jax.nn.sigmoid(2.0 * (1.0 - radius))


class LiftingConv(nn.Module):
  """[L f](x, g_k) = Σ_y f(x + y) κ(g_k⁻¹ y) |det g_k⁻¹| (valid padding).

  ``__call__(images (B,H,W,C), g_inv (N,2,2)) -> (B, H−K+1, W−K+1, features, N)``.
  """

  features: int
  kernel_size: int
  group: GroupName = "sl2"
  hidden: int = 32
  w0: float = 10.0

  @nn.compact
  def __call__(self, images: jax.Array, g_inv: jax.Array) -> jax.Array:
    chex.assert_rank(images, 4)
    k, c, n = self.kernel_size, images.shape[-1], g_inv.shape[0]
    points = jnp.einsum("nij,abj->nabi", g_inv, kernel_offsets(k))          # (N,K,K,2)
    kappa = Siren(c * self.features, fan_in=c * k * k, hidden=self.hidden, w0=self.w0)(points)
    kappa = kappa * _mask(points, self.group)[..., None]
    if self.group == "gl2":
      kappa = kappa * jnp.abs(jnp.linalg.det(g_inv))[:, None, None, None]
    kernel = kappa.reshape(n, k, k, c, self.features).transpose(1, 2, 3, 4, 0)
    kernel = kernel.reshape(k, k, c, self.features * n)
    out = jax.lax.conv_general_dilated(images, kernel.astype(images.dtype), (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out.reshape(*out.shape[:3], self.features, n)


class GroupConv(nn.Module):
  """[C f](x, g_j) = Σ_i Σ_y f(x + y, g̃_i) κ(g_j⁻¹ y, ξ(g_j⁻¹ g̃_i)) / |det g̃_i| ('SAME').

  ``__call__(x (B,H,W,C,N_in), g_in (N_in,2,2), g_out_inv (N_out,2,2))
  -> (B, H, W, features, N_out)``.
  """

  features: int
  kernel_size: int
  group: GroupName = "sl2"
  hidden: int = 32
  w0: float = 10.0

  @nn.compact
  def __call__(self, x: jax.Array, g_in: jax.Array, g_out_inv: jax.Array) -> jax.Array:
    chex.assert_rank(x, 5)
    k, c, n_in = self.kernel_size, x.shape[3], x.shape[4]
    n_out = g_out_inv.shape[0]
    points = jnp.einsum("nij,abj->nabi", g_out_inv, kernel_offsets(k))      # (N_out,K,K,2)
    relative = jnp.einsum("nij,mjk->nmik", g_out_inv, g_in)                  # (N_out,N_in,2,2)
    coords = polar_coordinates(relative, self.group)                         # (N_out,N_in,d)
    inputs = jnp.concatenate([
        jnp.broadcast_to(points[:, None], (n_out, n_in, k, k, 2)),
        jnp.broadcast_to(coords[:, :, None, None], (n_out, n_in, k, k, coords.shape[-1]))],
        axis=-1)
    kappa = Siren(c * self.features, fan_in=c * n_in * k * k, hidden=self.hidden,
                  w0=self.w0)(inputs)
    kappa = kappa * _mask(points, self.group)[:, None, :, :, None]
    if self.group == "gl2":
      kappa = kappa / jnp.abs(jnp.linalg.det(g_in))[None, :, None, None, None]
    kernel = kappa.reshape(n_out, n_in, k, k, c, self.features)
    kernel = kernel.transpose(2, 3, 4, 1, 5, 0).reshape(k, k, c * n_in, self.features * n_out)
    packed = x.reshape(*x.shape[:3], c * n_in)
    out = jax.lax.conv_general_dilated(packed, kernel.astype(x.dtype), (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out.reshape(*out.shape[:3], self.features, n_out)


def group_max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 spatial max pooling of (B, H, W, C, N) features (H, W even)."""
  b, h, w, c, n = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c, n).max(axis=(2, 4))


class AffineGroupCNN(nn.Module):
  """lift (valid, K) → LayerNorm → GELU → 2×2 max pool → group conv (same, K')
  → LayerNorm → GELU → global max over space and group → linear read-out.

  ``__call__(images, key)``: draws fresh group samples for each layer from
  ``key`` (MC estimate of the group integrals); ``samples=(g1, g2)`` overrides
  them with fixed (g, g⁻¹) pairs.
  """

  num_classes: int = 10
  features: int = 16
  kernel_size: int = 5
  group_kernel_size: int = 5
  num_samples: int = 8
  group: GroupName = "sl2"
  spd_var: float = 0.1
  hidden: int = 32
  siren_w0: float = 10.0

  def samples(self, key: jax.Array):
    key1, key2 = jax.random.split(key)
    return (sample_group(key1, self.num_samples, self.group, self.spd_var),
            sample_group(key2, self.num_samples, self.group, self.spd_var))

  @nn.compact
  def __call__(self, images: jax.Array, key: jax.Array | None = None, samples=None) -> jax.Array:
    (g1, g1_inv), (_, g2_inv) = self.samples(key) if samples is None else samples
    h = LiftingConv(self.features, self.kernel_size, self.group, self.hidden,
                    self.siren_w0)(images, g1_inv)
    h = nn.gelu(nn.LayerNorm(reduction_axes=-2, feature_axes=-2)(h))
    h = group_max_pool_2x2(h)
    h = GroupConv(self.features, self.group_kernel_size, self.group, self.hidden,
                  self.siren_w0)(h, g1, g2_inv)
    h = nn.gelu(nn.LayerNorm(reduction_axes=-2, feature_axes=-2)(h))
    return nn.Dense(self.num_classes)(h.max(axis=(1, 2, 4)))


class PlainCNN(nn.Module):
  """The same pipeline without the group: conv (valid) → LayerNorm → GELU →
  2×2 max pool → conv (same) → LayerNorm → GELU → global max → linear."""

  num_classes: int = 10
  features: int = 16
  kernel_size: int = 5
  second_kernel_size: int = 5

  @nn.compact
  def __call__(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
    del key
    k1, k2 = (self.kernel_size,) * 2, (self.second_kernel_size,) * 2
    h = nn.gelu(nn.LayerNorm()(nn.Conv(self.features, k1, padding="VALID")(images)))
    h = nn.max_pool(h, (2, 2), (2, 2))
    h = nn.gelu(nn.LayerNorm()(nn.Conv(self.features, k2, padding="SAME")(h)))
    return nn.Dense(self.num_classes)(h.max(axis=(1, 2)))


def plain_cnn_param_count(features: int, kernel_size: int, second_kernel_size: int,
                          in_channels: int = 1, num_classes: int = 10) -> int:
  """Parameters of ``PlainCNN``: two convs with biases, two LayerNorms, the read-out
  (closed form, to pick the width that matches a group network's count)."""
  return (kernel_size**2 * in_channels * features + features + 2 * features
          + second_kernel_size**2 * features**2 + features + 2 * features
          + num_classes * features + num_classes)


def count_params(params) -> int:
  return int(sum(p.size for p in jax.tree_util.tree_leaves(params)))


# ---------------------------------------------------------------- affNIST-style test data

def random_affine_matrix(key: jax.Array, max_rotation_deg: float = 20.0,
                         max_shear_deg: float = 45.0, scale_range: tuple[float, float] = (0.8, 1.2)
                         ) -> jax.Array:
  """A = R(θ)·H(φ)·diag(s_r, s_c) in (row, col) coordinates, the affNIST recipe:
  θ ~ U[±20°], horizontal shear col += tan φ·row with φ ~ U[±45°], per-axis
  scales ~ U[0.8, 1.2]."""
  dtype = jnp.result_type(float)
  k_rot, k_shear, k_scale = jax.random.split(key, 3)
  theta = jnp.deg2rad(jax.random.uniform(k_rot, (), dtype, -max_rotation_deg, max_rotation_deg))
  phi = jnp.deg2rad(jax.random.uniform(k_shear, (), dtype, -max_shear_deg, max_shear_deg))
  scales = jax.random.uniform(k_scale, (2,), dtype, *scale_range)
  c, s = jnp.cos(theta), jnp.sin(theta)
  rotation = jnp.array([[c, -s], [s, c]])
  shear = jnp.array([[1.0, 0.0], [jnp.tan(phi), 1.0]], dtype)
  return rotation @ shear @ jnp.diag(scales)


def affine_perturb(key: jax.Array, image: jax.Array, content_half_extent: float,
                   **matrix_kwargs) -> jax.Array:
  """One affNIST-style perturbation of a centred image (H, W, C): a random
  affine map about the centre, then a random integer-bounded shift that keeps
  the transformed content box (±content_half_extent pixels from the centre)
  and its bilinear footprint off the canvas border."""
  key_a, key_t = jax.random.split(key)
  a = random_affine_matrix(key_a, **matrix_kwargs)
  e = content_half_extent
  corners = jnp.array([[-e, -e], [-e, e], [e, -e], [e, e]], a.dtype) @ a.T
  reach = jnp.abs(corners).max(axis=0)
  room = jnp.maximum(jnp.array(image.shape[:2], a.dtype) / 2 - 1.5 - reach, 0.0)
  shift = jax.random.uniform(key_t, (2,), a.dtype, -1.0, 1.0) * jnp.floor(room)
  return groups.affine_warp_image((a, shift), image)
