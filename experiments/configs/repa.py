"""REPA on 16×16 digits: a tiny SiT with and without representation alignment.

Command:   jaxrep run repa --workdir runs/repa
           (= python -m experiments.repa --workdir=runs/repa)
Runtime:   80 min wall on 2 CPU cores shared with ~8 agent processes (13 % of the CPU);
           675 s CPU (user+sys), ≈ 5.6 min on an idle 2-core machine (quick: ~65 s CPU).
Measured:  FAIL: REPA@N beats the baseline@N (3/3 seeds) but not the baseline@2N (0/3).
Expected:  (ours) Fréchet distance of REPA samples after N steps ≤ the baseline's after
           2N steps (features of a digit classifier we train), on the mean over seeds.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.image_size = 16

  c.encoder = ml_collections.ConfigDict()          # the frozen SSL encoder (SimCLR)
  c.encoder.channels = (16, 32, 64)
  c.encoder.projection = 32
  c.encoder.temperature = 0.2
  c.encoder.crop_scale = (0.4, 1.0)
  c.encoder.num_steps = 400
  c.encoder.batch_size = 128
  c.encoder.learning_rate = 1e-3

  c.sit = ml_collections.ConfigDict()              # the denoiser and REPA
  c.sit.patch_size = 4
  c.sit.hidden = 64
  c.sit.depth = 4
  c.sit.num_heads = 4
  c.sit.align_block = 1                            # 0-based: the 2nd of 4 blocks
  c.sit.projector_hidden = 256
  c.sit.weight = 0.5                               # λ, the paper's
  c.sit.num_steps = 1000                           # N; the baseline trains 2N
  c.sit.batch_size = 64
  c.sit.learning_rate = 5e-4
  c.sit.ema_decay = 0.995

  c.evaluation = ml_collections.ConfigDict()
  c.evaluation.num_samples = 500
  c.evaluation.sampler_steps = 10                  # Heun: 19 evaluations
  c.evaluation.classifier_steps = 300
  c.evaluation.classifier_batch_size = 128
  c.evaluation.classifier_learning_rate = 2e-3
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.encoder.channels = (4, 4, 8)
  c.encoder.projection = 8
  c.encoder.num_steps = 3
  c.encoder.batch_size = 16
  c.sit.hidden = 16
  c.sit.depth = 2
  c.sit.num_heads = 2
  c.sit.projector_hidden = 16
  c.sit.num_steps = 3
  c.sit.batch_size = 8
  c.evaluation.num_samples = 16
  c.evaluation.sampler_steps = 2
  c.evaluation.classifier_steps = 3
  c.evaluation.classifier_batch_size = 16
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 <= c.sit.align_block < c.sit.depth:
    raise ConfigError("'sit.align_block' must index a block: 0 ≤ align_block < depth")
  if c.image_size % c.sit.patch_size:
    raise ConfigError("'image_size' must be divisible by 'sit.patch_size'")
  if c.image_size // c.sit.patch_size != c.image_size // 2**(len(c.encoder.channels) - 1):
    raise ConfigError("the encoder's feature grid must match the SiT's patch grid: "
                      "image_size/patch_size == image_size/2^(len(channels)-1)")
  if c.sit.weight < 0:
    raise ConfigError("'sit.weight' (λ) must be ≥ 0")
  if c.evaluation.num_samples < 2:
    raise ConfigError("'evaluation.num_samples' must be ≥ 2")
