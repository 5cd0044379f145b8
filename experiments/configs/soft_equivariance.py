"""PER soft-equivariance regularizers with auto-tuned strengths on modified inertia.

Command:   jaxrep run soft_equivariance --workdir runs/soft_equivariance
           (= python -m experiments.soft_equivariance --workdir=runs/soft_equivariance)
Runtime:   5 min 19 s measured on 2 CPU cores (shared the cores with another run) (quick mode: seconds).
Expected:  test MSE(PER) < MSE(MLP) and < MSE(exact O(3) model); after
           auto-tuning, the largest λ is O(2) about z.
"""
import ml_collections

from jaxrep.core.config import ConfigError

NUM_GROUPS = 4  # len(experiments.soft_equivariance.GROUPS): O(3), O(2)_z, O(2)_x, O(2)_y


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_train = 1000
  c.num_test = 1000
  c.alpha = 0.3
  c.hidden_counts = (16, 8, 4)
  c.num_layers = 3
  c.mlp_width = 128
  c.batch_size = 500
  c.learning_rate = 1e-3
  c.num_steps = 16000
  c.adjust_at = 4000
  c.window = 100
  c.initial_lambda = (0.0, 100.0, 100.0, 100.0)
  c.adjust_power = 2.0
  c.weight_decay = 2e-4
  c.o2z_reference = False
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_train = 100
  c.num_test = 100
  c.hidden_counts = (4, 2, 1)
  c.num_layers = 1
  c.mlp_width = 16
  c.batch_size = 50
  c.num_steps = 20
  c.adjust_at = 10
  c.window = 5
  c.o2z_reference = False
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 < c.window <= c.adjust_at < c.num_steps:
    raise ConfigError("need 0 < window ≤ adjust_at < num_steps")
  if len(c.initial_lambda) != NUM_GROUPS or min(c.initial_lambda) < 0:
    raise ConfigError(f"'initial_lambda' needs {NUM_GROUPS} non-negative values")
  if c.batch_size > c.num_train:
    raise ConfigError("'batch_size' must be ≤ 'num_train'")
  if len(c.hidden_counts) != 3 or min(c.hidden_counts) < 1:
    raise ConfigError("'hidden_counts' must be 3 positive channel counts (ranks 0-2)")
