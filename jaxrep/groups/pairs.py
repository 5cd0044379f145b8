"""Groups as ``(sample, act)`` pairs: a sampler ``key -> g`` and an action ``(g, x) -> g·x``.

A ``Group`` is what the equivariance checks take, one pair per kind of data::

    assert_equivariant(f, O3.sample, O3.act, O3.act, x, key)

Constants are groups without parameters acting on points (..., d); the
functions build the pairs that need a size or a spread.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax

from jaxrep.groups import actions

PyTree = Any


class Group(NamedTuple):
  """A group acting on one kind of data: ``sample(key) -> g``, ``act(g, x) -> g·x``."""
  sample: Callable[[jax.Array], PyTree]
  act: Callable[[PyTree, PyTree], PyTree]


SO2 = Group(actions.sample_so2, actions.rotate_points)
O2 = Group(actions.sample_o2, actions.rotate_points)
SO3 = Group(actions.sample_so3, actions.rotate_points)
O3 = Group(actions.sample_o3, actions.rotate_points)
E3 = Group(actions.sample_e3, actions.apply_e3)


def orthogonal_group(dim: int) -> Group:
  """O(dim) (Haar) acting on points (..., dim) by x ↦ R x."""
  return Group(functools.partial(actions.sample_orthogonal, dim=dim), actions.rotate_points)


def permutation_group(n: int, axis: int = 0) -> Group:
  """S_n (uniform) permuting ``axis`` (of length n) of an array."""
  return Group(functools.partial(actions.sample_permutation, n=n),
               functools.partial(actions.permute, axis=axis))


def similarity_group(translation_scale: float = 1.0,
                     max_log_scale: float = math.log(2.0)) -> Group:
  """Sim(3) acting on points (..., n, 3) by x ↦ s R x + t (see ``sample_similarity``)."""
  return Group(functools.partial(actions.sample_similarity, translation_scale=translation_scale,
                                 max_log_scale=max_log_scale), actions.apply_similarity)


def image_group(sample_matrix: Callable[[jax.Array], jax.Array]) -> Group:
  """A matrix group on R² (e.g. ``sample_so2``, ``sample_gl2_plus``) moving images
  (H, W, C) about their centre, bilinear: ``warp_image``."""
  return Group(sample_matrix, actions.warp_image)


def shift_group(max_shift: int, mode: str = "wrap") -> Group:
  """Integer shifts s ∈ {−m, …, m} of sequences along the last axis."""
  return Group(functools.partial(actions.sample_shift, max_shift=max_shift),
               functools.partial(actions.shift_sequence, mode=mode))


def scale_group(max_log_scale: float) -> Group:
  """Stretches a = exp(u), u ~ U[−m, m], of sequences about their centre."""
  return Group(functools.partial(actions.sample_log_scale, max_log_scale=max_log_scale),
               actions.scale_sequence)
