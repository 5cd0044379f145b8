"""Concatenated representations of independently trained networks (CAT_n).

Paper: Zhang & Bottou, "Learning useful representations for shifting tasks and
distributions", ICML 2023 (arXiv:2212.07346). Reference code: TjuJianyu/RRL.

n networks with the same data, architecture, algorithm and hyperparameters but
different seeds give encoders φ_{θ_1}, ..., φ_{θ_n}; their concatenation

    CAT_n(x) = [φ_{θ_1}(x), ..., φ_{θ_n}(x)]   (N, n·d)

is compared with one n×-wide network trained once, by a linear probe on a new
task or distribution. The members are one vmapped program: their parameters are
stacked along a leading axis and ``member_features`` applies any encoder
``apply(params, x) -> (N, d)`` to every member at once.

A linear probe cannot do worse on CAT_n than on any member or subset: with the
ridge objective L(X) = min_W (1/N)‖[X, 1] W − Y‖² + λ‖W_{:-1}‖², padding a
subset's weights with zeros is feasible for the concatenation, so
L(CAT_n) ≤ L(X_S) for every subset S (``ridge_objective``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp

from jaxrep.core.evaluate import linear_predict, ridge_probe_fit

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def member_features(apply_fn: ApplyFn, stacked_params: Any, x: jax.Array) -> jax.Array:
  """Features of every member: params stacked on a leading axis → (n, N, d)."""
  return jax.vmap(apply_fn, in_axes=(0, None))(stacked_params, x)


def concatenate_members(features: jax.Array) -> jax.Array:
  """(n, N, d) → (N, n·d), member k in columns k·d … (k + 1)·d − 1."""
  chex.assert_rank(features, 3)
  n, num, d = features.shape
  return jnp.transpose(features, (1, 0, 2)).reshape(num, n * d)


def concat_features(apply_fn: ApplyFn, stacked_params: Any, x: jax.Array,
                    members: Sequence[int] | None = None) -> jax.Array:
  """CAT over all members (or the listed subset): (N, |members|·d)."""
  features = member_features(apply_fn, stacked_params, x)
  if members is not None:
    features = features[jnp.asarray(members)]
  return concatenate_members(features)


def ridge_objective(features: jax.Array, labels: jax.Array, num_classes: int,
                    l2: float = 1e-3) -> jax.Array:
  """min_W (1/N)‖[X, 1] W − onehot(y)‖² + l2‖W_{:-1}‖², at the closed-form ridge probe."""
  weights = ridge_probe_fit(features, labels, num_classes, l2)
  residual = linear_predict(weights, features) - jax.nn.one_hot(labels, num_classes,
                                                                dtype=features.dtype)
  return jnp.mean(jnp.sum(residual**2, axis=1)) + l2 * jnp.sum(weights[:-1] ** 2)
