r"""Stationary representations from a fixed d-simplex classifier, and compatibility.

Biondi, Pernici, Ricci, Del Bimbo. "Stationary Representations: Optimally
Approximating Compatibility and Implications for Improved Model Replacements",
CVPR 2024 (official code: miccunifi/iamcl2r).

**d-simplex classifier.** K class vectors w_1 … w_K ∈ R^{K−1} at the vertices of
a regular simplex centred at the origin: ‖w_k‖ = 1, ⟨w_i, w_j⟩ = −1/(K−1) for
i ≠ j, Σ_k w_k = 0. Built from [I_{K−1}; α·1ᵀ] with α = (1 − √K)/(K − 1),
centred and row-normalised. The classifier is frozen, logits = φ(x) Wᵀ, and K
is preallocated (larger than the classes seen so far) so the vertices never
move: every model trained against the same W — in any order, from any init —
aims its class-k features at the same w_k, which is why representations stay
compatible across model updates and replacements.

**Compatibility training (HOC, Eq. 4).** With L2-normalised features of the new
model φ_new and of the previous (frozen) model φ_old on a batch,

    L_HOC = mean_i [ −μ⟨φ_old(x_i), φ_new(x_i)⟩
                     + log Σ_{j: y_j ≠ y_i} exp(μ⟨φ_old(x_i), φ_new(x_j)⟩) ],   μ = 10,

and the total is λ·CE + (1 − λ)·L_HOC with λ = 0.1 (Eq. 3). The official code
zeroes the same-class similarities instead of excluding them; we follow the
equation and exclude them.

**Average compatibility.** For models φ_1 … φ_T (in update order), the matrix
M_ij = retrieval accuracy with queries embedded by φ_i and the gallery by φ_j;
the pair (i > j) is compatible when M_ij > M_jj (the updated query model beats
the old model on its own gallery), and

    AC = (2 / (T(T − 1))) Σ_{i > j} 1[M_ij > M_jj].

Retrieval is 1:N identification as in the official code: gallery features are
averaged per class into unit templates, each unit query takes the label of its
most similar template.

**Training a model of the sequence** (``compatibility_task``, a ``jaxrep.core.fit``
task): start from given parameters, which are also φ_old (the model the task
starts from: the previous task's model, or a freshly loaded pre-trained one, as
in the official ``main.py``), and draw each step's batch i.i.d. with probability
∝ per-example weights (the official BalancedBatchSampler: weight 1/n_c on every
available sample of class c — the task's data plus the replay memory — and 0
elsewhere).
"""
from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrep.core import tasks
from jaxrep.core.evaluate import accuracy
from jaxrep.core.train import init_train_state, make_train_step
from jaxrep.nn import l2_normalize

HOC_MU = 10.0
HOC_LAMBDA = 0.1


def dsimplex(num_classes: int) -> jax.Array:
  """The K vertices of a regular simplex in R^{K−1}, unit rows, zero sum: (K, K−1)."""
  if num_classes < 2:
    raise ValueError(f"a d-simplex needs at least 2 classes, got {num_classes}")
  d = num_classes - 1
  alpha = (1.0 - np.sqrt(num_classes)) / d
  vertices = np.concatenate([np.eye(d), np.full((1, d), alpha)], axis=0)
  vertices -= vertices.mean(axis=0)
  vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
  return jnp.asarray(vertices)


def fixed_classifier_logits(features: jax.Array, simplex: jax.Array) -> jax.Array:
  """φ(x) Wᵀ with the frozen classifier W (K, d); features (n, d) → (n, K)."""
  chex.assert_rank([features, simplex], 2)
  return features @ jax.lax.stop_gradient(simplex).T


def hoc_loss(new_features: jax.Array, old_features: jax.Array, labels: jax.Array,
             mu: float = HOC_MU) -> jax.Array:
  """Eq. 4 on L2-normalised features (n, d); the old features get no gradient.

  Rows without any other-class sample contribute only the positive term.
  """
  chex.assert_equal_shape([new_features, old_features])
  old = jax.lax.stop_gradient(l2_normalize(old_features))
  new = l2_normalize(new_features)
  sim = mu * old @ new.T
  negatives = labels[:, None] != labels[None, :]
  has_negative = negatives.any(axis=1)
  lse = jax.nn.logsumexp(sim, axis=1, where=negatives | ~has_negative[:, None])
  lse = jnp.where(has_negative, lse, 0.0)
  return jnp.mean(-jnp.diagonal(sim) + lse)


def compatibility_loss(logits: jax.Array, labels: jax.Array, new_features: jax.Array,
                       old_features: jax.Array | None, lam: float = HOC_LAMBDA,
                       mu: float = HOC_MU) -> tuple[jax.Array, dict[str, jax.Array]]:
  """λ·CE + (1 − λ)·L_HOC (Eq. 3); plain CE when there is no old model."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  if old_features is None:
    return ce, {"ce": ce}
  hoc = hoc_loss(new_features, old_features, labels, mu)
  return lam * ce + (1 - lam) * hoc, {"ce": ce, "hoc": hoc}


def class_templates(features: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """Unit mean of the unit features of each class: (K, d)."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  sums = onehot.T @ l2_normalize(features)
  return l2_normalize(sums / jnp.maximum(onehot.sum(0), 1.0)[:, None])


def identification_accuracy(query_features: jax.Array, query_labels: jax.Array,
                            gallery_features: jax.Array, gallery_labels: jax.Array,
                            num_classes: int) -> jax.Array:
  """1:N search: top-1 accuracy of unit queries against the gallery's class templates."""
  templates = class_templates(gallery_features, gallery_labels, num_classes)
  return accuracy(l2_normalize(query_features) @ templates.T, query_labels)


def compatibility_matrix(query_features: jax.Array, query_labels: jax.Array,
                         gallery_features: jax.Array, gallery_labels: jax.Array,
                         num_classes: int) -> jax.Array:
  """M_ij = accuracy of queries by model i against the gallery by model j.

  query_features (T, n_q, d), gallery_features (T, n_g, d) → (T, T).
  """
  chex.assert_rank([query_features, gallery_features], 3)

  def row(q):
    return jax.vmap(lambda g: identification_accuracy(
        q, query_labels, g, gallery_labels, num_classes))(gallery_features)

  return jax.vmap(row)(query_features)


def average_compatibility(matrix: jax.Array) -> jax.Array:
  """Fraction of pairs i > j with M_ij > M_jj (1 for a single model)."""
  chex.assert_rank(matrix, 2)
  t = matrix.shape[0]
  lower = jnp.tril(jnp.ones((t, t), bool), k=-1)
  compatible = (matrix > jnp.diagonal(matrix)[None, :]) & lower
  return compatible.sum() / max(t * (t - 1) // 2, 1)


def balanced_weights(y: np.ndarray, available: np.ndarray) -> np.ndarray:
  """Weight 1/n_c for each available sample of class c, 0 elsewhere: (n,) float32."""
  counts = np.bincount(y[available], minlength=y.max() + 1)
  return np.where(available, 1.0 / np.maximum(counts[y], 1), 0.0).astype(np.float32)


def incremental_replay_weights(y: np.ndarray, num_tasks: int, rehearsal_per_class: int,
                               rng: np.random.Generator, num_classes: int = 10
                               ) -> np.ndarray:
  """Class-incremental sampling weights (tasks, n): task t's classes (t·K/T …
  (t + 1)·K/T − 1) plus the replay memory, class-balanced; after each task
  ``rehearsal_per_class`` random samples of each of its classes join the memory."""
  per_task = num_classes // num_tasks
  weights = np.zeros((num_tasks, y.size), np.float32)
  memory = np.zeros(y.size, bool)
  for t in range(num_tasks):
    current = (y >= t * per_task) & (y < (t + 1) * per_task)
    weights[t] = balanced_weights(y, current | memory)
    for cls in range(t * per_task, (t + 1) * per_task):
      memory[rng.choice(np.flatnonzero(y == cls), rehearsal_per_class, replace=False)] = True
  return weights


def replay_indices(key: jax.Array, step: jax.Array, weights: jax.Array,
                   batch_size: int) -> jax.Array:
  """``batch_size`` indices drawn i.i.d. with probability ∝ ``weights`` (n,), with
  ``fold_in(key, step)`` (class-balanced replay batches)."""
  return jax.random.choice(jax.random.fold_in(key, step), weights.shape[0], (batch_size,),
                           p=weights / weights.sum())


def compatibility_task(apply_fn: Callable[..., tuple[jax.Array, jax.Array]],
                       optimizer: optax.GradientTransformation, *, batch_size: int,
                       lam: float | None, mu: float = HOC_MU) -> tasks.Task:
  """A ``fit`` task training one model of the sequence.

  ``apply_fn(params, x) -> (features, logits)``. Each run's inputs hold ``params``
  (the start, also φ_old), ``key`` and ``weights`` (n,); the shared ``examples``
  are {"x": (n, ...), "y": (n,)}. The loss is λ·CE + (1 − λ)·L_HOC(φ, φ_old)
  (Eq. 3, λ = ``lam``) or plain cross-entropy when ``lam`` is None; the metrics
  hold ``ce``, ``hoc`` and the batch ``accuracy``.
  """

  def loss_fn(old_params):
    def loss(params, batch, rng):
      del rng
      features, logits = apply_fn(params, batch["x"])
      old = None if lam is None else apply_fn(old_params, batch["x"])[0]
      value, metrics = compatibility_loss(logits, batch["y"], features, old,
                                          1.0 if lam is None else lam, mu)
      return value, {**metrics, "accuracy": accuracy(logits, batch["y"])}
    return loss

  def init(inputs):
    return init_train_state(inputs["params"], optimizer, inputs["key"])

  def step(state, inputs):
    idx = replay_indices(inputs["key"], state.step, inputs["weights"], batch_size)
    batch = tasks.shard_batch(tasks.take_rows(inputs["examples"], idx))
    return make_train_step(loss_fn(inputs["params"]), optimizer, jit=False)(state, batch)

  return tasks.Task(init, step)
