r"""OBoW: a student predicts the teacher's bag of visual words, over an online vocabulary.

Gidaris, Bursuc, Puy, Komodakis, Cord, Pérez, "OBoW: Online Bag-of-Visual-Words
Generation for Self-Supervised Learning", CVPR 2021, Sec. 3 (Eqs. 1–5). Key details
and hyperparameters from the official code, valeoai/obow ``obow/builder_obow.py``
(``BoWExtractor``, ``BoWPredictor``, ``OBoW._bow_loss``) and
``config/ImageNet20/ResNet18_OBoW_full.yaml`` (δ⁻¹ = 10, κ = 5, α 0.99 → 1 cosine).

Teacher (EMA of the student, ``jaxrep.ssl.byol.with_ema_target``) on the image x̃:
feature map T(x̃) with its border dropped, locations u ∈ Ω (Eq. 1–2):

    d_k(u) = ‖T_u − v_k‖²                        over the K words v_k of the vocabulary V,
    c_k(u) = softmax_k(−(δ⁻¹ / μ̄) d_k(u))         soft assignment codes,
    y_k    = max_u c_k(u)  (or mean_u),  y ← y / ‖y‖₁        the BoW target,

with μ̄ an exponential moving average (decay 0.99, start 0.5) of the batch mean of
min_k d_k(u) — the temperature adapts to the feature scale (``min_distance_mean``).
Vocabulary (Sec. 3.1, "local averaging"): a FIFO queue of K words; each step, from
every image one 3×3-averaged (valid, stride 1) local feature of the border-free map at
a uniformly drawn location replaces the oldest word (``update_vocabulary``). Targets
use the vocabulary before this step's update, as in the official code.

Student (Eq. 3–5): the dynamic BoW head generates one weight vector per word,

    ω_k = κ · l2n(G(l2n(v_k))),   G = Linear(no bias) → BatchNorm (over the K words) → ReLU → Linear,

and predicts q = softmax_k(⟨ω_k, ū⟩) from the student's global (average-pooled)
feature ū of a perturbed view. The loss is KL(y ‖ q) averaged over the batch, the
views and their kinds (crops, patches) (``bow_prediction_loss``); its gradient is the
cross-entropy's. The student is the representation evaluated downstream.

Layout. ``obow_loss_fn`` returns ``loss_fn(params, batch, rng, model_state) ->
(loss, (metrics, model_state))`` for ``make_train_step(..., has_model_state=True)``:
params ``{"online", "generator", "target"}``, model state ``VocabularyState``
(queue, pointer, μ̄); ``vocabulary_task`` runs it on minibatches for ``fit``.
With ``axis_name`` set (a data-sharded batch) the new words are gathered from every
device and μ̄'s batch mean is the global one, so the queue is the same everywhere.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxrep.core import tasks
from jaxrep.core.train import init_train_state, make_train_step
from jaxrep.nn import Conv, l2_normalize
from jaxrep.nn.cnn import average_pool_2x2

PyTree = Any


# ---------------------------------------------------------------------------
# Teacher side: BoW targets


def drop_border(feature_map: jax.Array) -> jax.Array:
  """(n, H, W, C) → (n, H − 2, W − 2, C): the one-cell border removed (official code)."""
  chex.assert_rank(feature_map, 4)
  return feature_map[:, 1:-1, 1:-1, :]


def squared_distances(features: jax.Array, vocabulary: jax.Array) -> jax.Array:
  """d_k(u) = ‖f_u − v_k‖²: features (..., C), vocabulary (K, C) → (..., K)."""
  return (jnp.sum(features ** 2, -1, keepdims=True) - 2.0 * features @ vocabulary.T
          + jnp.sum(vocabulary ** 2, -1))


def soft_assignment_codes(distances: jax.Array, inv_delta: float | jax.Array,
                          min_distance_mean: float | jax.Array) -> jax.Array:
  """c_k(u) = softmax_k(−(δ⁻¹/μ̄) d_k(u)) over the last axis (the K words)."""
  return jax.nn.softmax(-(inv_delta / min_distance_mean) * distances, axis=-1)


def word_distances(feature_map: jax.Array, vocabulary: jax.Array) -> jax.Array:
  """d_k(u) over the border-free locations: (n, H, W, C), (K, C) → (n, (H−2)(W−2), K)."""
  inner = drop_border(feature_map)
  n, h, w, c = inner.shape
  return squared_distances(inner.reshape(n, h * w, c), vocabulary)


def bow_from_distances(distances: jax.Array, inv_delta: float | jax.Array,
                       min_distance_mean: float | jax.Array, pool: str = "max") -> jax.Array:
  """y = l1n(pool_u c(u)): distances (n, L, K) → BoW (n, K), rows on the simplex."""
  if pool not in ("max", "avg"):
    raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
  codes = soft_assignment_codes(distances, inv_delta, min_distance_mean)
  pooled = codes.max(axis=1) if pool == "max" else codes.mean(axis=1)
  return pooled / jnp.sum(pooled, -1, keepdims=True)


def bow_target(feature_map: jax.Array, vocabulary: jax.Array, inv_delta: float | jax.Array,
               min_distance_mean: float | jax.Array, pool: str = "max") -> jax.Array:
  """The teacher's BoW targets y (Eq. 1–2).

  Args:
    feature_map: (n, H, W, C) teacher features (the border is dropped here).
    vocabulary: (K, C) visual words.
    inv_delta: δ⁻¹, the base inverse temperature (official: 10–15).
    min_distance_mean: μ̄, the running mean of min_k d_k(u).
    pool: "max" (the paper's) or "avg" over locations.

  Returns:
    y (n, K), rows on the simplex.
  """
  return bow_from_distances(word_distances(feature_map, vocabulary), inv_delta,
                            min_distance_mean, pool)


def local_average_3x3(feature_map: jax.Array) -> jax.Array:
  """(n, H, W, C) → (n, H − 2, W − 2, C): mean over each 3×3 window (valid, stride 1)."""
  h, w = feature_map.shape[1] - 2, feature_map.shape[2] - 2
  return sum(feature_map[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def vocabulary_words(key: jax.Array, feature_map: jax.Array) -> jax.Array:
  """One candidate word per image: the 3×3 local average of the border-free map at a
  uniformly drawn location. (n, H, W, C) → (n, C)."""
  averaged = local_average_3x3(drop_border(feature_map))
  n, h, w, c = averaged.shape
  flat = averaged.reshape(n, h * w, c)
  where = jax.random.randint(key, (n,), 0, h * w)
  return flat[jnp.arange(n), where]


def update_vocabulary(vocabulary: jax.Array, pointer: jax.Array, words: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """FIFO queue: rows [p, p + m) of V ← the m new words, p ← (p + m) mod K.

  V (K, C), pointer p (int scalar), words (m, C) with K a multiple of m (as the
  official code assumes), so p always points at the oldest words.
  """
  num_words, num_new = vocabulary.shape[0], words.shape[0]
  if num_words % num_new:
    raise ValueError(f"the vocabulary size {num_words} must be a multiple of the "
                     f"number of new words per step {num_new}")
  vocabulary = lax.dynamic_update_slice(vocabulary, words.astype(vocabulary.dtype),
                                        (pointer, 0))
  return vocabulary, (pointer + num_new) % num_words


class VocabularyState(NamedTuple):
  """The teacher's non-learned state: the queue V (K, C), its pointer to the oldest
  words, μ̄ (the running mean of the minimal word distance) and ``online`` (a bool
  scalar: False freezes V at its value, the frozen-vocabulary ablation, as data so
  that both arms run in one compiled program)."""

  vocabulary: jax.Array
  pointer: jax.Array
  min_distance_mean: jax.Array
  online: jax.Array


def init_vocabulary(key: jax.Array, num_words: int, channels: int,
                    online: bool | jax.Array = True) -> VocabularyState:
  """V₀ = max(N(0, I), 0) (ReLU features are non-negative), p = 0, μ̄ = 0.5 (official)."""
  vocabulary = jnp.maximum(jax.random.normal(key, (num_words, channels)), 0.0)
  return VocabularyState(vocabulary, jnp.zeros((), jnp.int32), jnp.asarray(0.5),
                         jnp.asarray(online, bool))


# ---------------------------------------------------------------------------
# Student side: the dynamic BoW prediction head


class WeightGenerator(nn.Module):
  """ω = κ·l2n(G(l2n(V))): (K, C) words → (K, D) prediction weights.

  G = Linear(hidden, no bias) → BatchNorm over the K words (training statistics:
  the head only ever runs on a whole vocabulary) → ReLU → Linear(out).
  """

  hidden: int
  out: int
  kappa: float = 5.0

  @nn.compact
  def __call__(self, vocabulary: jax.Array) -> jax.Array:
    h = nn.Dense(self.hidden, use_bias=False)(l2_normalize(vocabulary))
    mean, var = h.mean(0), h.var(0)
    scale = self.param("bn_scale", nn.initializers.ones, (self.hidden,))
    bias = self.param("bn_bias", nn.initializers.zeros, (self.hidden,))
    h = nn.relu((h - mean) * lax.rsqrt(var + 1e-5) * scale + bias)
    return self.kappa * l2_normalize(nn.Dense(self.out)(h))


def bow_logits(weights: jax.Array, features: jax.Array) -> jax.Array:
  """⟨ω_k, ū⟩: weights (K, D), student features (n, D) → logits (n, K)."""
  return features @ weights.T


def bow_prediction_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
  """mean_i KL(y_i ‖ softmax(logits_i)); logits (n, K), targets (n, K) (no gradient)."""
  chex.assert_equal_shape((logits, target))
  target = lax.stop_gradient(target)
  log_q = jax.nn.log_softmax(logits, -1)
  return jnp.mean(jnp.sum(target * (jnp.log(jnp.where(target > 0, target, 1.0)) - log_q), -1))


# ---------------------------------------------------------------------------
# A small convolutional encoder with a feature map


class FeatureMapCNN(nn.Module):
  """(n, H, W, c) → feature map (n, H/2, W/2, C_last) (ReLU) for the BoW.

  3×3 convolutions with ReLU, a 2×2 average pool after the second one.
  ``global_features`` averages the map over locations (ū, the representation).
  """

  features: Sequence[int] = (32, 32, 64, 64)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.features):
      x = nn.relu(Conv(width, (3, 3), padding="SAME")(x))
      if i == 1:
        x = average_pool_2x2(x)
    return x


def global_features(feature_map: jax.Array) -> jax.Array:
  """ū = mean over locations: (n, H, W, C) → (n, C)."""
  return feature_map.mean(axis=(1, 2))


# ---------------------------------------------------------------------------
# The loss and its task


def obow_loss_fn(feature_map_fn: Callable[[PyTree, jax.Array], jax.Array],
                 generate: Callable[[PyTree, jax.Array], jax.Array], *,
                 inv_delta: float = 10.0, pool: str = "max", distance_decay: float = 0.99):
  """A stateful ``loss_fn(params, batch, rng, state, axis_name=None)`` for OBoW.

  Args:
    feature_map_fn: ``feature_map_fn(encoder_params, x (n, H, W, c)) -> (n, h, w, C)``,
      used with the student ``params["online"]`` and the teacher ``params["target"]``.
    generate: ``generate(generator_params, V (K, C)) -> ω (K, C)`` (``WeightGenerator``).
    inv_delta, pool: of ``bow_target``.
    distance_decay: μ̄'s EMA decay (official 0.99).

  Returns:
    ``loss_fn`` with ``batch = {"teacher": (n, H, W, c), "views": [(n, m_j, h_j, w_j, c), …]}``
    (each entry one kind of student view, m_j views per image) and state a
    ``VocabularyState`` (with ``state.online`` False, V stays as it is and μ̄ keeps
    updating: the "frozen random vocabulary" ablation); it returns ``(L, (metrics, new_state))`` with metrics the
    loss per kind, the batch perplexity of the targets and μ̄. The target's
    gradient is zero; train with ``with_ema_target``.
  """

  def loss_fn(params, batch, rng, state: VocabularyState, axis_name=None):
    teacher_map = lax.stop_gradient(feature_map_fn(params["target"], batch["teacher"]))
    # Official order: μ̄ takes this batch's mean minimal distance, then the codes.
    distances = word_distances(teacher_map, state.vocabulary)
    min_distance = jnp.mean(distances.min(-1))
    if axis_name is not None:
      min_distance = lax.pmean(min_distance, axis_name)
    mean = distance_decay * state.min_distance_mean + (1 - distance_decay) * min_distance
    target = bow_from_distances(distances, inv_delta, mean, pool)
    weights = generate(params["generator"], state.vocabulary)
    losses, metrics = [], {}
    for j, views in enumerate(batch["views"]):
      n, m = views.shape[:2]
      feats = global_features(feature_map_fn(params["online"], views.reshape(
          (n * m,) + views.shape[2:])))
      loss_j = bow_prediction_loss(bow_logits(weights, feats), jnp.repeat(target, m, axis=0))
      metrics[f"bow_loss_{j}"] = loss_j
      losses.append(loss_j)
    loss = jnp.mean(jnp.stack(losses))

    # Then the queue: the targets above used the vocabulary before this update.
    words = vocabulary_words(rng, teacher_map)
    if axis_name is not None:
      words = lax.all_gather(words, axis_name, tiled=True)
    vocabulary, pointer = update_vocabulary(state.vocabulary, state.pointer, words)
    vocabulary = jnp.where(state.online, vocabulary, state.vocabulary)
    batch_histogram = target.mean(0)
    metrics.update(
        perplexity_batch=jnp.exp(-jnp.sum(batch_histogram * jnp.log(batch_histogram + 1e-12))),
        min_distance_mean=mean)
    return loss, (metrics, VocabularyState(vocabulary, pointer, lax.stop_gradient(mean),
                                           state.online))

  return loss_fn


def vocabulary_task(params_init: Callable[[jax.Array, jax.Array], PyTree],
                    state_init: Callable[[jax.Array, Any], VocabularyState], loss_fn,
                    optimizer: optax.GradientTransformation,
                    make_views: Callable[[jax.Array, jax.Array], dict], *, batch_size: int,
                    replace: bool = False) -> tasks.Task:
  """A ``jaxrep.core.fit`` task for a stateful SSL loss (``obow_loss_fn``).

  Each run's inputs hold ``key`` (split into init, vocabulary, minibatch and view
  keys) and ``inputs["examples"] = {"x": (N, H, W, c)}``; step t draws a minibatch by
  ``tasks.minibatch_indices`` and turns it into views with
  ``make_views(fold_in(view_key, t), x)``. ``params_init(key, x (1, ...))`` gives the
  params dict; ``state_init(key, inputs)`` the ``VocabularyState`` (it may read a
  per-run entry such as ``inputs["online_vocabulary"]``).
  """

  def keys(inputs):
    return jax.random.split(inputs["key"], 4)

  def init(inputs):
    key_init, key_vocab, _, _ = keys(inputs)
    params = params_init(key_init, inputs["examples"]["x"][:1])
    return init_train_state(params, optimizer, key_init, state_init(key_vocab, inputs))

  train_step = make_train_step(loss_fn, optimizer, has_model_state=True, jit=False)

  def step(state, inputs):
    _, _, key_batches, key_views = keys(inputs)
    rows = inputs["examples"]
    index = tasks.minibatch_indices(key_batches, state.step, tasks.num_rows(rows),
                                    batch_size, replace=replace)
    x = tasks.take_rows(rows, index)["x"]
    batch = tasks.shard_batch(make_views(jax.random.fold_in(key_views, state.step), x))
    return train_step(state, batch)

  return tasks.Task(init, step)
