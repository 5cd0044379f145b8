"""A procedural Transforms-2D: objects pasted on backgrounds under controlled transformations.

After Speicher, Nanda, Gummadi, "Understanding the Role of Invariance in
Transfer Learning", TMLR 2024 (code: tillspeicher/representation-invariance-
transfer). A dataset D(O, T) is defined by object prototypes O (one per class)
and a set T of transformation types. An image is b(t(o)): a prototype o ∈ O,
its RGBA image moved by every transformation in T with freshly drawn
parameters t, alpha-composited onto a background b. Everything here is
procedural and a pure function of a PRNG key: prototypes are random blobs
(a radial-Fourier outline with a two-colour stripe texture), backgrounds are
smooth random colour fields. Images are (size, size, 3) in [0, 1].

The 18 transformation types, in three categories as in the paper:

    geometric    translate rotate scale shear hflip vflip
    photometric  hue brightness grayscale invert posterize sharpen
    corruption   blur noise pixelate erase contrast elastic

All act on the object's RGBA image before pasting (photometric ones on its
colour only); a set T, given as a boolean mask over ``TRANSFORMS``
(``transform_mask(names)``), is applied in the order of ``TRANSFORMS``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
from jax.scipy import ndimage

from jaxrep import groups

GEOMETRIC = ("translate", "rotate", "scale", "shear", "hflip", "vflip")
PHOTOMETRIC = ("hue", "brightness", "grayscale", "invert", "posterize", "sharpen")
CORRUPTION = ("blur", "noise", "pixelate", "erase", "contrast", "elastic")
CATEGORIES = {"geometric": GEOMETRIC, "photometric": PHOTOMETRIC, "corruption": CORRUPTION}
TRANSFORMS = GEOMETRIC + PHOTOMETRIC + CORRUPTION


# ---------------------------------------------------------------- objects and backgrounds

def random_prototype(key: jax.Array, size: int, radius: float = 0.3) -> jax.Array:
  """One object: an RGBA image (size, size, 4). The outline is
  r(θ) = radius·size·(1 + Σ_{k=2..5} a_k cos(kθ + φ_k)), the colour two random
  colours mixed by a stripe pattern of random direction and frequency."""
  k_a, k_phi, k_col, k_dir, k_freq, k_phase = jax.random.split(key, 6)
  c = (size - 1) / 2
  rows, cols = jnp.meshgrid(jnp.arange(size) - c, jnp.arange(size) - c, indexing="ij")
  rho, theta = jnp.hypot(rows, cols), jnp.arctan2(rows, cols)
  harmonics = jnp.arange(2, 6)
  amplitude = jax.random.uniform(k_a, (4,), minval=0.0, maxval=0.25)
  phase = jax.random.uniform(k_phi, (4,), minval=0.0, maxval=2 * jnp.pi)
  outline = radius * size * (1 + jnp.sum(
      amplitude * jnp.cos(harmonics * theta[..., None] + phase), axis=-1))
  alpha = jax.nn.sigmoid(2.0 * (outline - rho))
  colours = jax.random.uniform(k_col, (2, 3))
  direction = jax.random.uniform(k_dir, (), minval=0.0, maxval=jnp.pi)
  frequency = jax.random.uniform(k_freq, (), minval=0.5, maxval=2.0) * 2 * jnp.pi / size
  stripes = 0.5 + 0.5 * jnp.sin(frequency * (jnp.cos(direction) * rows + jnp.sin(direction)
                                             * cols) + jax.random.uniform(k_phase, ()) * 6.3)
  rgb = colours[0] + stripes[..., None] * (colours[1] - colours[0])
  return jnp.concatenate([rgb, alpha[..., None]], axis=-1)


def random_prototypes(key: jax.Array, num: int, size: int) -> jax.Array:
  """``num`` object prototypes (num, size, size, 4)."""
  return jax.vmap(lambda k: random_prototype(k, size))(jax.random.split(key, num))


def random_background(key: jax.Array, size: int, num_waves: int = 4) -> jax.Array:
  """A smooth colour field (size, size, 3) in [0, 1]: a random base colour plus
  low-frequency plane waves per channel."""
  k_base, k_freq, k_phase, k_amp = jax.random.split(key, 4)
  rows, cols = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="ij")
  freqs = jax.random.normal(k_freq, (num_waves, 3, 2)) * 2 * jnp.pi / size
  phases = jax.random.uniform(k_phase, (num_waves, 3), minval=0.0, maxval=2 * jnp.pi)
  amps = jax.random.uniform(k_amp, (num_waves, 3), minval=0.0, maxval=0.15)
  waves = amps * jnp.sin(freqs[..., 0] * rows[..., None, None] + freqs[..., 1]
                         * cols[..., None, None] + phases)
  base = jax.random.uniform(k_base, (3,), minval=0.2, maxval=0.8)
  return jnp.clip(base + waves.sum(axis=2), 0.0, 1.0)


def composite(rgba: jax.Array, background: jax.Array) -> jax.Array:
  """b(o) = α·rgb + (1 − α)·background."""
  alpha = rgba[..., 3:]
  return alpha * rgba[..., :3] + (1 - alpha) * background


# ---------------------------------------------------------------- transformations (RGBA → RGBA)

def _warp(rgba, a, t=None):
  return groups.affine_warp_image((a, jnp.zeros(2) if t is None else t), rgba)


def _blur_rgb(rgb, sigma):
  offsets = jnp.arange(-3, 4)
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  kernel = kernel / kernel.sum()
  pad = jnp.pad(rgb, ((3, 3), (3, 3), (0, 0)), mode="edge")
  rows = sum(kernel[i] * pad[i:i + rgb.shape[0], 3:3 + rgb.shape[1]] for i in range(7))
  pad = jnp.pad(rows, ((0, 0), (3, 3), (0, 0)), mode="edge")
  return sum(kernel[i] * pad[:, i:i + rgb.shape[1]] for i in range(7))


def _with_rgb(rgba, rgb):
  return jnp.concatenate([jnp.clip(rgb, 0.0, 1.0), rgba[..., 3:]], axis=-1)


def _translate(key, x):
  size = x.shape[0]
  return _warp(x, jnp.eye(2), jax.random.uniform(key, (2,), minval=-0.25, maxval=0.25) * size)


def _rotate(key, x):
  return _warp(x, groups.rotation_2d(jax.random.uniform(key, (), minval=0.0,
                                                        maxval=2 * jnp.pi)))


def _scale(key, x):
  return _warp(x, jax.random.uniform(key, (), minval=0.5, maxval=1.3) * jnp.eye(2))


def _shear(key, x):
  k = jax.random.uniform(key, (), minval=-0.7, maxval=0.7)
  return _warp(x, jnp.array([[1.0, k], [0.0, 1.0]]))


def _hflip(key, x):
  return jnp.where(jax.random.bernoulli(key), x[:, ::-1], x)


def _vflip(key, x):
  return jnp.where(jax.random.bernoulli(key), x[::-1], x)


def _hue(key, x):
  """Rotation of the colour about the grey axis (1, 1, 1)/√3 by U[0, 2π)."""
  angle = jax.random.uniform(key, (), minval=0.0, maxval=2 * jnp.pi)
  u = jnp.ones(3) / jnp.sqrt(3.0)
  cross = jnp.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
  rotation = (jnp.cos(angle) * jnp.eye(3) + jnp.sin(angle) * cross
              + (1 - jnp.cos(angle)) * jnp.outer(u, u))
  return _with_rgb(x, x[..., :3] @ rotation.T)


def _brightness(key, x):
  return _with_rgb(x, x[..., :3] * jax.random.uniform(key, (), minval=0.4, maxval=1.6))


def _grayscale(key, x):
  luma = x[..., :3] @ jnp.array([0.299, 0.587, 0.114])
  return jnp.where(jax.random.bernoulli(key), _with_rgb(x, jnp.repeat(luma[..., None], 3, -1)),
                   x)


def _invert(key, x):
  return jnp.where(jax.random.bernoulli(key), _with_rgb(x, 1.0 - x[..., :3]), x)


def _posterize(key, x):
  levels = 2.0 ** jax.random.randint(key, (), 1, 4)
  return _with_rgb(x, jnp.floor(x[..., :3] * levels) / (levels - 1))


def _sharpen(key, x):
  amount = jax.random.uniform(key, (), minval=0.0, maxval=3.0)
  rgb = x[..., :3]
  return _with_rgb(x, rgb + amount * (rgb - _blur_rgb(rgb, 1.0)))


def _blur(key, x):
  return _with_rgb(x, _blur_rgb(x[..., :3], jax.random.uniform(key, (), minval=0.5,
                                                                maxval=2.0)))


def _noise(key, x):
  k_std, k_noise = jax.random.split(key)
  std = jax.random.uniform(k_std, (), minval=0.0, maxval=0.3)
  return _with_rgb(x, x[..., :3] + std * jax.random.normal(k_noise, x[..., :3].shape))


def _pixelate(key, x):
  """Block averages of 2 or 4 pixels (sizes divisible by 4)."""
  size = x.shape[0]

  def blocks(b):
    pooled = x.reshape(size // b, b, size // b, b, 4).mean(axis=(1, 3))
    return jnp.repeat(jnp.repeat(pooled, b, axis=0), b, axis=1)

  return jnp.where(jax.random.bernoulli(key), blocks(2), blocks(4))


def _erase(key, x):
  """A random square of side U[size/4, size/2] removed from the object (α = 0)."""
  size = x.shape[0]
  k_side, k_pos = jax.random.split(key)
  side = jax.random.randint(k_side, (), size // 4, size // 2 + 1)
  start = jax.random.randint(k_pos, (2,), 0, size - side + 1)
  index = jnp.arange(size)
  inside_r = (index >= start[0]) & (index < start[0] + side)
  inside_c = (index >= start[1]) & (index < start[1] + side)
  mask = inside_r[:, None] & inside_c[None, :]
  return jnp.where(mask[..., None], 0.0, x)


def _contrast(key, x):
  factor = jax.random.uniform(key, (), minval=0.2, maxval=1.8)
  rgb = x[..., :3]
  mean = jnp.sum(rgb * x[..., 3:], axis=(0, 1)) / (jnp.sum(x[..., 3]) + 1e-6)
  return _with_rgb(x, mean + factor * (rgb - mean))


def _elastic(key, x):
  """A smooth random displacement field (amplitude ≈ 1.5 px), bilinear resampling."""
  size = x.shape[0]
  k_field, k_amp = jax.random.split(key)
  coarse = jax.random.normal(k_field, (2, 4, 4))
  fine = jax.image.resize(coarse, (2, size, size), "cubic")
  amplitude = jax.random.uniform(k_amp, (), minval=0.5, maxval=2.0)
  rows, cols = jnp.meshgrid(jnp.arange(size, dtype=x.dtype), jnp.arange(size, dtype=x.dtype),
                            indexing="ij")
  coords = [rows + amplitude * fine[0], cols + amplitude * fine[1]]
  return jax.vmap(lambda ch: ndimage.map_coordinates(ch, coords, order=1, mode="constant"),
                  in_axes=-1, out_axes=-1)(x)


_TRANSFORM_FNS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "translate": _translate, "rotate": _rotate, "scale": _scale, "shear": _shear,
    "hflip": _hflip, "vflip": _vflip, "hue": _hue, "brightness": _brightness,
    "grayscale": _grayscale, "invert": _invert, "posterize": _posterize, "sharpen": _sharpen,
    "blur": _blur, "noise": _noise, "pixelate": _pixelate, "erase": _erase,
    "contrast": _contrast, "elastic": _elastic,
}


def check_transforms(names: Sequence[str]) -> tuple[str, ...]:
  """The names in ``TRANSFORMS`` order; ValueError for unknown ones."""
  unknown = [n for n in names if n not in TRANSFORMS]
  if unknown:
    raise ValueError(f"unknown transformations {unknown}; choose from {TRANSFORMS}")
  return tuple(n for n in TRANSFORMS if n in names)


def transform_mask(names: Sequence[str]) -> jax.Array:
  """The set T as a boolean mask over ``TRANSFORMS`` (18,)."""
  ordered = check_transforms(names)
  return jnp.array([n in ordered for n in TRANSFORMS])


def apply_transforms(key: jax.Array, rgba: jax.Array, active: jax.Array) -> jax.Array:
  """t(o): every transformation with ``active[i]`` (a mask from ``transform_mask``),
  with fresh parameters, in ``TRANSFORMS`` order.

  Each step is a ``lax.cond``, so one compiled program serves every set T and,
  when the mask is the same for a whole vmapped batch, only the active
  transformations run.
  """
  chex.assert_rank(rgba, 3)
  chex.assert_shape(active, (len(TRANSFORMS),))
  for i, (name, k) in enumerate(zip(TRANSFORMS, jax.random.split(key, len(TRANSFORMS)))):
    rgba = jax.lax.cond(active[i], _TRANSFORM_FNS[name], lambda _, x: x, k, rgba)
  return rgba


# ---------------------------------------------------------------- datasets

def render(key: jax.Array, prototype: jax.Array, background: jax.Array,
           active: jax.Array) -> jax.Array:
  """One image b(t(o)) (size, size, 3) from a prototype and a background."""
  return jnp.clip(composite(apply_transforms(key, prototype, active), background), 0.0, 1.0)


def render_batch(background_key: jax.Array, transform_key: jax.Array, prototypes: jax.Array,
                 active: jax.Array, labels: jax.Array, first_index: int | jax.Array = 0
                 ) -> jax.Array:
  """Images (n, S, S, 3) of the objects ``prototypes[labels]``: example i (global
  index first_index + i) on the background from ``fold_in(background_key,
  index)`` under a draw of the transformations in ``active`` from
  ``fold_in(transform_key, index)``, so a large set can be rendered in chunks
  with the same result. Two calls with the same background key and labels but
  different transform keys give pairs that differ only in the transformation."""
  size, num = prototypes.shape[1], labels.shape[0]
  index = first_index + jnp.arange(num)

  def one(i, label):
    background = random_background(jax.random.fold_in(background_key, i), size)
    return render(jax.random.fold_in(transform_key, i), prototypes[label], background, active)

  return jax.vmap(one)(index, labels)


def sample_transforms2d(key: jax.Array, prototypes: jax.Array, active: jax.Array, num: int
                        ) -> tuple[jax.Array, jax.Array]:
  """A balanced dataset D(O, T): images (num, S, S, 3) in [0, 1] and labels
  (num,) = i mod len(prototypes)."""
  labels = jnp.arange(num) % prototypes.shape[0]
  k_bg, k_t = jax.random.split(key)
  return render_batch(k_bg, k_t, prototypes, active, labels), labels
