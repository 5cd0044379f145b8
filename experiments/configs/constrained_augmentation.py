"""Invariance-constrained augmentation (primal–dual + Metropolis–Hastings) on MNIST-1D.

Command:   jaxrep run invariance_constrained_augmentation --workdir runs/daug
           (= python -m experiments.constrained_augmentation --workdir=runs/daug)
Runtime:   51 s measured on 2 CPU cores (quick mode: seconds).
Expected:  primal–dual augmentation ≥ uniform (TrivialAugment-style)
           augmentation + 1 test-accuracy point; with a loose constraint
           (ε = 10 nats) the multiplier, started at γ = 1, ends at exactly 0.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 5
  c.num_train = 1000
  c.channels = 32
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.num_steps = 3000
  c.num_levels = 10
  c.num_mh_steps = 1
  c.margin = 0.6
  c.dual_lr = -1.0          # < 0: OFFICIAL_DUAL_BUDGET / num_steps (see the experiment)
  c.loose_margin = 10.0
  c.loose_init_dual = 1.0
  c.max_shift = 10
  c.max_log_scale = 0.4
  c.noise_std = 1.0
  c.max_erase = 16
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_train = 200
  c.channels = 8
  c.batch_size = 32
  c.num_steps = 40
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.num_train > 4000:
    raise ConfigError("'num_train' must be ≤ 4000 (the MNIST-1D training split)")
  if c.batch_size > c.num_train:
    raise ConfigError("'batch_size' must be ≤ 'num_train'")
  if c.margin < 0 or c.loose_margin < 0 or c.loose_init_dual < 0:
    raise ConfigError("margins and the initial multiplier must be non-negative")
  if c.learning_rate <= 0:
    raise ConfigError("'learning_rate' must be positive")
  if c.max_erase >= 40 or c.max_shift >= 40:
    raise ConfigError("'max_erase' and 'max_shift' must be < 40 (signal length)")
