r"""SBCL: subclass-balancing contrastive learning for long-tailed recognition.

Hou, Yu, Zhou, Zhang, Luo, Huang, "Subclass-balancing Contrastive Learning for
Long-tailed Recognition", ICCV 2023. Official code: JackHck/SBCL
(``SimCLR/main.py``: clustering and class temperatures; ``SimCLR/loss.py``:
``SupConLoss_rank``, the SBCL loss; ``SimCLR/linear_classify.py``: the LDAM-DRW
linear stage). Hyperparameter defaults below are the official ones.

**Subclasses.** Class c with n_c training examples is split into
K_c = max(1, ⌊n_c / max(min_c' n_c', M)⌋) subclasses (M = 10), by cosine k-means of
the current projections of its examples; re-clustered every few epochs during
training (after a SupCon warm-up). Subclass ids are global (class c's ids follow
class c−1's), so head classes become many subclasses of roughly tail-class size.

**Class temperatures.** With μ_c the mean projection of class c,
d_c = mean_i ‖z_i − μ_c‖ / log(n_c + 10), clipped to its 20th–80th percentiles over
classes; τ_c = τ · d_c / mean_c' d_c', and τ_c = τ for a class with one subclass.

**Loss** (Eq. 4–6). Unit projections a_i of every view, s_ij = ⟨a_i, a_j⟩, subclass
labels s̃, class labels ỹ, A(i) = {j ≠ i}. The subclass term is SupCon on subclass
labels at temperature τ:

    ℓ^sub_i = −(1/|P_s(i)|) Σ_{p∈P_s(i)} log exp(s_ip/τ) / Σ_{a∈A(i)} exp(s_ia/τ),
    P_s(i) = {p ∈ A(i) : s̃_p = s̃_i}.

The class term contrasts the anchor's other views and the *other subclasses of its
class* against everything outside its subclass, at the anchor's class temperature:

    ℓ^cls_i = −(1/|P_c(i)|) Σ_{p∈P_c(i)} log exp(s_ip/τ_{ỹ_i}) / Σ_{a∈N(i)} exp(s_ia/τ_{ỹ_i}),
    P_c(i) = V(i) ∪ {p : ỹ_p = ỹ_i, s̃_p ≠ s̃_i},  N(i) = V(i) ∪ {a : s̃_a ≠ s̃_i},

V(i) the other views of i's example. L = (τ/τ_base) mean_i ℓ^sub_i + γ mean_i ℓ^cls_i,
τ = 0.1, τ_base = 0.07, γ = 0.25. With subclasses = classes, γ = 0 and τ_base = τ,
L is SupCon (``jaxrep.ssl.supcon``); with singleton subclasses it is InfoNCE.

**Linear stage.** A cosine ("normed") linear classifier on frozen encoder features
trained with LDAM (Cao et al. 2019): logit of the true class minus
m_y = m_max · n_y^{−1/4} / max_c n_c^{−1/4}, scaled by s = 30, with class-balanced
weights w_c ∝ (1 − β)/(1 − β^{n_c}), β = 0.9999, normalised to sum to C (the
official "DRW" rule applies them from the first epoch).
"""
from __future__ import annotations

from typing import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from sklearn.cluster import KMeans

from jaxrep.nn import l2_normalize
from jaxrep.ssl.supcon import supcon_loss


# ---------------------------------------------------------------------------
# Subclasses and class temperatures (host side, between training rounds)


def subclass_counts(class_counts: Sequence[int], min_size: int = 10) -> tuple[int, ...]:
  """K_c = max(1, ⌊n_c / max(min_c' n_c', min_size)⌋) subclasses per class."""
  size = max(min(class_counts), min_size)
  return tuple(max(1, int(n) // size) for n in class_counts)


def subclass_labels(features: np.ndarray, labels: np.ndarray, num_subclasses: Sequence[int],
                    seed: int = 0, max_iter: int = 35) -> np.ndarray:
  """Global subclass ids (N,): cosine k-means with K_c clusters inside each class.

  Cosine k-means is scikit-learn's KMeans on unit-normalised features (k-means++
  initialisation, one init). Class c's ids are o_c + {0, …, K_c − 1} with
  o_c = Σ_{c'<c} K_{c'}.
  """
  features = np.asarray(features, np.float64)
  features = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
  labels = np.asarray(labels)
  out = np.zeros(len(labels), np.int32)
  offset = 0
  for c, k in enumerate(num_subclasses):
    rows = np.flatnonzero(labels == c)
    if k > 1 and len(rows) > k:
      kmeans = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed + c)
      out[rows] = offset + kmeans.fit_predict(features[rows])
    else:
      out[rows] = offset
    offset += k
  return out


def class_temperatures(features: np.ndarray, labels: np.ndarray,
                       num_subclasses: Sequence[int], temperature: float = 0.1) -> np.ndarray:
  """τ_c (C,): τ · clip(d_c) / mean(clip(d)), and τ for single-subclass classes."""
  features, labels = np.asarray(features, np.float64), np.asarray(labels)
  num_classes = len(num_subclasses)
  density = np.zeros(num_classes)
  for c in range(num_classes):
    members = features[labels == c]
    spread = np.linalg.norm(members - members.mean(0), axis=1).mean()
    density[c] = spread / np.log(len(members) + 10)
  density = density.clip(np.percentile(density, 20), np.percentile(density, 80))
  tau = temperature * density / density.mean()
  return np.where(np.asarray(num_subclasses) == 1, temperature, tau).astype(np.float32)


# ---------------------------------------------------------------------------
# The loss


def _gathered(u: jax.Array, labels: tuple[jax.Array, ...], axis_name: str | None):
  """Candidates (global batch) of ``u`` (n, V, D) and of each label array; offset."""
  if axis_name is None:
    return u, labels, 0
  gather = lambda a: lax.all_gather(a, axis_name, tiled=True)
  return gather(u), tuple(gather(a) for a in labels), lax.axis_index(axis_name) * u.shape[0]


def class_level_loss(z: jax.Array, labels: jax.Array, sublabels: jax.Array,
                     anchor_temperature: jax.Array, axis_name: str | None = None
                     ) -> jax.Array:
  """mean_i ℓ^cls_i over the local anchors (see the module docstring).

  Args:
    z: (n, V, D) embeddings (normalised here); labels, sublabels: (n,) ints.
    anchor_temperature: (n,) τ_{ỹ_i} of each example (used for all its views).
    axis_name: the data axis to gather candidates over, or None.
  """
  chex.assert_rank(z, 3)
  n, num_views, _ = z.shape
  u = l2_normalize(z)
  g, (g_labels, g_sub), offset = _gathered(u, (labels, sublabels), axis_name)
  num_global = g.shape[0]
  anchors = jnp.swapaxes(u, 0, 1).reshape(num_views * n, -1)
  candidates = jnp.swapaxes(g, 0, 1).reshape(num_views * num_global, -1)
  example = jnp.tile(offset + jnp.arange(n), num_views)
  g_example = jnp.tile(jnp.arange(num_global), num_views)
  self_index = jnp.arange(num_views)[:, None] * num_global + (offset + jnp.arange(n))[None, :]
  is_self = jax.nn.one_hot(self_index.reshape(-1), num_views * num_global, dtype=bool)
  other_view = (example[:, None] == g_example[None, :]) & ~is_self
  same_sub = jnp.tile(sublabels, num_views)[:, None] == jnp.tile(g_sub, num_views)[None, :]
  same_class = jnp.tile(labels, num_views)[:, None] == jnp.tile(g_labels, num_views)[None, :]
  in_denominator = (~same_sub & ~is_self) | other_view
  is_positive = (same_class & ~same_sub) | other_view
  logits = anchors @ candidates.T / jnp.tile(anchor_temperature, num_views)[:, None]
  log_prob = jax.nn.log_softmax(jnp.where(in_denominator, logits, -jnp.inf), axis=-1)
  per_anchor = -(jnp.where(is_positive, log_prob, 0.0).sum(1)
                 / jnp.maximum(is_positive.sum(1), 1))
  return jnp.mean(per_anchor)


def sbcl_loss(z: jax.Array, labels: jax.Array, sublabels: jax.Array,
              class_temperature: jax.Array, temperature: float = 0.1,
              base_temperature: float = 0.07, gamma: float = 0.25,
              axis_name: str | None = None) -> jax.Array:
  """L = (τ/τ_base)·SupCon(z; subclasses, τ) + γ·mean ℓ^cls (module docstring).

  Args:
    z: (n, V, D) embeddings; labels, sublabels: (n,) class and global subclass ids.
    class_temperature: (C,) τ_c per class (``class_temperatures``).
    temperature, base_temperature, gamma: τ, τ_base, γ.
    axis_name: the data axis, or None (global batch).

  Returns:
    A scalar: the loss of the local anchors against the global batch.
  """
  subclass_term = supcon_loss(z, sublabels, temperature, axis_name)
  class_term = class_level_loss(z, labels, sublabels, class_temperature[labels], axis_name)
  return temperature / base_temperature * subclass_term + gamma * class_term


def sbcl_loss_fn(encode: Callable[..., jax.Array], temperature: float = 0.1,
                 base_temperature: float = 0.07, gamma: float = 0.25):
  """A ``loss_fn(params, batch, rng, axis_name=None)`` for SBCL on two views.

  ``batch = {"view1": x1, "view2": x2, "y": (n,), "sub": (n,), "class_temperature":
  (C,)}``; ``encode(params, x) -> (n, D)``. Returns ``(L, {"sbcl": L})``.
  """

  def loss_fn(params, batch, rng, axis_name=None):
    del rng
    z = jnp.stack([encode(params, batch["view1"]), encode(params, batch["view2"])], axis=1)
    loss = sbcl_loss(z, batch["y"], batch["sub"], batch["class_temperature"], temperature,
                     base_temperature, gamma, axis_name)
    return loss, {"sbcl": loss}

  return loss_fn


# ---------------------------------------------------------------------------
# The linear stage: normed linear classifier + LDAM with class-balanced weights


def normed_linear_logits(weights: jax.Array, features: jax.Array) -> jax.Array:
  """cos(f, w_c): (n, d) features, (d, C) weights → (n, C)."""
  return l2_normalize(features) @ l2_normalize(weights, axis=0)


def class_balanced_weights(class_counts: Sequence[int], beta: float = 0.9999) -> np.ndarray:
  """w_c = (1 − β)/(1 − β^{n_c}), normalised to sum to C (Cui et al. 2019)."""
  counts = np.asarray(class_counts, np.float64)
  w = (1.0 - beta) / (1.0 - np.power(beta, counts))
  return (w / w.sum() * len(counts)).astype(np.float32)


def ldam_loss(logits: jax.Array, labels: jax.Array, class_counts: Sequence[int],
              max_margin: float = 0.5, scale: float = 30.0,
              class_weights: jax.Array | None = None) -> jax.Array:
  """LDAM: weighted CE of s·(logits − m_y e_y), m_c ∝ n_c^{−1/4}, max m_c = max_margin.

  The weighted mean divides by Σ_i w_{y_i}, as PyTorch's weighted cross-entropy.
  """
  margins = 1.0 / np.sqrt(np.sqrt(np.asarray(class_counts, np.float64)))
  margins = jnp.asarray(margins * (max_margin / margins.max()), logits.dtype)
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  per_example = optax.softmax_cross_entropy(scale * (logits - onehot * margins[labels][:, None]),
                                            onehot)
  weight = jnp.ones_like(per_example) if class_weights is None else class_weights[labels]
  return jnp.sum(weight * per_example) / jnp.sum(weight)
