"""Unsupervised MLE pretraining + ERM vs supervised ERM: excess risk over an (n, m) grid.

Command:   jaxrep run unsupervised_pretraining --workdir runs/unsupervised_pretraining
           (= python -m experiments.unsupervised_pretraining --workdir=...)
Runtime:   1 min 03 s measured on 2 CPU cores (quick mode: seconds).
Expected:  for both the factor model and the Gaussian mixture, at n = 50 labels
           and m = 10⁴ unlabeled samples the pretrained excess risk is ≤ 0.25 × the
           supervised ERM baseline's, and at n = 50 it falls with m.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def _logspace(start: float, stop: float, num: int) -> tuple[float, ...]:
  """np.logspace(start, stop, num) without numpy (equal in float32)."""
  return tuple(10.0 ** (start + (stop - start) * i / (num - 1)) for i in range(num))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 10
  c.labeled_sizes = (20, 50, 100, 200, 500)
  c.unlabeled_sizes = (100, 1000, 10000, 100000)
  c.factor = ml_collections.ConfigDict(dict(
      dim=100, rank=5, noise_std=1.0, label_noise_std=0.5,
      ridge_penalties=_logspace(-2, 5, 36)))
  c.mixture = ml_collections.ConfigDict(dict(
      dim=20, num_components=4, mean_norm=3.0, variance=1.0,
      label_probs=(0.9, 0.1, 0.9, 0.1), em_steps=100, em_restarts=4, logistic_l2=1e-3,
      erm_steps=1000, erm_restarts=4, erm_learning_rate=0.03, cv_folds=5,
      cv_penalties=_logspace(-4, 1, 11), num_test=20000))
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.labeled_sizes = (50,)     # the n column the measures read: one ERM fit, half the grid
  c.unlabeled_sizes = (100, 1000)
  c.factor.dim = 20
  c.mixture.dim = 6
  c.mixture.em_steps = 20
  c.mixture.erm_steps = 50
  c.mixture.num_test = 2000
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.factor.rank >= c.factor.dim:
    raise ConfigError("factor.rank must be < factor.dim")
  if len(c.mixture.label_probs) != c.mixture.num_components:
    raise ConfigError("mixture.label_probs needs one entry per component")
  if any(not 0 <= q <= 1 for q in c.mixture.label_probs):
    raise ConfigError("mixture.label_probs must lie in [0, 1]")
  if c.mixture.num_components > c.mixture.dim:
    raise ConfigError("mixture.num_components must be ≤ mixture.dim (orthonormal means)")
  if min(c.labeled_sizes) < max(c.mixture.cv_folds, c.mixture.num_components + 1):
    raise ConfigError("every labeled size must exceed the CV folds and K")
  if min(c.unlabeled_sizes) < c.mixture.num_components:
    raise ConfigError("every unlabeled size must be ≥ the number of components")
