"""TinvNN: modified-MDS initial representations make a PointNet transformation invariant.

Command:   jaxrep run tinvnn --workdir runs/tinvnn
           (= python -m experiments.tinvnn --workdir=runs/tinvnn)
Runtime:   1 min 21 s measured on 2 CPU cores (quick mode: seconds).
Expected:  TinvNN's accuracy under random O(3) + translation + scale equals its
           aligned accuracy (drop ≤ 1 point); the plain PointNet trained on
           aligned clouds drops by ≥ 30 points; TinvNN ≥ the PointNet trained
           with random-transformation augmentation.
"""
import ml_collections

from jaxrep.core.config import ConfigError

NUM_SHAPES = 10  # primitive shapes in jaxrep.data.point_clouds


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_classes = 10
  c.num_train = 2000
  c.num_test = 1000
  c.n_points = 128
  c.jitter = 0.01
  c.translation_scale = 1.0
  c.max_scale = 2.0
  c.mds_dim = 3
  c.sign_rule = "third_moment"
  c.point_features = (32, 64, 128)
  c.head_features = (64,)
  c.batch_size = 32
  c.learning_rate = 1e-3
  c.num_steps = 1500
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_classes = 8
  c.num_train = 160
  c.num_test = 80
  c.n_points = 32
  c.point_features = (16, 16)
  c.head_features = (16,)
  c.num_steps = 30
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 8 <= c.num_classes <= NUM_SHAPES:
    raise ConfigError(f"'num_classes' must be in 8..{NUM_SHAPES} (primitive shapes)")
  if c.batch_size > c.num_train:
    raise ConfigError("'batch_size' must be ≤ 'num_train'")
  if c.max_scale < 1 or c.translation_scale < 0 or c.jitter < 0:
    raise ConfigError("need max_scale ≥ 1, translation_scale ≥ 0 and jitter ≥ 0")
  if not 1 <= c.mds_dim <= 3:
    raise ConfigError("'mds_dim' must be 1, 2 or 3 for 3-D clouds")
  if c.sign_rule not in ("third_moment", "max_abs", "none"):
    raise ConfigError("'sign_rule' must be 'third_moment', 'max_abs' or 'none'")
  if c.learning_rate <= 0:
    raise ConfigError("'learning_rate' must be positive")
