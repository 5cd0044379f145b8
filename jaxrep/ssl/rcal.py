r"""RCAL: representation calibration for noisy labels on long-tailed data.

Zhang, Wei, Sugiyama, Li, Liu, Tao, Jiang, "When Noisy Labels Meet Long Tail
Dilemmas: A Representation Calibration Method", ICCV 2023 (arXiv 2211.10955).
No official code was found; this follows §3 of the paper.

1. **Representations** z = f₀(x) from unsupervised contrastive learning (SimCLR,
   ``jaxrep.ssl.infonce``): labels, noisy or not, are not used.
2. **Outlier removal.** Inside each *observed* (noisy) class c, points whose local
   outlier factor (Breunig et al. 2000) exceeds a threshold are dropped. With
   N_k(p) the k nearest other members of the class, d_k(p) the distance to the k-th,
   reach_k(p, o) = max(d_k(o), ‖p − o‖),

       lrd(p) = 1 / (mean_{o∈N_k(p)} reach_k(p, o) + 1e-10),
       LOF(p) = mean_{o∈N_k(p)} lrd(o) / lrd(p),

   (scikit-learn's ``LocalOutlierFactor``: ``negative_outlier_factor_`` = −LOF;
   its ``contamination="auto"`` rule flags LOF > 1.5).
3. **Gaussian recovery.** μ_c, Σ_c: mean and covariance of class c's kept points.
4. **Calibration of tail classes.** Each tail class borrows from the K head
   classes whose means are nearest to its own (head: the classes with the most
   kept points):

       μ'_c = (μ_c + Σ_{h∈S_c} μ_h)/(K + 1),   Σ'_c = (Σ_c + Σ_{h∈S_c} Σ_h)/(K + 1) + α I;

   head classes keep (μ_c, Σ_c + α I).
5. **Sampling and balancing.** Draws from N(μ'_c, Σ'_c) top every class up to the
   largest kept class: the classifier is trained on kept real points (weight 1)
   plus M draws per class weighted so class c's total weight is max_c' n_c'.
   The paper also fine-tunes the encoder with ‖f_θ(x) − f₀(x)‖² keeping it near
   the contrastive representation; with a frozen encoder that term is 0.

All functions are pure, jittable JAX with static shapes: classes are masks, so
noisy classes of any size fit one program.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LOF_AUTO_THRESHOLD = 1.5   # scikit-learn's offset_ for contamination="auto"


def pairwise_distances(x: jax.Array) -> jax.Array:
  """‖x_i − x_j‖ (n, n), exactly 0 on the diagonal."""
  sq = jnp.sum(x * x, axis=1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
  return jnp.where(jnp.eye(len(x), dtype=bool), 0.0, jnp.sqrt(d2))


def local_outlier_factor(x: jax.Array, num_neighbors: int = 20,
                         mask: jax.Array | None = None) -> jax.Array:
  """LOF (n,) of every point among the points in ``mask`` (all if None).

  Args:
    x: (n, d) points.
    num_neighbors: k (scikit-learn's ``n_neighbors``; it must be < the number of
      points in the mask).
    mask: (n,) bool, the set the neighbours come from; a masked-out point's own LOF
      is computed against the set too (not used by callers).

  Returns:
    (n,) LOF(p); −LOF equals scikit-learn's ``negative_outlier_factor_``.
  """
  n = x.shape[0]
  mask = jnp.ones(n, bool) if mask is None else mask
  distance = pairwise_distances(x)
  candidate = mask[None, :] & ~jnp.eye(n, dtype=bool)
  neg_knn, neighbors = jax.lax.top_k(-jnp.where(candidate, distance, jnp.inf), num_neighbors)
  k_distance = -neg_knn[:, -1]                                            # d_k(p)
  reach = jnp.maximum(k_distance[neighbors], -neg_knn)                    # (n, k)
  lrd = 1.0 / (jnp.mean(reach, axis=1) + 1e-10)
  return jnp.mean(lrd[neighbors], axis=1) / lrd


def lof_keep_mask(z: jax.Array, labels: jax.Array, num_classes: int,
                  num_neighbors: int = 20, threshold: float = LOF_AUTO_THRESHOLD
                  ) -> jax.Array:
  """(n,) bool: points whose LOF within their observed class is ≤ ``threshold``."""
  lof = jax.vmap(lambda c: local_outlier_factor(z, num_neighbors, labels == c))(
      jnp.arange(num_classes))                                            # (C, n)
  return jnp.take_along_axis(lof, labels[None, :], axis=0)[0] <= threshold


def class_gaussians(z: jax.Array, labels: jax.Array, weights: jax.Array, num_classes: int
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-class (counts (C,), means (C, d), covariances (C, d, d)) of the points with
  weight 1 (``weights`` 0/1); covariances with the unbiased 1/(n_c − 1)."""
  member = jax.nn.one_hot(labels, num_classes, dtype=z.dtype) * weights[:, None]   # (n, C)
  counts = member.sum(0)
  means = member.T @ z / jnp.maximum(counts, 1)[:, None]
  centred = z[None, :, :] - means[:, None, :]                                      # (C, n, d)
  covs = jnp.einsum("cn,cnd,cne->cde", member.T, centred, centred)
  return counts, means, covs / jnp.maximum(counts - 1, 1)[:, None, None]


def calibrate_tail(counts: jax.Array, means: jax.Array, covs: jax.Array, num_head: int,
                   num_borrow: int, alpha: float) -> tuple[jax.Array, jax.Array]:
  """(μ', Σ') per class: tail classes average with their ``num_borrow`` nearest head
  classes (by the distance between means); every Σ' gets + α I.

  Head classes: the ``num_head`` classes with the largest counts.
  """
  num_classes, dim = means.shape
  is_head = jnp.zeros(num_classes, bool).at[jnp.argsort(-counts)[:num_head]].set(True)
  between = jnp.linalg.norm(means[:, None] - means[None, :], axis=-1)
  _, nearest = jax.lax.top_k(-jnp.where(is_head[None, :], between, jnp.inf), num_borrow)
  borrowed_means = (means + means[nearest].sum(1)) / (num_borrow + 1)
  borrowed_covs = (covs + covs[nearest].sum(1)) / (num_borrow + 1)
  new_means = jnp.where(is_head[:, None], means, borrowed_means)
  new_covs = jnp.where(is_head[:, None, None], covs, borrowed_covs)
  return new_means, new_covs + alpha * jnp.eye(dim)


def sample_calibrated(key: jax.Array, means: jax.Array, covs: jax.Array,
                      num_per_class: int) -> tuple[jax.Array, jax.Array]:
  """``num_per_class`` draws of each N(μ'_c, Σ'_c): features (C·M, d), labels (C·M,)."""
  num_classes = means.shape[0]
  keys = jax.random.split(key, num_classes)
  draws = jax.vmap(lambda k, m, s: jax.random.multivariate_normal(
      k, m, s, (num_per_class,), method="eigh"))(keys, means, covs)
  return draws.reshape(-1, means.shape[1]), jnp.repeat(jnp.arange(num_classes), num_per_class)


def balancing_weights(kept_counts: jax.Array, num_per_class: int) -> jax.Array:
  """(C,) weight of each draw of class c: (max_c' n_c' − n_c)/M, so that kept real
  points (weight 1) plus weighted draws give every class the same total."""
  return (kept_counts.max() - kept_counts) / num_per_class
