"""OBoW on 16×16 digits: linear-probe accuracy of the student vs a random encoder
and vs a frozen random vocabulary.

Command:   jaxrep run obow --workdir runs/obow
           (= python -m experiments.obow --workdir=runs/obow)
Runtime:   measured on 2 CPU cores: see jaxrep/records/obow.json (quick mode: seconds).
Expected:  (ours) the OBoW student's linear-probe test accuracy on augmented digits
           (one fixed crop view per image) is ≥ the random-init encoder's + 15 points and
           ≥ the frozen-random-vocabulary ablation's + 3 points (seed means; k/n seeds
           reported). The clean-digit probe is reported too (random init: ~94%, a ceiling).
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.image_size = 16
  # encoder: 3×3 conv widths, 2×2 average pool after the second (16×16 → 8×8 map)
  c.features = (8, 16, 32, 32)
  c.num_words = 256          # K, a multiple of batch_size (queue of K/batch steps)
  c.inv_delta = 10.0         # δ⁻¹ (official ImageNet config: 10)
  c.kappa = 5.0              # κ (official: 5)
  c.pool = "max"
  c.distance_decay = 0.99
  c.teacher_decay = 0.99     # α_base, cosine to 1 (official)
  c.batch_size = 32
  c.num_steps = 800
  c.learning_rate = 2e-3
  c.views = ml_collections.ConfigDict(dict(
      num_crops=2, crop_scale=(0.3, 1.0),          # full-size crops (16×16)
      num_patches=2, patch_scale=(0.1, 0.3),        # small patches, resampled to 8×8
      teacher_crop_scale=(0.6, 1.0), jitter=0.4, jitter_probability=0.8))
  c.probe = "logistic"       # L-BFGS logistic regression ("ridge": closed form)
  c.probe_l2 = 1e-4
  c.probe_steps = 200
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.features = (4, 4, 8, 8)
  c.num_words = 16
  c.batch_size = 8
  c.num_steps = 6
  c.views.num_crops = 1
  c.views.num_patches = 1
  c.probe = "ridge"
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.num_words % c.batch_size:
    raise ConfigError("'num_words' must be a multiple of 'batch_size' (the queue takes "
                      "one word per image per step)")
  if c.image_size % 2 or c.image_size < 8:
    raise ConfigError("'image_size' must be even and ≥ 8")
  if c.probe not in ("logistic", "ridge"):
    raise ConfigError("'probe' must be 'logistic' or 'ridge'")
  if c.pool not in ("max", "avg"):
    raise ConfigError("'pool' must be 'max' or 'avg'")
  if len(c.features) < 2:
    raise ConfigError("'features' needs at least two conv widths (pool after the second)")
  if c.views.num_crops < 1:
    raise ConfigError("'views.num_crops' must be ≥ 1")
  if not 0 < c.teacher_decay < 1:
    raise ConfigError("'teacher_decay' must lie in (0, 1)")
