"""KD³ on a shifted, junk-laden MNIST-1D "web" pool.

Command:   jaxrep run kd3 --workdir runs/kd3
           (= python -m experiments.kd3 --workdir=runs/kd3)
Runtime:   27 min 11 s wall on 2 CPU cores shared with ~8 agents (load ~15–29);
           CPU time 333 s, ≈ 3 min on 2 idle cores (quick mode: ~50 s CPU).
Expected (our thresholds, synthetic stand-in for web images): clean MNIST-1D test
           accuracy of the KD³ student ≥ KD on the whole pool + 0.02 and ≥ KD on
           teacher-confidence-selected instances + 0.01.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.junk_fraction = 0.2          # of the whole pool
  c.teacher = ml_collections.ConfigDict()
  c.teacher.channels = (32, 32, 32)
  c.teacher.feature_dim = 64
  c.teacher.num_steps = 2000
  c.student = ml_collections.ConfigDict()
  c.student.channels = (8, 16, 16)
  c.student.feature_dim = 32
  c.student.num_steps = 2000
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.kd3 = ml_collections.ConfigDict()
  c.kd3.keep_fraction = 0.8      # top fraction of each batch kept by the selection
  c.kd3.temperature = 4.0
  c.kd3.feature_weight = 1.0
  c.kd3.classifier_weight = 1.0
  c.kd3.mix_weight = 0.1
  c.kd3.mix_alpha = 0.1
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.teacher.channels = (4, 4, 4)
  c.teacher.feature_dim = 8
  c.teacher.num_steps = 20
  c.student.channels = (4, 4, 4)
  c.student.feature_dim = 4
  c.student.num_steps = 20
  c.batch_size = 32
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0.0 <= c.junk_fraction < 1.0:
    raise ConfigError("junk_fraction must be in [0, 1)")
  if not 0.0 < c.kd3.keep_fraction <= 1.0:
    raise ConfigError("kd3.keep_fraction must be in (0, 1]")
  if len(c.teacher.channels) < 2 or len(c.student.channels) < 2:
    raise ConfigError("the networks need ≥ 2 conv layers (stem + body)")
