r"""Random field augmentations: affine and colour transforms whose parameters vary per pixel.

Paper: Mansfield, Afkanpour, Morningstar, Singhal, "Random Field Augmentations for
Self-Supervised Representation Learning", NeurIPS 2023 Workshop on Symmetry and
Geometry in Neural Representations (PMLR 228), arXiv:2311.03629. No official code
was found; this follows the paper's description (Sec. 3, Fig. 2).

**Gaussian random fields.** A field φ on the H×W pixel grid is white noise
convolved with a Gaussian kernel of length scale ℓ, scaled to standard deviation a
(the amplitude):

    g(r) = exp(−|r|²/(2ℓ²)) / (Σ_r exp(−|r|²/ℓ²))^{1/2},    φ = a · (g ⊛ ε),  ε ~ N(0, I),

with g truncated at |r_row|, |r_col| ≤ p = ⌈3ℓ⌉ and the noise drawn on the grid
padded by p (a linear convolution; g is separable, so φ = a·K_r ε K_cᵀ, two small
matrix products, cheaper than an FFT here). So φ(p) ~ N(0, a²) exactly and
Cov(φ(p), φ(q)) = a² Σ_r g(r) g(r + p − q) ≈ a² exp(−|p − q|²/(4ℓ²)) (the
Gaussian's autocorrelation). a = 0 gives φ ≡ 0.

**Local affine transform** (rotation θ, log-scale s, shear k, translation u, one
field each). Output pixel p (row, col) samples the input at

    src(p) = c + M(p) (p − c) + u(p),   M(p) = R(θ(p)) · e^{s(p)} · [[1, k(p)], [0, 1]],

c the image centre, bilinearly (``jax.scipy.ndimage.map_coordinates``, zeros
outside). With constant fields this is the global affine warp
``dm_pix.affine_transform`` with matrix M and offset c − M c + u; with zero fields
it is the identity.

**Local colour transform** (brightness β, saturation σ, hue η fields):
x'(p) = x(p) + β(p) (``dm_pix.adjust_brightness`` per pixel) and, for RGB, HSV
saturation × (1 + σ(p)) clipped to [0, 1] and hue + η(p) mod 1
(``dm_pix.adjust_saturation`` / ``adjust_hue`` per pixel); the result is clipped to
[0, 1]. Greyscale images (C = 1) take the brightness field only.

``random_field_augment`` draws independent fields for every parameter (one
length scale; an amplitude per parameter) and applies the affine part and the
colour part, each with probability p, as an ``augment(key, image)`` of
``jaxrep.ssl.views``; ``compose`` chains it after the standard SimCLR views
(the paper applies the random-field transforms on top of SimCLR's).
``augmented_loss_fn`` turns a two-view SSL loss into one on a batch of images
whose views are drawn in the loss from the step key.
"""
from __future__ import annotations

import math
from typing import Callable

import chex
import dm_pix as pix
import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy import ndimage

from jaxrep.ssl.views import Augment, two_views

AFFINE_FIELDS = ("rotation", "log_scale", "shear", "translation_row", "translation_col")
COLOUR_FIELDS = ("brightness", "saturation", "hue")


# ---------------------------------------------------------------------------
# Gaussian random fields


def field_padding(length_scale: float) -> int:
  """⌈3ℓ⌉: the kernel's half-width, and the margin of noise drawn around the image."""
  return int(math.ceil(3 * length_scale))


def smoothing_matrix(size: int, length_scale: float | jax.Array, padding: int) -> jax.Array:
  """K (size, size + 2·padding), K[i, j] = g₁(j − padding − i) with g₁(r) = exp(−r²/(2ℓ²))
  for |r| ≤ padding (0 beyond), scaled so Σ_r g₁(r)² = 1: one axis of the
  separable kernel g(r) = g₁(r_row)·g₁(r_col)."""
  offsets = jnp.arange(size + 2 * padding)[None, :] - padding - jnp.arange(size)[:, None]
  taps = jnp.arange(-padding, padding + 1, dtype=jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.exp(-taps**2 / length_scale**2)))
  inside = jnp.abs(offsets) <= padding
  return jnp.where(inside, jnp.exp(-offsets.astype(jnp.float32)**2 / (2 * length_scale**2)),
                   0.0) / norm


def gaussian_random_field(key: jax.Array, shape: tuple[int, int],
                          length_scale: float | jax.Array, amplitude: float | jax.Array = 1.0,
                          num: int | None = None, padding: int | None = None) -> jax.Array:
  """Samples φ = a·(g ⊛ ε) on an (H, W) grid: marginal N(0, a²), correlation
  ≈ exp(−r²/(4ℓ²)) at pixel distance r.

  Args:
    key: PRNG key.
    shape: (H, W).
    length_scale: ℓ > 0 in pixels (may be traced when ``padding`` is given).
    amplitude: a, the field's standard deviation (a scalar, or shape (num,)).
    num: if given, ``num`` independent fields stacked on a leading axis.
    padding: the kernel's half-width p (static); default ``field_padding(ℓ)``.

  Returns:
    (H, W), or (num, H, W), float32.
  """
  pad = field_padding(length_scale) if padding is None else padding
  batch = () if num is None else (num,)
  noise = jax.random.normal(key, batch + (shape[0] + 2 * pad, shape[1] + 2 * pad))
  rows = smoothing_matrix(shape[0], length_scale, pad)
  cols = smoothing_matrix(shape[1], length_scale, pad)
  field = jnp.einsum("ij,...jk,lk->...il", rows, noise, cols)
  amplitude = jnp.asarray(amplitude, field.dtype)
  return field * amplitude.reshape(amplitude.shape + (1, 1))


# ---------------------------------------------------------------------------
# Local transforms


def _pixel_grid(shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
  return jnp.meshgrid(jnp.arange(shape[0], dtype=jnp.float32),
                      jnp.arange(shape[1], dtype=jnp.float32), indexing="ij")


def local_affine_matrices(rotation: jax.Array, log_scale: jax.Array, shear: jax.Array
                          ) -> jax.Array:
  """M = R(θ)·e^s·[[1, k], [0, 1]] per pixel: fields (H, W) → (H, W, 2, 2)."""
  cos, sin, scale = jnp.cos(rotation), jnp.sin(rotation), jnp.exp(log_scale)
  rot = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
  one, zero = jnp.ones_like(shear), jnp.zeros_like(shear)
  shear_m = jnp.stack([jnp.stack([one, shear], -1), jnp.stack([zero, one], -1)], -2)
  return scale[..., None, None] * rot @ shear_m


def local_affine(image: jax.Array, rotation: jax.Array, log_scale: jax.Array,
                 shear: jax.Array, translation: jax.Array) -> jax.Array:
  """Warps (H, W, C) by per-pixel affine maps: output p samples the input at
  c + M(p)(p − c) + u(p) (bilinear, zeros outside).

  Args:
    image: (H, W, C).
    rotation, log_scale, shear: (H, W) fields θ (radians), s, k.
    translation: (2, H, W), u in pixels (rows, cols).

  Returns:
    (H, W, C) of image's dtype.
  """
  chex.assert_rank(image, 3)
  h, w, _ = image.shape
  rows, cols = _pixel_grid((h, w))
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2], jnp.float32)
  rel = jnp.stack([rows, cols], -1) - centre                         # (H, W, 2)
  matrices = local_affine_matrices(rotation, log_scale, shear)       # (H, W, 2, 2)
  source = centre + jnp.einsum("hwij,hwj->hwi", matrices, rel) + jnp.moveaxis(translation, 0, -1)
  coords = [source[..., 0], source[..., 1]]
  sample = lambda channel: ndimage.map_coordinates(channel, coords, order=1, mode="constant",
                                                   cval=0.0)
  return jax.vmap(sample, in_axes=-1, out_axes=-1)(image.astype(jnp.float32)).astype(image.dtype)


def local_colour(image: jax.Array, brightness: jax.Array, saturation: jax.Array | None = None,
                 hue: jax.Array | None = None) -> jax.Array:
  """x + β(p), then for RGB saturation × (1 + σ(p)) and hue + η(p) in HSV; clipped
  to [0, 1]. Fields (H, W); ``None`` skips a transform (exactly)."""
  chex.assert_rank(image, 3)
  out = image + brightness[..., None]
  if image.shape[-1] == 3 and (saturation is not None or hue is not None):
    h, s, v = jnp.moveaxis(pix.rgb_to_hsv(out), -1, 0)
    if saturation is not None:
      s = jnp.clip(s * (1 + saturation), 0.0, 1.0)
    if hue is not None:
      h = (h + hue) % 1.0
    out = pix.hsv_to_rgb(jnp.stack([h, s, v], -1))
  return jnp.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------------------
# The augmentation


def _is_zero(value) -> bool:
  return isinstance(value, (int, float)) and value == 0


def random_field_augment(*, length_scale: float | jax.Array, rotation: float = 0.0,
                         log_scale: float = 0.0, shear: float = 0.0,
                         translation: float = 0.0, brightness: float = 0.0,
                         saturation: float = 0.0, hue: float = 0.0,
                         probability: float = 1.0, padding: int | None = None) -> Augment:
  """``augment(key, image)``: a local affine warp and a local colour transform with
  independent Gaussian random fields of length scale ℓ and the given amplitudes
  (standard deviations: θ in radians, s, k, u in pixels, β, σ, η), each part
  applied with probability ``probability``. All amplitudes 0 (or probability 0)
  give the identity exactly. Strengths may be traced arrays (one program for
  several strengths, e.g. per-run hyperparameters); then ``padding`` (static) is
  needed when ℓ is traced, and a zero amplitude still gives the identity
  (zero fields), up to the HSV round trip of a zero saturation/hue field on RGB."""
  affine_amps = (rotation, log_scale, shear, translation, translation)
  use_affine = not all(_is_zero(a) for a in affine_amps) and not _is_zero(probability)
  use_colour = (not all(_is_zero(a) for a in (brightness, saturation, hue))
                and not _is_zero(probability))

  def augment(key: jax.Array, image: jax.Array) -> jax.Array:
    chex.assert_rank(image, 3)
    shape = image.shape[:2]
    affine_key, colour_key, apply_affine, apply_colour = jax.random.split(key, 4)
    out = image
    if use_affine:
      f = gaussian_random_field(affine_key, shape, length_scale, jnp.asarray(affine_amps), 5,
                                padding)
      warped = local_affine(out, f[0], f[1], f[2], f[3:])
      out = jnp.where(jax.random.uniform(apply_affine) < probability, warped, out)
    if use_colour:
      rgb = image.shape[-1] == 3      # greyscale takes the brightness field only
      amps = (brightness, saturation, hue) if rgb else (brightness,)
      f = gaussian_random_field(colour_key, shape, length_scale, jnp.asarray(amps), len(amps),
                                padding)
      coloured = local_colour(out, f[0], None if not rgb or _is_zero(saturation) else f[1],
                              None if not rgb or _is_zero(hue) else f[2])
      out = jnp.where(jax.random.uniform(apply_colour) < probability, coloured, out)
    return out

  return augment


def compose(*augments: Augment) -> Augment:
  """``augment(key, x)`` applying ``augments`` in order, each with its own key."""

  def augment(key: jax.Array, x: jax.Array) -> jax.Array:
    for sub_key, fn in zip(jax.random.split(key, len(augments)), augments):
      x = fn(sub_key, x)
    return x

  return augment


def augmented_loss_fn(two_view_loss_fn: Callable, augment: Augment, images: str = "x"):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` that draws two views of
  ``batch[images]`` with ``augment`` (``views.two_views``, key = the step key,
  folded with the device index on a data-sharded batch) and hands
  ``{"view1", "view2"}`` to ``two_view_loss_fn`` (e.g. ``infonce_loss_fn``)."""

  def loss_fn(params, batch, rng, axis_name=None):
    view_key, loss_key = jax.random.split(rng)
    if axis_name is not None:
      view_key = jax.random.fold_in(view_key, lax.axis_index(axis_name))
    views = two_views(view_key, batch[images], augment)
    return two_view_loss_fn(params, views, loss_key, axis_name=axis_name)

  return loss_fn
