"""Out-of-domain unlabeled data improves a linear classifier (RSS training).

Command:   jaxrep run ood_unlabeled --workdir runs/ood_unlabeled
           (= python -m experiments.ood_unlabeled --workdir=runs/ood_unlabeled)
Runtime:   29 s measured on 2 CPU cores (quick mode: seconds).
Expected:  at m = 10, RSS accuracy − ERM accuracy ≥ 0.15 at n = 10⁴, and RSS
           accuracy non-decreasing along n ∈ {m, 10m, 100m, 10⁴} for every m.
           Ceiling: the shifted mean's own direction, Φ(μ₀ᵀμ₁/‖μ₁‖) ≈ 0.81; the
           Bayes accuracy is Φ(1) ≈ 0.84.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 20
  c.dim = 200
  c.std = 1.0
  c.alpha = 0.5
  c.labeled_sizes = (10, 20, 40)
  c.n_max = 10000
  c.gamma = 1.0
  c.gamma_unlabeled = 0.03
  c.lam = 5.0
  c.weight_decay = 0.0
  c.learning_rate = 0.5
  c.momentum = 0.9
  c.num_steps = 300
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.dim = 50
  c.labeled_sizes = (10,)
  c.n_max = 100
  c.num_steps = 50
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.alpha < 0 or c.std <= 0:
    raise ConfigError("'alpha' must be ≥ 0 and 'std' > 0")
  if min(c.gamma, c.gamma_unlabeled) <= 0 or c.lam < 0 or c.weight_decay < 0:
    raise ConfigError("'gamma', 'gamma_unlabeled' must be > 0; 'lam', 'weight_decay' ≥ 0")
  if c.learning_rate <= 0 or not 0 <= c.momentum < 1:
    raise ConfigError("'learning_rate' must be > 0 and 'momentum' in [0, 1)")
  if any(m < 2 for m in c.labeled_sizes) or c.n_max < max(c.labeled_sizes):
    raise ConfigError("'labeled_sizes' must be ≥ 2 and ≤ 'n_max'")
