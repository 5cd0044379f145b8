r"""Equivariance as a measurable quantity, a test utility and a regulariser.

A function f is G-equivariant when f(g·x) = g·f(x) for all g ∈ G (invariant
when the output action is trivial). The callables follow one convention:

* ``sample_g(key) -> g``   a random group element (any pytree, e.g. a matrix,
  a permutation, an (R, t) pair) — the samplers in ``jaxrep.groups``;
* ``act_in(g, x) -> g·x``  the action on inputs;
* ``act_out(g, y) -> g·y`` the action on outputs (``trivial_action`` for
  invariance).

A ``jaxrep.groups.Group`` is such a (sample, act) pair.

``equivariance_error`` returns the relative error, a Python float,

    max_g max |f(g·x) − g·f(x)| / (max |f(x)| + eps)

over ``num_samples`` elements; ``assert_equivariant`` raises AssertionError
when it exceeds ``atol``. ``x`` and f's outputs may be pytrees. Run under
``jax.enable_x64(True)`` where exactness is claimed.

``equivariance_residual`` is the jittable, differentiable form, an array of
shape () usable as a soft-equivariance regulariser:

    R(f; x) = (1/S) Σ_{s=1}^{S} Σ_leaves mean |f(g_s·x) − g_s·f(x)|².

Example::

    err = equivariance_error(f, groups.sample_so3, groups.rotate_points,
                             groups.rotate_points, x, key)
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Sampler = Callable[[jax.Array], PyTree]
Action = Callable[[PyTree, PyTree], PyTree]


def trivial_action(g: PyTree, y: PyTree) -> PyTree:
  """g·y = y: use as ``act_out`` to test invariance."""
  del g
  return y


def _max_abs(tree: PyTree) -> float:
  leaves = jax.tree_util.tree_leaves(tree)
  return max(float(jnp.max(jnp.abs(leaf))) if jnp.size(leaf) else 0.0 for leaf in leaves)


def _max_abs_diff(a: PyTree, b: PyTree) -> float:
  diffs = jax.tree_util.tree_map(lambda u, v: jnp.asarray(u) - jnp.asarray(v), a, b)
  return _max_abs(diffs)


def equivariance_error(f: Callable[[PyTree], PyTree], sample_g: Sampler, act_in: Action,
                       act_out: Action, x: PyTree, key: jax.Array, num_samples: int = 1,
                       eps: float = 1e-12) -> float:
  """max over sampled g of max|f(g·x) − g·f(x)| / (max|f(x)| + eps)."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  fx = f(x)
  scale = _max_abs(fx) + eps
  worst = 0.0
  for sample_key in jax.random.split(key, num_samples):
    g = sample_g(sample_key)
    worst = max(worst, _max_abs_diff(f(act_in(g, x)), act_out(g, fx)) / scale)
  return worst


def invariance_error(f: Callable[[PyTree], PyTree], sample_g: Sampler, act_in: Action,
                     x: PyTree, key: jax.Array, num_samples: int = 1,
                     eps: float = 1e-12) -> float:
  """``equivariance_error`` with the trivial output action: max|f(g·x) − f(x)|/max|f(x)|."""
  return equivariance_error(f, sample_g, act_in, trivial_action, x, key, num_samples, eps)


def equivariance_residual(f: Callable[[PyTree], PyTree], sample_g: Sampler, act_in: Action,
                          act_out: Action, x: PyTree, key: jax.Array,
                          num_samples: int = 1) -> jax.Array:
  """R = (1/S) Σ_s Σ_leaves mean |f(g_s·x) − g_s·f(x)|², shape ().

  Jittable and differentiable (in f's parameters and in x): the S group
  elements come from ``jax.vmap`` over ``jax.random.split(key, S)``, so
  ``sample_g``, the actions and f must be traceable. Zero iff f commutes
  with every sampled g. Static under jit: ``num_samples`` and the callables.
  """
  fx = f(x)

  def residual(sample_key: jax.Array) -> jax.Array:
    g = sample_g(sample_key)
    squares = jax.tree_util.tree_map(lambda u, v: jnp.mean(jnp.abs(u - v) ** 2),
                                     f(act_in(g, x)), act_out(g, fx))
    return sum(jax.tree_util.tree_leaves(squares))

  return jnp.mean(jax.vmap(residual)(jax.random.split(key, num_samples)))


def invariance_residual(f: Callable[[PyTree], PyTree], sample_g: Sampler, act_in: Action,
                        x: PyTree, key: jax.Array, num_samples: int = 1) -> jax.Array:
  """``equivariance_residual`` with the trivial output action, shape ()."""
  return equivariance_residual(f, sample_g, act_in, trivial_action, x, key, num_samples)


def _default_atol(tree: PyTree) -> float:
  leaves = jax.tree_util.tree_leaves(tree)
  double = any(jnp.asarray(leaf).dtype in (jnp.float64, jnp.complex128) for leaf in leaves)
  return 1e-9 if double else 1e-4


def assert_equivariant(f: Callable[[PyTree], PyTree], sample_g: Sampler, act_in: Action,
                       act_out: Action, x: PyTree, key: jax.Array, num_samples: int = 4,
                       atol: float | None = None) -> float:
  """Raises AssertionError unless ``equivariance_error`` ≤ ``atol``; returns the error.

  ``atol`` defaults to 1e-9 when f's output is float64 and 1e-4 otherwise.
  """
  fx = f(x)
  tol = _default_atol(fx) if atol is None else atol
  error = equivariance_error(f, sample_g, act_in, act_out, x, key, num_samples)
  if not np.isfinite(error) or error > tol:
    raise AssertionError(
        f"not equivariant: relative error {error:.3e} > atol {tol:.1e} "
        f"(max over {num_samples} sampled group elements)")
  return error


def assert_invariant(f: Callable[[PyTree], PyTree], sample_g: Sampler, act_in: Action,
                     x: PyTree, key: jax.Array, num_samples: int = 4,
                     atol: float | None = None) -> float:
  """``assert_equivariant`` with the trivial output action."""
  return assert_equivariant(f, sample_g, act_in, trivial_action, x, key, num_samples, atol)
