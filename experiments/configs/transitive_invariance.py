"""Transitive invariance on rotating digits: transitive pairs vs intra-, inter-only and multi-task.

Command:   jaxrep run transitive_invariance --workdir runs/transitive_invariance
           (= python -m experiments.transitive_invariance --workdir=...)
Runtime:   see jaxrep/records/transitive_invariance.json (target ≤ 5 min on 2 idle CPU
           cores; quick mode: seconds).
Expected (our threshold, not the paper's number): the linear probe of digit class on
           unseen digits at unseen rotations is ≥ 3 points higher for the encoder
           trained on transitive pairs than for the best of the encoders trained on
           intra-instance pairs, inter-instance pairs, or both with separate losses.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.instances_per_class = 50
  c.frames = 8                  # views per instance ("a track")
  c.frame_step_deg = 12.0       # rotation between consecutive frames
  c.start_range_deg = 45.0      # first-frame centre angle θ₀ ~ U[−45°, 45°]
  c.test_range_deg = 80.0       # probe test views: θ ~ U[−80°, 80°]
  c.test_views = 2
  c.scale = 1.5                 # 8×8 digits drawn ×1.5 on the 16×16 canvas
  c.knn = 4                     # inter-instance edges per node
  c.num_steps = 500
  c.batch_size = 64             # pairs per step: half for each loss group
  c.learning_rate = 1e-3
  c.margin = 1.0                # caffe-video_triplet rank_param
  c.num_negatives = 4
  c.hard_fraction = 0.5
  c.model = ml_collections.ConfigDict(dict(features=(8, 16, 16, 32), embedding=32))
  c.probe_l2 = 1e-4
  c.probe_steps = 200
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.instances_per_class = 4
  c.frames = 3
  c.test_views = 1
  c.knn = 2
  c.num_steps = 4
  c.batch_size = 16
  c.model.features = (4, 4, 8, 8)
  c.model.embedding = 8
  c.probe_steps = 10
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.frames < 2:
    raise ConfigError("'frames' must be ≥ 2 (intra-instance edges)")
  if c.batch_size < 4 or c.batch_size % 2:
    raise ConfigError("'batch_size' must be even and ≥ 4 (two loss groups with negatives)")
  if c.knn < 1:
    raise ConfigError("'knn' must be ≥ 1")
  if not 0 < c.hard_fraction <= 1:
    raise ConfigError("'hard_fraction' must lie in (0, 1]")
  if c.instances_per_class < 2:
    raise ConfigError("'instances_per_class' must be ≥ 2")
