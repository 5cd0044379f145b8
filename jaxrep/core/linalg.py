"""Vmap-safe dense linear algebra: batches become loops of batch-1 LAPACK calls.

Why. On jax/jaxlib 0.10.x CPU a *batched* LAPACK decomposition (the custom
call that ``jax.vmap`` of ``jnp.linalg.solve`` / ``cholesky`` / ``eigh`` / qr /
svd / inv / det / lstsq lowers to) whose batch × cost is large (≳ 2e5) is split
by ``jax::ParallelBatchMap`` onto the same intra-op thread pool that is running
it, and then blocks in ``BlockingCounter::Wait``. With as many such calls in
flight as there are cores the process deadlocks at 0 % CPU
(https://github.com/jax-ml/jax/issues/36927, fixed upstream after 0.11.0). A
batch-1 call runs inline and is safe.

The wrappers here are ``jax.custom_batching.sequential_vmap`` functions: unbatched
they are exactly the ``jnp.linalg`` call; under ``jax.vmap`` (nested too) they
become a ``lax.map`` (a while loop) over batch-1 LAPACK calls, so there is no
split and no deadlock. Explicit leading batch axes are handled the same way.
Results agree with ``jnp.linalg`` to rounding. The batched matrices run one after
another on one thread, which for the small matrices this project uses costs
little or nothing.

Not reverse-differentiable: ``custom_vmap`` has no transpose rule, so
``jax.grad`` / ``jax.vjp`` through any of these fails ("Linearization failed to
produce known values…"), batched or not. Forward-mode ``jax.jvp`` works, and
so does ``jax.jvp`` of a vmapped call, but ``jax.vmap`` of a ``jvp`` (hence
``jax.jacfwd`` of a vmapped call) fails inside JAX ("scan got no values"). Use them where the solve is not differentiated (closed-form
fits, Newton steps, population quantities); keep ``jnp.linalg`` inside losses.

Remove once the project requires jaxlib ≥ 0.11.2: replace each call by the
``jnp.linalg`` function of the same name.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["solve", "cholesky", "eigh"]


@jax.custom_batching.sequential_vmap
def _solve(a, b):
  return jnp.linalg.solve(a, b)


@jax.custom_batching.sequential_vmap
def _cholesky(a):
  return jnp.linalg.cholesky(a)


@jax.custom_batching.sequential_vmap
def _eigh(a):
  return tuple(jnp.linalg.eigh(a))


def _over_leading(fn, num_batch: int):
  for _ in range(num_batch):
    fn = jax.vmap(fn)
  return fn


def _check_square(a: jax.Array, name: str) -> None:
  if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
    raise ValueError(f"{name} needs square matrices (..., n, n), got shape {a.shape}")


def solve(a: jax.Array, b: jax.Array) -> jax.Array:
  """x with a x = b, like ``jnp.linalg.solve``; vmap-safe (see module docstring).

  a: (..., n, n); b: (..., n) or (..., n, k) with the same leading axes as a
  (no broadcasting of leading axes; use vmap's ``in_axes`` for that). Note that
  ``jnp.linalg.solve`` (JAX ≥ 0.5) reads a batched b of a.ndim - 1 axes
  differently; unbatched (a 2-D) the two agree.
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  _check_square(a, "solve")
  batch = a.shape[:-2]
  if b.ndim not in (a.ndim - 1, a.ndim) or b.shape[:len(batch)] != batch \
      or b.shape[len(batch)] != a.shape[-1]:
    raise ValueError(f"solve: b of shape {b.shape} does not match a of shape {a.shape}")
  return _over_leading(_solve, len(batch))(a, b)


def cholesky(a: jax.Array) -> jax.Array:
  """Lower Cholesky factor, like ``jnp.linalg.cholesky``; vmap-safe. a: (..., n, n)."""
  a = jnp.asarray(a)
  _check_square(a, "cholesky")
  return _over_leading(_cholesky, a.ndim - 2)(a)


def eigh(a: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(eigenvalues ascending, eigenvectors as columns), like ``jnp.linalg.eigh``
  (symmetrised input, lower triangle); vmap-safe. a: (..., n, n)."""
  a = jnp.asarray(a)
  _check_square(a, "eigh")
  return _over_leading(_eigh, a.ndim - 2)(a)
