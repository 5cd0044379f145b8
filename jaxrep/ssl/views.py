r"""Multi-view augmentation: pure, jittable functions of a key, one example at a time.

Every transform is ``t(key, x, ...) -> view`` with a fixed output shape, so it jits
and ``jax.vmap``-s over a batch of (key, example) pairs; strengths are Python
numbers (closed over), and strength 0 (or probability 0) is the identity. The
composers ``image_augment`` / ``sequence_augment`` return ``augment(key, x)`` and
``two_views(key, xs, augment)`` builds the ``{"view1", "view2"}`` batch the SSL
losses of ``jaxrep.ssl`` take.

Images are (H, W, C) floats in [0, 1], as in SimCLR (Chen et al., ICML 2020, App. A):
random resized crop (area fraction s ~ U[s_min, s_max] and log aspect ratio
log r ~ U[log r_min, log r_max], crop h = H√(s/r), w = W√(s·r) clipped to the image,
resampled back to H×W bilinearly with ``dm_pix.affine_transform``), horizontal flip,
brightness x ↦ b·x and contrast x ↦ c(x − x̄) + x̄ with b, c ~ U[1 − δ, 1 + δ],
and for C = 3 saturation and hue (``dm_pix``), all applied with probability p in a
fixed order and clipped to [0, 1], then random greyscale. Sequences are (L,) or
(L, C) (e.g. MNIST-1D, Greydanus 2020): a random shift by s ∈ {−S, …, S} (circular
``roll`` or zero-filled ``pad``), a time stretch about the centre by f ~ U[1 − a, 1 + a]
(linear interpolation), an amplitude scale by U[1 − a, 1 + a] and Gaussian noise.
"""
from __future__ import annotations

from typing import Callable

import chex
import dm_pix as pix
import jax
import jax.numpy as jnp

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def _is_zero(value) -> bool:
  return isinstance(value, (int, float)) and value == 0


def _uniform(key: jax.Array, low: float, high: float) -> jax.Array:
  return jax.random.uniform(key, (), minval=low, maxval=high)


# ---------------------------------------------------------------------------
# Images (H, W, C) in [0, 1]


def resized_crop(image: jax.Array, top: jax.Array, left: jax.Array, height: jax.Array,
                 width: jax.Array) -> jax.Array:
  """The box [top, top + height) × [left, left + width) (pixel units, may be fractional)
  resampled to the input's (H, W) bilinearly; the whole image is the identity.

  Output pixel (i, j) samples the input at (top + (i + ½)·height/H − ½,
  left + (j + ½)·width/W − ½) (pixel centres), edges clamped.
  """
  chex.assert_rank(image, 3)
  step_h, step_w = height / image.shape[0], width / image.shape[1]
  matrix = jnp.stack([step_h, step_w, jnp.ones_like(step_h)])
  offset = jnp.stack([top + 0.5 * step_h - 0.5, left + 0.5 * step_w - 0.5,
                      jnp.zeros_like(step_h)])
  return pix.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")


def random_resized_crop(key: jax.Array, image: jax.Array,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
  """``resized_crop`` of a random box of area fraction ~ U[scale] and aspect ratio
  (width/height) ~ logU[ratio] at a uniform position; ``scale=(1, 1), ratio=(1, 1)``
  is the identity. The box is clipped to the image rather than redrawn (torchvision
  redraws up to ten times).
  """
  chex.assert_rank(image, 3)
  height, width = image.shape[:2]
  area_key, ratio_key, top_key, left_key = jax.random.split(key, 4)
  area = _uniform(area_key, *scale)
  aspect = jnp.exp(_uniform(ratio_key, *jnp.log(jnp.asarray(ratio))))
  crop_h = jnp.minimum(height * jnp.sqrt(area / aspect), height)
  crop_w = jnp.minimum(width * jnp.sqrt(area * aspect), width)
  top = jax.random.uniform(top_key) * (height - crop_h)
  left = jax.random.uniform(left_key) * (width - crop_w)
  return resized_crop(image, top, left, crop_h, crop_w)


def flip_left_right(image: jax.Array) -> jax.Array:
  """The mirror image along the width axis (an involution)."""
  chex.assert_rank(image, 3)
  return pix.flip_left_right(image)


def random_flip(key: jax.Array, image: jax.Array, probability: float = 0.5) -> jax.Array:
  """``flip_left_right(image)`` with probability ``probability``, else ``image``."""
  chex.assert_rank(image, 3)
  return jnp.where(jax.random.uniform(key) < probability, flip_left_right(image), image)


def intensity_jitter(key: jax.Array, image: jax.Array, brightness: float = 0.4,
                     contrast: float = 0.4) -> jax.Array:
  """x ↦ clip(c(b·x − mean(b·x)) + mean(b·x), 0, 1), b ~ U[1 ± brightness],
  c ~ U[1 ± contrast], means per channel over the image; any number of channels."""
  chex.assert_rank(image, 3)
  b_key, c_key = jax.random.split(key)
  out = image * _uniform(b_key, 1 - brightness, 1 + brightness)
  out = pix.adjust_contrast(out, _uniform(c_key, 1 - contrast, 1 + contrast))
  return jnp.clip(out, 0.0, 1.0)


def colour_jitter(key: jax.Array, image: jax.Array, brightness: float = 0.4,
                  contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1
                  ) -> jax.Array:
  """``intensity_jitter`` then, for RGB (C = 3), saturation × U[1 ± saturation] and a
  hue shift by U[−hue, hue] turns (fixed order; SimCLR shuffles it). Clipped to [0, 1]."""
  chex.assert_rank(image, 3)
  intensity_key, s_key, h_key = jax.random.split(key, 3)
  out = intensity_jitter(intensity_key, image, brightness, contrast)
  if image.shape[-1] != 3:
    return out
  if not _is_zero(saturation):
    out = pix.adjust_saturation(out, _uniform(s_key, 1 - saturation, 1 + saturation))
  if not _is_zero(hue):
    out = pix.adjust_hue(out, _uniform(h_key, -hue, hue))
  return jnp.clip(out, 0.0, 1.0)


def random_grayscale(key: jax.Array, image: jax.Array, probability: float = 0.2
                     ) -> jax.Array:
  """For RGB, the luma (Rec. 601) in all three channels with probability ``probability``;
  other channel counts are returned unchanged."""
  chex.assert_rank(image, 3)
  if image.shape[-1] != 3 or _is_zero(probability):
    return image
  grey = jnp.broadcast_to(pix.rgb_to_grayscale(image, keep_dims=True), image.shape)
  return jnp.where(jax.random.uniform(key) < probability, grey, image)


def image_augment(*, crop_scale: tuple[float, float] = (0.08, 1.0),
                  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
                  flip_probability: float = 0.5, brightness: float = 0.4,
                  contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
                  jitter_probability: float = 0.8, grayscale_probability: float = 0.2
                  ) -> Augment:
  """``augment(key, image)``: SimCLR's crop → flip → colour jitter (with probability
  ``jitter_probability``) → greyscale, for (H, W, C) images in [0, 1]. The defaults
  are SimCLR's (blur left out); ``crop_scale=(1, 1), crop_ratio=(1, 1)`` and zero
  strengths and probabilities give the identity."""

  def augment(key: jax.Array, image: jax.Array) -> jax.Array:
    crop_key, flip_key, jitter_key, apply_key, grey_key = jax.random.split(key, 5)
    out = random_resized_crop(crop_key, image, crop_scale, crop_ratio)
    out = random_flip(flip_key, out, flip_probability)
    if not _is_zero(jitter_probability):
      jittered = colour_jitter(jitter_key, out, brightness, contrast, saturation, hue)
      out = jnp.where(jax.random.uniform(apply_key) < jitter_probability, jittered, out)
    return random_grayscale(grey_key, out, grayscale_probability)

  return augment


# ---------------------------------------------------------------------------
# Sequences (L,) or (L, C)


def random_shift(key: jax.Array, x: jax.Array, max_shift: int, mode: str = "roll"
                 ) -> jax.Array:
  """x shifted along time by s ~ U{−max_shift, …, max_shift}: y_t = x_{t−s}, with
  ``mode="roll"`` circular and ``mode="pad"`` zero where t − s falls outside."""
  if mode not in ("roll", "pad"):
    raise ValueError(f"mode must be 'roll' or 'pad', got {mode!r}")
  length = x.shape[0]
  shift = jax.random.randint(key, (), -max_shift, max_shift + 1)
  source = jnp.arange(length) - shift
  if mode == "roll":
    return x[source % length]
  inside = (source >= 0) & (source < length)
  inside = inside.reshape((length,) + (1,) * (x.ndim - 1))
  return jnp.where(inside, x[jnp.clip(source, 0, length - 1)], 0)


def random_time_scale(key: jax.Array, x: jax.Array, max_scale: float) -> jax.Array:
  """x stretched in time about its centre c = (L − 1)/2 by f ~ U[1 ± max_scale]:
  y_t = x(c + (t − c)/f), linearly interpolated, ends held."""
  length = x.shape[0]
  factor = _uniform(key, 1 - max_scale, 1 + max_scale)
  centre = (length - 1) / 2
  where = centre + (jnp.arange(length, dtype=jnp.float32) - centre) / factor
  flat = x.reshape(length, -1)
  grid = jnp.arange(length, dtype=jnp.float32)
  out = jax.vmap(lambda column: jnp.interp(where, grid, column), in_axes=1, out_axes=1)(flat)
  return out.reshape(x.shape).astype(x.dtype)


def random_amplitude_scale(key: jax.Array, x: jax.Array, max_scale: float) -> jax.Array:
  """a·x with a ~ U[1 ± max_scale]."""
  return x * _uniform(key, 1 - max_scale, 1 + max_scale)


def gaussian_noise(key: jax.Array, x: jax.Array, std: float) -> jax.Array:
  """x + std·ε, ε ~ N(0, I) of x's shape."""
  return x + std * jax.random.normal(key, x.shape, x.dtype)


def sequence_augment(*, max_shift: int = 0, shift_mode: str = "roll",
                     time_scale: float = 0.0, amplitude_scale: float = 0.0,
                     noise_std: float = 0.0) -> Augment:
  """``augment(key, x)`` for (L,) or (L, C): time stretch → shift → amplitude scale →
  noise. All strengths 0 (the defaults) give the identity."""

  def augment(key: jax.Array, x: jax.Array) -> jax.Array:
    scale_key, shift_key, amplitude_key, noise_key = jax.random.split(key, 4)
    out = x if _is_zero(time_scale) else random_time_scale(scale_key, x, time_scale)
    out = random_shift(shift_key, out, max_shift, shift_mode)
    out = random_amplitude_scale(amplitude_key, out, amplitude_scale)
    return gaussian_noise(noise_key, out, noise_std)

  return augment


# ---------------------------------------------------------------------------
# Two views of a batch


def two_views(key: jax.Array, xs: jax.Array, augment: Augment) -> dict[str, jax.Array]:
  """``{"view1": …, "view2": …}``: two independent ``augment`` draws of every
  example of the batch ``xs`` (N, ...), with a key per example and view."""
  num = xs.shape[0]
  keys = jax.random.split(key, 2 * num)  # view v of example i: keys[v·N + i]
  both = jax.vmap(augment)(keys, jnp.concatenate([xs, xs]))
  return {"view1": both[:num], "view2": both[num:]}
