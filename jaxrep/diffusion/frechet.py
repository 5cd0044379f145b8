r"""Sample-quality metrics in a feature space: Fréchet distance, precision/recall/coverage.

Fréchet distance between Gaussians fit to two feature sets (Heusel et al. 2017,
FID; Dowson & Landau 1982):

    FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}),

computed in float64 with the symmetric form (both square roots by ``eigh``, so
no complex parts; tr (Σ₁Σ₂)^{1/2} = tr (Σ₁^{1/2}Σ₂Σ₁^{1/2})^{1/2}).
The features come from a network we train ourselves (e.g. a small classifier on
the same data): ``feature_statistics`` maps ``feature_fn`` over batches, and
with ``cache_dir`` saves (μ, Σ) of a reference set once per ``name``.

k-NN manifold metrics on the same features, with r_k(a) = distance from a to
its k-th nearest neighbour within its own set:
precision = frac. of fakes inside some real ball, recall = frac. of reals inside
some fake ball (Kynkäänniemi et al. 2019); density = mean count of real balls
containing a fake / k, coverage = frac. of reals whose ball holds a fake
(Naeem et al. 2020).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean (D,) and unbiased covariance (D, D) of features (n, D), float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"features must be (n ≥ 2, D), got {features.shape}")
  return features.mean(0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                     cov2: np.ndarray) -> float:
  """FD between N(μ₁, Σ₁) and N(μ₂, Σ₂) (see the module docstring); ≥ 0."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  root1 = _sqrt_psd(cov1)
  cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
  trace_root = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
  value = np.sum((mu1 - mu2)**2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_root
  return float(max(value, 0.0))


def frechet_distance_features(features1: np.ndarray, features2: np.ndarray) -> float:
  """FD between Gaussians fit to two feature sets (n₁, D) and (n₂, D)."""
  return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


def batched_features(feature_fn: Callable[[np.ndarray], np.ndarray], data: np.ndarray,
                     batch_size: int = 512) -> np.ndarray:
  """``feature_fn`` over ``data`` in batches → (n, D) float64 host array."""
  parts = [np.asarray(feature_fn(data[i:i + batch_size]), np.float64)
           for i in range(0, len(data), batch_size)]
  return np.concatenate(parts).reshape(len(data), -1)


def feature_statistics(feature_fn: Callable[[np.ndarray], np.ndarray], data: np.ndarray,
                       *, batch_size: int = 512, cache_dir: str | None = None,
                       name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(μ, Σ) of ``feature_fn`` over ``data``. With ``cache_dir`` and ``name`` (which
  must identify both the data set and the feature network) they are read from /
  written to ``cache_dir/name.npz``, so a reference set is embedded once."""
  path = None
  if cache_dir is not None and name is not None:
    path = os.path.join(cache_dir, f"{name}.npz")
    if os.path.exists(path):
      with np.load(path) as stored:
        return stored["mu"], stored["cov"]
  mu, cov = gaussian_statistics(batched_features(feature_fn, data, batch_size))
  if path is not None:
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, mu=mu, cov=cov)
  return mu, cov


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
  return np.sqrt(np.clip(sq, 0.0, None))


def _kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
  """Distance from each row to its k-th nearest other row."""
  d = _distances(features, features)
  return np.partition(d, k, axis=1)[:, k]          # column 0 is the point itself


def precision_recall_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5
                              ) -> dict[str, float]:
  """{"precision", "recall", "density", "coverage"} of ``fake`` against ``real``
  (n, D) features with k-NN balls (Kynkäänniemi et al. 2019; Naeem et al. 2020).
  O(n²) memory: meant for a few thousand points."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  real_radii, fake_radii = _kth_neighbour_radii(real, k), _kth_neighbour_radii(fake, k)
  real_fake = _distances(real, fake)                          # (n_real, n_fake)
  inside_real = real_fake <= real_radii[:, None]              # fake j in real ball i
  return {
      "precision": float(inside_real.any(axis=0).mean()),
      "recall": float((real_fake <= fake_radii[None, :]).any(axis=1).mean()),
      "density": float(inside_real.sum() / (k * fake.shape[0])),
      "coverage": float((real_fake.min(axis=1) <= real_radii).mean()),
  }
