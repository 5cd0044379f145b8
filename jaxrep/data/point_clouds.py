"""Procedural 3-D point clouds of primitive shapes: pure functions of a PRNG key.

Each primitive is sampled in a canonical ("aligned") pose, roughly centred at
the origin with unit extent, with its shape parameters (radii, aspect ratios,
turns, ...) drawn at random per cloud and Gaussian jitter added to every
point. Surfaces are sampled approximately uniformly by area. The classes:

    0 sphere      1 ellipsoid   2 cube        3 cylinder    4 cone
    5 torus       6 helix       7 pyramid     8 plane       9 dumbbell

``sample_point_clouds(key, num, n_points)`` gives a balanced labelled set; the
similarity group x ↦ s R x + t that moves clouds is ``jaxrep.groups.sample_similarity``
/ ``apply_similarity`` (``similarity_group``).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrep.nn import l2_normalize

SHAPES = ("sphere", "ellipsoid", "cube", "cylinder", "cone", "torus", "helix",
          "pyramid", "plane", "dumbbell")
NUM_SHAPES = len(SHAPES)


def _unit_sphere(key: jax.Array, n: int) -> jax.Array:
  return l2_normalize(jax.random.normal(key, (n, 3)))


def _uniform(key, shape=(), low=0.0, high=1.0):
  return jax.random.uniform(key, shape, minval=low, maxval=high)


def _sphere(key, n):
  return _unit_sphere(key, n)


def _ellipsoid(key, n):
  k_axes, k_points = jax.random.split(key)
  axes = jnp.concatenate([jnp.ones(1), _uniform(k_axes, (2,), 0.3, 0.7)])
  return _unit_sphere(k_points, n) * axes


def _cube(key, n):
  k_face, k_uv, k_size = jax.random.split(key, 3)
  half = _uniform(k_size, (), 0.7, 1.0)
  face = jax.random.randint(k_face, (n,), 0, 6)
  uv = _uniform(k_uv, (n, 2), -1.0, 1.0)
  axis, sign = face // 2, jnp.where(face % 2 == 0, 1.0, -1.0)
  normal = jax.nn.one_hot(axis, 3) * sign[:, None]
  tangent_1 = jax.nn.one_hot((axis + 1) % 3, 3)
  tangent_2 = jax.nn.one_hot((axis + 2) % 3, 3)
  return half * (normal + uv[:, :1] * tangent_1 + uv[:, 1:] * tangent_2)


def _disc(key, n, radius):
  k_r, k_t = jax.random.split(key)
  r = radius * jnp.sqrt(_uniform(k_r, (n,)))
  t = _uniform(k_t, (n,), 0.0, 2 * jnp.pi)
  return r * jnp.cos(t), r * jnp.sin(t)


def _cylinder(key, n):
  k_r, k_part, k_t, k_z, k_cap = jax.random.split(key, 5)
  radius = _uniform(k_r, (), 0.35, 0.6)
  lateral_area, cap_area = 2 * jnp.pi * radius * 2.0, jnp.pi * radius**2
  on_cap = _uniform(k_part, (n,)) < 2 * cap_area / (lateral_area + 2 * cap_area)
  t = _uniform(k_t, (n,), 0.0, 2 * jnp.pi)
  z = _uniform(k_z, (n,), -1.0, 1.0)
  cx, cy = _disc(k_cap, n, radius)
  side = jnp.stack([radius * jnp.cos(t), radius * jnp.sin(t), z], -1)
  cap = jnp.stack([cx, cy, jnp.sign(z)], -1)
  return jnp.where(on_cap[:, None], cap, side)


def _cone(key, n):
  k_r, k_part, k_h, k_t, k_cap = jax.random.split(key, 5)
  radius = _uniform(k_r, (), 0.5, 0.9)
  slant = jnp.sqrt(radius**2 + 4.0)
  lateral_area, base_area = jnp.pi * radius * slant, jnp.pi * radius**2
  on_base = _uniform(k_part, (n,)) < base_area / (lateral_area + base_area)
  h = jnp.sqrt(_uniform(k_h, (n,)))          # distance from the apex, area-uniform
  t = _uniform(k_t, (n,), 0.0, 2 * jnp.pi)
  side = jnp.stack([h * radius * jnp.cos(t), h * radius * jnp.sin(t), 1.0 - 2.0 * h], -1)
  bx, by = _disc(k_cap, n, radius)
  base = jnp.stack([bx, by, -jnp.ones(n)], -1)
  return jnp.where(on_base[:, None], base, side)


def _torus(key, n):
  k_r, k_u, k_v, k_acc = jax.random.split(key, 4)
  minor = _uniform(k_r, (), 0.15, 0.4)
  u = _uniform(k_u, (n,), 0.0, 2 * jnp.pi)
  # area element ∝ 1 + (r/R) cos v: sample v by a reflection trick on two proposals
  v1, v2 = jnp.split(_uniform(k_v, (2 * n,), 0.0, 2 * jnp.pi), 2)
  accept_1 = _uniform(k_acc, (n,)) * (1 + minor) < 1 + minor * jnp.cos(v1)
  v = jnp.where(accept_1, v1, v2)
  ring = 1.0 + minor * jnp.cos(v)
  return jnp.stack([ring * jnp.cos(u), ring * jnp.sin(u), minor * jnp.sin(v)], -1)


def _helix(key, n):
  k_r, k_turns, k_s, k_tube = jax.random.split(key, 4)
  radius = _uniform(k_r, (), 0.4, 0.8)
  turns = _uniform(k_turns, (), 2.0, 4.0)
  s = _uniform(k_s, (n,))
  t = 2 * jnp.pi * turns * s
  curve = jnp.stack([radius * jnp.cos(t), radius * jnp.sin(t), 2.0 * s - 1.0], -1)
  return curve + 0.05 * jax.random.normal(k_tube, (n, 3))


def _pyramid(key, n):
  k_size, k_face, k_ab, k_base = jax.random.split(key, 4)
  half = _uniform(k_size, (), 0.6, 1.0)
  apex = jnp.array([0.0, 0.0, 1.0])
  corners = half * jnp.array([[1.0, 1.0, -1.0], [-1.0, 1.0, -1.0],
                              [-1.0, -1.0, -1.0], [1.0, -1.0, -1.0]])
  face = jax.random.randint(k_face, (n,), 0, 5)            # 4 sides + base (equal weights)
  a, b = jnp.split(_uniform(k_ab, (2 * n,)), 2)
  fold = a + b > 1
  a, b = jnp.where(fold, 1 - a, a), jnp.where(fold, 1 - b, b)
  c0, c1 = corners[face % 4], corners[(face + 1) % 4]
  side = apex + a[:, None] * (c0 - apex) + b[:, None] * (c1 - apex)
  base_uv = _uniform(k_base, (n, 2), -half, half)
  base = jnp.concatenate([base_uv, -jnp.ones((n, 1))], -1)
  return jnp.where((face == 4)[:, None], base, side)


def _plane(key, n):
  k_aspect, k_uv = jax.random.split(key)
  aspect = _uniform(k_aspect, (), 0.4, 1.0)
  uv = _uniform(k_uv, (n, 2), -1.0, 1.0) * jnp.array([1.0, aspect])
  return jnp.concatenate([uv, jnp.zeros((n, 1))], -1)


def _dumbbell(key, n):
  k_r, k_side, k_points = jax.random.split(key, 3)
  radius = _uniform(k_r, (), 0.3, 0.5)
  side = jnp.where(_uniform(k_side, (n,)) < 0.5, -1.0, 1.0)
  centre = jnp.stack([jnp.zeros(n), jnp.zeros(n), side * (1.0 - radius)], -1)
  return centre + radius * _unit_sphere(k_points, n)


_SAMPLERS = (_sphere, _ellipsoid, _cube, _cylinder, _cone, _torus, _helix, _pyramid,
             _plane, _dumbbell)


def sample_primitive(key: jax.Array, label: jax.Array | int, n_points: int,
                     jitter: float = 0.01) -> jax.Array:
  """One aligned cloud of shape ``SHAPES[label]`` with jitter N(0, jitter²): (n_points, 3)."""
  k_shape, k_jitter = jax.random.split(key)
  branches = [lambda k, f=f: f(k, n_points) for f in _SAMPLERS]
  points = jax.lax.switch(jnp.asarray(label, jnp.int32), branches, k_shape)
  points = points + jitter * jax.random.normal(k_jitter, points.shape)
  chex.assert_shape(points, (n_points, 3))
  return points


def sample_point_clouds(key: jax.Array, num: int, n_points: int,
                        num_classes: int = NUM_SHAPES, jitter: float = 0.01
                        ) -> tuple[jax.Array, jax.Array]:
  """A balanced labelled set: clouds (num, n_points, 3) and labels (num,) with
  label i mod num_classes (the first ``num_classes`` shapes)."""
  if not 1 <= num_classes <= NUM_SHAPES:
    raise ValueError(f"num_classes must be in 1..{NUM_SHAPES}, got {num_classes}")
  labels = jnp.arange(num) % num_classes
  keys = jax.random.split(key, num)
  clouds = jax.vmap(lambda k, y: sample_primitive(k, y, n_points, jitter))(keys, labels)
  return clouds, labels


def centre_and_scale(points: jax.Array) -> jax.Array:
  """The usual PointNet input normalisation: (x − x̄) / RMS radius, for (n, 3).

  Removes translation and scale, not rotation: centre_and_scale(s R x + t) =
  R · centre_and_scale(x) for s > 0.
  """
  centred = points - points.mean(axis=-2, keepdims=True)
  radius = jnp.sqrt(jnp.mean(jnp.sum(centred**2, axis=-1), axis=-1))
  return centred / radius[..., None, None]
