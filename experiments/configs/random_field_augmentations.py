"""SimCLR on 16×16 digits: standard views vs + mild vs + strong Gaussian-random-field views.

Command:   jaxrep run random_field_augmentations --workdir runs/random_field_augmentations
           (= python -m experiments.random_field_augmentations --workdir=...)
Runtime:   see jaxrep/records/random_field_augmentations.json (target ≤ 5 min on 2 idle
           CPU cores; quick mode: seconds).
Expected (our thresholds, not the paper's numbers): the linear probe on the encoder
           trained with mild random-field views is ≥ 1 point above the standard-views
           baseline in distribution and on elastically distorted test digits, and the
           strong random-field views score below the mild ones in distribution.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def _field(length_scale, rotation, log_scale, shear, translation, brightness, probability):
  return ml_collections.ConfigDict(dict(
      length_scale=length_scale, rotation=rotation, log_scale=log_scale, shear=shear,
      translation=translation, brightness=brightness, probability=probability))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_steps = 800
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.temperature = 0.5
  c.model = ml_collections.ConfigDict(dict(channels=(16, 32, 64), projection=(64, 32)))
  # the standard SimCLR views for 1-channel 16×16 digits (no flip, no greyscale)
  c.views = ml_collections.ConfigDict(dict(
      crop_scale=(0.5, 1.0), crop_ratio=(0.75, 4 / 3), brightness=0.4, contrast=0.4,
      jitter_probability=0.8))
  # random-field strengths: amplitudes are the fields' standard deviations
  # (rotation in radians, translation in pixels, length scale in pixels)
  c.mild = _field(length_scale=4.0, rotation=0.15, log_scale=0.08, shear=0.1,
                  translation=0.75, brightness=0.05, probability=0.8)
  c.strong = _field(length_scale=1.5, rotation=0.6, log_scale=0.3, shear=0.4,
                    translation=2.5, brightness=0.3, probability=0.8)
  # the OOD test set: Simard elastic distortion (dm_pix.elastic_deformation)
  c.ood = ml_collections.ConfigDict(dict(alpha=16.0, sigma=3.0, copies=2))
  c.probe_l2 = 1e-4
  c.probe_steps = 200
  c.pixel_control = True      # the raw-pixel probe (a negative control in details)
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_steps = 6
  c.batch_size = 32
  c.model.channels = (4, 8, 8)
  c.model.projection = (8, 8)
  c.ood.copies = 1
  c.probe_steps = 10
  c.pixel_control = False     # one compile less; details only
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.batch_size < 2:
    raise ConfigError("'batch_size' must be ≥ 2 (contrastive negatives)")
  if c.temperature <= 0 or c.learning_rate <= 0:
    raise ConfigError("'temperature' and 'learning_rate' must be positive")
  for name in ("mild", "strong"):
    field = c[name]
    if field.length_scale <= 0:
      raise ConfigError(f"'{name}.length_scale' must be positive")
    if not 0 <= field.probability <= 1:
      raise ConfigError(f"'{name}.probability' must lie in [0, 1]")
  if not 0 < c.views.crop_scale[0] <= c.views.crop_scale[1] <= 1:
    raise ConfigError("'views.crop_scale' must satisfy 0 < low ≤ high ≤ 1")
  if c.ood.copies < 1:
    raise ConfigError("'ood.copies' must be ≥ 1")
