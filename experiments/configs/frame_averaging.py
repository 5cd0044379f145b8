"""Frame averaging a GNN on the charged 5-body task.

Command:   jaxrep run frame_averaging --workdir runs/frame_averaging
           (= python -m experiments.frame_averaging --workdir=runs/frame_averaging)
Runtime:   2 min 25 s measured on 2 CPU cores (quick mode: seconds).
Expected:  test MSE(FA-GNN) ≤ 0.7 × MSE(GNN) and ≤ MSE(GNN + O(3) augmentation);
           the FA model's E(3) equivariance error is at float32 rounding level.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_train = 3000
  c.num_test = 2000
  c.num_particles = 5
  c.frame_in = 30
  c.frame_out = 40
  c.sample_every = 100
  c.hidden = 60
  c.layers = 4
  c.batch_size = 100
  c.learning_rate = 1e-3
  c.num_steps = 500
  c.num_equivariance_checks = 8
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_train = 200
  c.num_test = 100
  c.frame_in = 3
  c.frame_out = 4
  c.hidden = 16
  c.layers = 1
  c.batch_size = 20
  c.num_steps = 10
  c.num_equivariance_checks = 2
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 <= c.frame_in < c.frame_out:
    raise ConfigError("need 0 <= frame_in < frame_out")
  if c.batch_size > c.num_train:
    raise ConfigError("'batch_size' must be ≤ 'num_train'")
  if c.learning_rate <= 0:
    raise ConfigError("'learning_rate' must be positive")
