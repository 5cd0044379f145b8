"""Moment probing vs linear probing on frozen tokens.

Command:   jaxrep run moment_probing --workdir runs/moment_probing
           (= python -m experiments.moment_probing --workdir=...)
Runtime:   6 min 03 s measured on 2 CPU cores (quick mode: seconds).
Expected:  (1) few-shot transfer: MP accuracy ≥ LP + 2 points; (2) covariance task:
           MP ≥ 90%, LP ≤ 60%.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.dim = 64
  c.depth = 2
  c.num_heads = 4
  c.pretrain_steps = 3000
  c.pretrain_batch_size = 100
  c.pretrain_learning_rate = 1e-3
  c.shots = 50
  c.probe_steps = 1000
  c.probe_learning_rate = 1e-3
  c.weight_decay = 1e-4
  c.mp_hidden_dim = 128
  c.mp_num_heads = 4
  c.cov_num_classes = 4
  c.cov_channels = 16
  c.cov_num_tokens = 64
  c.cov_rho = 0.5
  c.cov_num_train = 1000
  c.cov_num_test = 1000
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.dim = 16
  c.depth = 1
  c.pretrain_steps = 10
  c.probe_steps = 10
  c.shots = 10
  c.mp_hidden_dim = 32
  c.cov_num_tokens = 16
  c.cov_num_train = 100
  c.cov_num_test = 100
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.dim % c.num_heads:
    raise ConfigError("config key 'dim' must be divisible by 'num_heads'")
  if c.mp_hidden_dim % c.mp_num_heads or c.mp_num_heads < 2:
    raise ConfigError("'mp_hidden_dim' must split into 'mp_num_heads' ≥ 2 heads")
  if c.mp_hidden_dim // c.mp_num_heads < 7:
    raise ConfigError("MHC³ needs heads of ≥ 7 channels (two 3×3 stride-2 convs)")
  if 2 * c.cov_num_classes > c.cov_channels:
    raise ConfigError("'cov_channels' must be ≥ 2 × 'cov_num_classes'")
  if not 0 < c.cov_rho < 1:
    raise ConfigError("config key 'cov_rho' must be in (0, 1)")
  if min(c.pretrain_learning_rate, c.probe_learning_rate) <= 0 or c.weight_decay < 0:
    raise ConfigError("learning rates must be positive, weight_decay ≥ 0")
