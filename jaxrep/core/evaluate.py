"""Evaluation every family needs: accuracy, linear probes and k-NN.

Features are ``(n, d)`` arrays from any encoder ``apply(params, x)``.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.nn.normalize import l2_normalize


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of ``argmax(logits) == labels``; logits (n, K), labels (n,)."""
  chex.assert_rank(logits, 2)
  chex.assert_shape(labels, logits.shape[:1])
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def _with_bias(features: jax.Array) -> jax.Array:
  return jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], 1)


def standardize(train: jax.Array, *others: jax.Array, eps: float = 1e-6):
  """Z-scores every array with the training features' mean and std."""
  mean, std = train.mean(0), train.std(0) + eps
  return tuple((a - mean) / std for a in (train, *others))


def ridge_probe_fit(features: jax.Array, labels: jax.Array, num_classes: int,
                    l2: float = 1e-3) -> jax.Array:
  """Closed-form ridge regression onto one-hot targets.

  W = (XᵀX + l2·n·I')⁻¹ XᵀY with X = [features, 1] and I' leaving the bias
  unpenalised. features (n, d), labels (n,) int; returns W of shape (d + 1, K).
  Static under jit: ``num_classes`` (K).
  """
  chex.assert_rank(features, 2)
  x = _with_bias(features)
  y = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
  penalty = jnp.eye(x.shape[1], dtype=x.dtype).at[-1, -1].set(0.0)
  gram = x.T @ x + l2 * x.shape[0] * penalty
  return jnp.linalg.solve(gram, x.T @ y)


def linear_predict(weights: jax.Array, features: jax.Array) -> jax.Array:
  """Logits of a probe fitted with a bias row: [features, 1] @ W."""
  return _with_bias(features) @ weights


def ridge_probe_accuracy(train_features, train_labels, test_features, test_labels,
                         num_classes: int, l2: float = 1e-3) -> jax.Array:
  """Test accuracy of the closed-form ridge probe: features (n, d) / (m, d), labels
  (n,) / (m,) int; returns a scalar. Static under jit: ``num_classes``."""
  weights = ridge_probe_fit(train_features, train_labels, num_classes, l2)
  return accuracy(linear_predict(weights, test_features), test_labels)


def logistic_probe_fit(features: jax.Array, labels: jax.Array, num_classes: int,
                       l2: float = 1e-4, num_steps: int = 200) -> jax.Array:
  """Multinomial logistic regression by L-BFGS on the full batch.

  Minimises mean CE([features, 1] W, y) + l2/2 ‖W_{:-1}‖² over features (n, d),
  labels (n,) int; returns W (d + 1, K). Static under jit: ``num_classes``,
  ``num_steps`` (the L-BFGS iterations, a scan length).
  """
  chex.assert_rank(features, 2)
  x = _with_bias(features)

  def objective(w):
    logits = x @ w
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return ce + 0.5 * l2 * jnp.sum(w[:-1] ** 2)

  solver = optax.lbfgs()
  w0 = jnp.zeros((x.shape[1], num_classes), x.dtype)
  value_and_grad = optax.value_and_grad_from_state(objective)

  def body(carry, _):
    w, state = carry
    value, grad = value_and_grad(w, state=state)
    updates, state = solver.update(grad, state, w, value=value, grad=grad,
                                   value_fn=objective)
    return (optax.apply_updates(w, updates), state), None

  (w, _), _ = jax.lax.scan(body, (w0, solver.init(w0)), None, length=num_steps)
  return w


def logistic_probe_accuracy(train_features, train_labels, test_features, test_labels,
                            num_classes: int, l2: float = 1e-4,
                            num_steps: int = 200) -> jax.Array:
  """Test accuracy of the L-BFGS logistic probe (shapes as ``ridge_probe_accuracy``).
  Static under jit: ``num_classes``, ``num_steps``."""
  weights = logistic_probe_fit(train_features, train_labels, num_classes, l2, num_steps)
  return accuracy(linear_predict(weights, test_features), test_labels)


def knn_predict(train_features, train_labels, test_features, num_classes: int,
                k: int = 5, metric: str = "cosine") -> jax.Array:
  """Majority vote of the k nearest training points (ties: smallest label).

  ``metric`` is "cosine" (largest cosine similarity) or "euclidean".
  train (n, d), train_labels (n,) int, test (m, d); returns (m,) int.
  Static under jit: ``num_classes``, ``k``, ``metric``.
  """
  if metric == "cosine":
    score = l2_normalize(test_features) @ l2_normalize(train_features).T
  elif metric == "euclidean":
    score = -(jnp.sum(test_features**2, 1)[:, None] - 2 * test_features @ train_features.T
              + jnp.sum(train_features**2, 1)[None, :])
  else:
    raise ValueError(f"unknown k-NN metric {metric!r}; use 'cosine' or 'euclidean'")
  _, idx = jax.lax.top_k(score, k)
  votes = jax.nn.one_hot(train_labels[idx], num_classes).sum(1)
  return jnp.argmax(votes, axis=-1)


def knn_accuracy(train_features, train_labels, test_features, test_labels,
                 num_classes: int, k: int = 5, metric: str = "cosine") -> jax.Array:
  """Test accuracy of k-NN classification (shapes as ``knn_predict``); a scalar.
  Static under jit: ``num_classes``, ``k``, ``metric``."""
  predictions = knn_predict(train_features, train_labels, test_features,
                            num_classes, k, metric)
  return jnp.mean(predictions == test_labels)
