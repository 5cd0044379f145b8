"""SIE vs VICReg on rotated 16×16 digits: rotation prediction and class probe.

Command:   jaxrep run sie --workdir runs/sie
           (= python -m experiments.sie --workdir=runs/sie)
Runtime:   270 s CPU (user+sys) for the default run, ≈ 3–5 min on 2 idle
           cores; measured 34 min wall on 2 cores shared with ~8 agents (2026-12-02,
           jaxrep/records); quick mode: seconds of compute.
Expected (ours): the relative-rotation R² of an MLP probe on representation pairs is
           ≥ VICReg's + 0.2, while the linear class probe's accuracy is at most 5 points
           below VICReg's.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.data = ml_collections.ConfigDict(dict(
      canvas=16,            # 8×8 digits on a 16×16 canvas, scaled by `scale` and rotated
      scale=1.4,
      train_pairs_per_image=4,   # fixed (image, θ_x, θ_y) pairs for the probes
      test_pairs_per_image=8))
  c.model = ml_collections.ConfigDict(dict(
      encoder_hidden=(256,),     # MLP encoder 256 → 256 → rep_dim
      rep_dim=64,
      inv_dim=32,                # SIE split: 32 invariant + 32 equivariant dims
      projector=(128, 128)))     # VICReg's expander; SIE splits it by the ratio (64-64 each)
  c.ssl = ml_collections.ConfigDict(dict(
      batch_size=256, num_steps=5000, learning_rate=1e-3, warmup_steps=250,
      sim_weight=10.0, std_weight=10.0, cov_weight=1.0, equi_factor=0.45))
  c.probe = ml_collections.ConfigDict(dict(
      hidden=(128, 128), batch_size=256, num_steps=2000, learning_rate=1e-3,
      logistic_l2=1e-4, logistic_steps=200))
  c.plateau_window = 0.25    # the gates compare the last two windows of this fraction
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.data.train_pairs_per_image = 1
  c.data.test_pairs_per_image = 1
  c.model.encoder_hidden = (32,)
  c.model.rep_dim = 16
  c.model.inv_dim = 8
  c.model.projector = (16, 16)
  c.ssl.batch_size = 32
  c.ssl.num_steps = 10
  c.ssl.warmup_steps = 2
  c.probe.hidden = (16,)
  c.probe.batch_size = 32
  c.probe.num_steps = 10
  c.probe.logistic_steps = 10
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 < c.model.inv_dim < c.model.rep_dim:
    raise ConfigError("model.inv_dim must lie strictly between 0 and model.rep_dim")
  if any(w % 2 for w in c.model.projector):
    raise ConfigError("model.projector widths must be even (split between the two parts)")
  if c.data.canvas < 8:
    raise ConfigError("data.canvas must hold the 8×8 digits")
  if not 0 <= c.ssl.warmup_steps < c.ssl.num_steps:
    raise ConfigError("need 0 ≤ ssl.warmup_steps < ssl.num_steps")
  if c.ssl.batch_size < 2 or c.ssl.learning_rate <= 0:
    raise ConfigError("ssl.batch_size must be ≥ 2 and ssl.learning_rate positive")
  if not 0 < c.plateau_window <= 0.5:
    raise ConfigError("plateau_window must lie in (0, 0.5]")
