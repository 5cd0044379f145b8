r"""Long-tailed (and noisy-label) subsets of a stored dataset: pure functions of a key.

Long tail (the "exp" profile of the long-tailed CIFAR benchmarks, Cao et al. 2019,
``IMBALANCECIFAR10.get_img_num_per_cls``, used by SBCL and RCAL): class c of C keeps

    n_c = ⌊n_max · ρ^{−c/(C−1)}⌋,       c = 0, …, C − 1,

examples, so counts decay exponentially from n_max (class 0) to n_max/ρ (class C−1),
ρ the imbalance ratio. ``long_tail_indices`` draws, for every class, a uniform random
n_c-subset of its examples and returns them grouped by class: class c occupies the
static rows [Σ_{c'<c} n_{c'}, Σ_{c'≤c} n_{c'}), which lets per-class work (k-means,
Gaussian fits) slice them without a data-dependent shape.

Symmetric label noise (as in the noisy long-tailed benchmarks): each label is
replaced, independently with probability η, by a class drawn uniformly from the
C − 1 *other* classes, so the realised noise rate is η (not η(C−1)/C).

Everything is jittable and vmappable over keys (seeds): the counts are static.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def long_tail_counts(max_count: int, num_classes: int, imbalance_ratio: float
                     ) -> tuple[int, ...]:
  """(n_0, …, n_{C−1}) with n_c = ⌊max_count · ρ^{−c/(C−1)}⌋."""
  if num_classes < 2 or imbalance_ratio < 1:
    raise ValueError("need num_classes ≥ 2 and imbalance_ratio ≥ 1")
  return tuple(int(max_count * imbalance_ratio ** (-c / (num_classes - 1)))
               for c in range(num_classes))


def long_tail_indices(key: jax.Array, labels: jax.Array, counts: Sequence[int]) -> jax.Array:
  """Indices (Σ n_c,) into ``labels``: a uniform n_c-subset of class c, classes in order.

  Args:
    key: PRNG key.
    labels: (N,) integer labels in {0, …, C−1}; class c must hold ≥ counts[c] rows
      (checked when ``labels`` is concrete).
    counts: static (C,) numbers to keep per class.

  Returns:
    (Σ n_c,) int32 indices; rows [o_c, o_c + n_c) (o_c = Σ_{c'<c} n_{c'}) are class c,
    in a uniformly random order.
  """
  counts = tuple(int(n) for n in counts)
  if not isinstance(labels, jax.core.Tracer):
    available = np.bincount(np.asarray(labels), minlength=len(counts))
    if np.any(available[:len(counts)] < counts):
      raise ValueError(f"classes hold {available.tolist()} examples, fewer than {counts}")
  labels = jnp.asarray(labels)
  priority = jax.random.uniform(key, labels.shape)
  order = jnp.lexsort((priority, labels))        # by class, then by a random priority
  starts = jnp.searchsorted(labels[order], jnp.arange(len(counts)))
  return jnp.concatenate([order[starts[c] + jnp.arange(n)] for c, n in enumerate(counts)])


def symmetric_label_noise(key: jax.Array, labels: jax.Array, noise_rate: float,
                          num_classes: int) -> jax.Array:
  """Labels flipped with probability η to a uniformly drawn other class."""
  flip_key, class_key = jax.random.split(key)
  flip = jax.random.bernoulli(flip_key, noise_rate, labels.shape)
  offset = jax.random.randint(class_key, labels.shape, 1, num_classes)
  return jnp.where(flip, (labels + offset) % num_classes, labels).astype(labels.dtype)


def long_tail_sample(key: jax.Array, x: jax.Array, y: jax.Array, counts: Sequence[int],
                     noise_rate: float = 0.0) -> dict[str, jax.Array]:
  """A long-tailed, optionally noisy-label training set drawn from (x, y).

  Args:
    key: PRNG key (one per seed; vmappable).
    x: (N, ...) inputs; y: (N,) clean labels in {0, …, C−1}, C = len(counts).
    counts: static per-class sizes (``long_tail_counts``).
    noise_rate: η of ``symmetric_label_noise`` (0: clean labels).

  Returns:
    ``{"x": (M, ...), "y": (M,) observed (noisy) labels, "y_clean": (M,),
    "index": (M,) rows of x}``, M = Σ n_c, grouped by *clean* class as in
    ``long_tail_indices``.
  """
  subset_key, noise_key = jax.random.split(key)
  index = long_tail_indices(subset_key, y, counts)
  y_clean = jnp.asarray(y)[index]
  y_observed = (symmetric_label_noise(noise_key, y_clean, noise_rate, len(counts))
                if noise_rate > 0 else y_clean)
  return {"x": jnp.asarray(x)[index], "y": y_observed, "y_clean": y_clean, "index": index}
