"""Group elements as arrays: samplers and named actions, all pure functions.

Every sampler takes a PRNG key and returns a group element g as an array (or a
tuple of arrays), usable inside ``jit`` and ``vmap``; every action has one
argument order, ``act(g, x) -> g·x``. Dtypes follow JAX's default float
(float64 under ``jax.enable_x64(True)``), so exactness checks can run in double
precision.

    group                   element g          sampler                 action
    S_n                     perm (n,) int      sample_permutation      permute
    SO(2), O(2)             R (2, 2)           sample_so2, sample_o2   rotate_points
    SO(3), O(3), O(d)       R (d, d)           sample_so3, sample_o3,  rotate_points
                                               sample_orthogonal
    E(3) = O(3) ⋉ R³        (R, t)             sample_e3               apply_e3,
                                                                       apply_e3_with_vectors
    Sim(3) = (R₊ × O(3)) ⋉ R³  (s, R, t)       sample_similarity       apply_similarity
    GL⁺(2), SL(2)           A (2, 2)           sample_gl2_plus,        rotate_points, warp_image
                                               sample_sl2
    affine maps of R²       (A, t)             —                       apply_affine_points,
                                                                       affine_warp_image
    1-D shifts, scalings    s int, a > 0       sample_shift,           shift_sequence,
                                               sample_log_scale        scale_sequence

Coordinates for images are array-index order (row, col) measured from the
image centre c = ((H − 1)/2, (W − 1)/2), so a point q of an image moves to
A (q − c) + t + c: warping an image and moving its points with
``apply_affine_points`` (in centred coordinates) agree.
"""
from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from jax.scipy import ndimage


def _float_dtype():
  return jnp.result_type(float)


# ---------------------------------------------------------------- permutations

def sample_permutation(key: jax.Array, n: int) -> jax.Array:
  """A uniform random permutation of 0..n−1, shape (n,) int."""
  return jax.random.permutation(key, n)


def permute(perm: jax.Array, x: jax.Array, axis: int = 0) -> jax.Array:
  """(σ·x)_i = x_{σ(i)} along ``axis``: ``jnp.take(x, perm, axis)``; perm (n,)."""
  return jnp.take(x, perm, axis=axis)


def inverse_permutation(perm: jax.Array) -> jax.Array:
  """σ⁻¹ with σ⁻¹[σ[i]] = i."""
  return jnp.argsort(perm)


# ---------------------------------------------------------------- SO(2), O(2)

def rotation_2d(theta: jax.Array | float) -> jax.Array:
  """R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]], shape (2, 2)."""
  theta = jnp.asarray(theta, _float_dtype())
  c, s = jnp.cos(theta), jnp.sin(theta)
  return jnp.stack([jnp.stack([c, -s]), jnp.stack([s, c])])


def sample_so2(key: jax.Array) -> jax.Array:
  """Haar on SO(2): R(θ) with θ ~ U[0, 2π)."""
  theta = jax.random.uniform(key, (), _float_dtype(), 0.0, 2 * jnp.pi)
  return rotation_2d(theta)


def sample_o2(key: jax.Array) -> jax.Array:
  """Haar on O(2): R(θ)·diag(1, ±1), each sign with probability ½."""
  key_rot, key_flip = jax.random.split(key)
  sign = jnp.where(jax.random.bernoulli(key_flip), -1.0, 1.0).astype(_float_dtype())
  return sample_so2(key_rot) * jnp.stack([jnp.ones_like(sign), sign])[None, :]


# ---------------------------------------------------------------- O(d), SO(3), O(3)

def sample_orthogonal(key: jax.Array, dim: int) -> jax.Array:
  """Haar on O(dim): Q from Z = QR with Z Gaussian and the signs of diag(R)
  moved into Q (Mezzadri 2007), so the law is invariant under Q ↦ gQ."""
  z = jax.random.normal(key, (dim, dim), _float_dtype())
  q, r = jnp.linalg.qr(z)
  signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(q.dtype)
  return q * signs[None, :]


def sample_o3(key: jax.Array) -> jax.Array:
  """Haar on O(3): det = +1 and −1 each with probability ½."""
  return sample_orthogonal(key, 3)


def sample_so3(key: jax.Array) -> jax.Array:
  """Haar on SO(3): det(Q)·Q for Q Haar on O(3) (−I is central with det −1)."""
  q = sample_o3(key)
  return q * jnp.linalg.det(q)


def rotate_points(R: jax.Array, points: jax.Array) -> jax.Array:
  """x_i ↦ R x_i for points (..., d) and any matrix R (d, d): ``points @ R.T``.

  The linear action of O(d), SO(d) and GL(d) on vectors.
  """
  chex.assert_rank(R, 2)
  return points @ R.T


# ---------------------------------------------------------------- E(3), Sim(3)

def sample_e3(key: jax.Array, translation_scale: float = 1.0
              ) -> tuple[jax.Array, jax.Array]:
  """(R, t): R Haar on O(3) (reflections included), t ~ N(0, s² I₃)."""
  key_r, key_t = jax.random.split(key)
  return sample_o3(key_r), translation_scale * jax.random.normal(key_t, (3,), _float_dtype())


def apply_e3(g: tuple[jax.Array, jax.Array], points: jax.Array) -> jax.Array:
  """x_i ↦ R x_i + t for g = (R, t) and points (..., n, 3)."""
  R, t = g
  chex.assert_shape(R, (3, 3))
  return points @ R.T + t


def apply_e3_with_vectors(g: tuple[jax.Array, jax.Array],
                          x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
  """(p, v) ↦ (R p + t, R v) for g = (R, t): positions move, free vectors
  (velocities, forces) only rotate; p, v (..., 3)."""
  positions, vectors = x
  return apply_e3(g, positions), rotate_points(g[0], vectors)


def sample_similarity(key: jax.Array, translation_scale: float = 1.0,
                      max_log_scale: float | jax.Array = math.log(2.0)
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """g = (s, R, t): R Haar on O(3), t ~ N(0, translation_scale² I), log s ~ U[−m, m]."""
  k_e3, k_scale = jax.random.split(key)
  rotation, translation = sample_e3(k_e3, translation_scale)
  scale = jnp.exp(jax.random.uniform(k_scale, (), minval=-max_log_scale,
                                     maxval=max_log_scale))
  return scale, rotation, translation


def apply_similarity(g: tuple[jax.Array, jax.Array, jax.Array], points: jax.Array
                     ) -> jax.Array:
  """x ↦ s R x + t for g = (s, R, t) and points (..., n, 3)."""
  scale, rotation, translation = g
  return apply_e3((rotation, translation), scale * points)


# ---------------------------------------------------------------- GL⁺(2), SL(2), affine maps

def sample_gl2_plus(key: jax.Array, scale: float = 0.2) -> jax.Array:
  """A = exp(s·Z), Z ~ N(0, I) in gl(2); det A = exp(s·tr Z) > 0.

  A random element near the identity (s sets the spread), the usual way
  affine perturbations are drawn (not Haar: GL⁺(2) is not compact).
  """
  z = jax.random.normal(key, (2, 2), _float_dtype())
  return jax.scipy.linalg.expm(scale * z)


def sample_sl2(key: jax.Array, scale: float = 0.2) -> jax.Array:
  """A = exp(s·Z₀) with Z₀ = Z − (tr Z / 2) I traceless, rescaled so det A = 1
  to rounding."""
  z = jax.random.normal(key, (2, 2), _float_dtype())
  z = z - 0.5 * jnp.trace(z) * jnp.eye(2, dtype=z.dtype)
  a = jax.scipy.linalg.expm(scale * z)
  return a / jnp.sqrt(jnp.linalg.det(a))


def apply_affine_points(g: tuple[jax.Array, jax.Array], points: jax.Array) -> jax.Array:
  """p ↦ A p + t for g = (A, t) and points (..., 2)."""
  A, t = g
  chex.assert_shape(A, (2, 2))
  return points @ A.T + t


def affine_warp_image(g: tuple[jax.Array, jax.Array], image: jax.Array) -> jax.Array:
  """The image moved by x ↦ A x + t about its centre, g = (A, t), (H, W, C) → (H, W, C).

  Output pixel p samples the input at A⁻¹(p − c − t) + c (bilinear, zeros
  outside), with p in (row, col) index coordinates and c the image centre.
  Exact up to rounding for 90° rotations of square images and the identity.
  """
  A, t = g
  chex.assert_rank(image, 3)
  h, w, _ = image.shape
  dtype = jnp.result_type(image.dtype, _float_dtype())
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2], dtype)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype),
                            indexing="ij")
  grid = jnp.stack([rows, cols], axis=-1)
  source = (grid - centre - t) @ jnp.linalg.inv(A).T + centre
  coords = [source[..., 0], source[..., 1]]

  def sample_channel(channel):
    return ndimage.map_coordinates(channel, coords, order=1, mode="constant", cval=0.0)

  warped = jax.vmap(sample_channel, in_axes=-1, out_axes=-1)(image.astype(dtype))
  return warped.astype(image.dtype)


def warp_image(A: jax.Array, image: jax.Array) -> jax.Array:
  """The image moved by x ↦ A x about its centre: ``affine_warp_image((A, 0), image)``."""
  return affine_warp_image((A, jnp.zeros(2, A.dtype)), image)


# ---------------------------------------------------------------- 1-D sequences

def sample_shift(key: jax.Array, max_shift: int) -> jax.Array:
  """s uniform on {−max_shift, …, max_shift}, shape () int."""
  return jax.random.randint(key, (), -max_shift, max_shift + 1)


def sample_log_scale(key: jax.Array, max_log_scale: float) -> jax.Array:
  """a = exp(u), u ~ U[−m, m]: a log-uniform stretch factor, shape ()."""
  return jnp.exp(jax.random.uniform(key, (), _float_dtype(), -max_log_scale, max_log_scale))


def shift_sequence(shift: int | jax.Array, x: jax.Array, mode: str = "wrap") -> jax.Array:
  """(T_s x)_i = x_{i−s} along the last axis; ``mode="wrap"`` is cyclic,
  ``"zero"`` fills the vacated positions with zeros. ``shift`` may be traced."""
  length = x.shape[-1]
  rolled = jnp.roll(x, shift, axis=-1)
  if mode == "wrap":
    return rolled
  if mode == "zero":
    source = jnp.arange(length) - shift
    return jnp.where((source >= 0) & (source < length), rolled, jnp.zeros_like(rolled))
  raise ValueError(f"unknown shift mode {mode!r}; use 'wrap' or 'zero'")


def scale_sequence(factor: float | jax.Array, x: jax.Array) -> jax.Array:
  """(S_a x)(i) = x(c + (i − c)/a) along the last axis, c = (L − 1)/2:
  the signal stretched by a about its centre, linear interpolation, zeros
  outside."""
  length = x.shape[-1]
  dtype = jnp.result_type(x.dtype, _float_dtype())
  centre = (length - 1) / 2
  positions = jnp.arange(length, dtype=dtype)
  source = centre + (positions - centre) / factor
  flat = x.reshape(-1, length).astype(dtype)
  out = jax.vmap(lambda row: jnp.interp(source, positions, row, left=0.0, right=0.0))(flat)
  return out.reshape(x.shape).astype(x.dtype)
