"""SBCL vs SupCon on long-tailed MNIST-1D (imbalance 100), LDAM-DRW linear stage.

Command:   jaxrep run sbcl --workdir runs/sbcl
           (= python -m experiments.sbcl --workdir=runs/sbcl)
Runtime:   57 min 29 s wall on 2 CPU cores shared with ~8 agents (load 20–30); CPU
           user+sys 315 s, i.e. ≈ 2.6 min on an idle 2-core machine (quick: seconds).
Expected:  (ours) SBCL's balanced test accuracy ≥ SupCon's + 1.5 points, mean over
           seeds; k/n seeds reported; both encoders' contrastive losses at a plateau.
Measured:  FAIL. SBCL 54.0 ± 1.0 vs SupCon 58.1 ± 2.1 (3 seeds): −4.1 ± 3.1 points,
           0/3 seeds; gates hold. SBCL loses on the head classes (recall 0.66 vs
           0.78), ties on medium and few; see the History in experiments/sbcl.py.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.data = ml_collections.ConfigDict()
  c.data.max_count = 390          # MNIST-1D's train split holds 394–411 per class
  c.data.imbalance_ratio = 100.0  # 390 → 3 (⌊3.9⌋)
  c.model = ml_collections.ConfigDict()
  c.model.channels = 32
  c.model.latent_dim = 64         # encoder features (the linear stage's input)
  c.model.projection_dim = 32
  c.augment = ml_collections.ConfigDict()
  c.augment.max_shift = 4
  c.augment.time_scale = 0.1
  c.augment.amplitude_scale = 0.2
  c.augment.noise_std = 0.1
  c.contrastive = ml_collections.ConfigDict()
  c.contrastive.batch_size = 256
  c.contrastive.learning_rate = 2e-3
  c.contrastive.num_steps = 1200  # both encoders, warm-up included
  c.contrastive.warmup_steps = 120  # SupCon, shared by both, then SBCL re-clusters
  c.contrastive.num_rounds = 4      # … every (num_steps − warmup_steps)/num_rounds steps
  c.contrastive.temperature = 0.1
  c.contrastive.base_temperature = 0.07
  c.contrastive.gamma = 0.25
  c.contrastive.min_subclass_size = 10
  c.contrastive.plateau_window = 0.05  # fraction of num_steps per plateau window
  c.linear = ml_collections.ConfigDict()
  c.linear.num_steps = 500
  c.linear.learning_rate = 1e-2
  c.linear.max_margin = 0.5
  c.linear.scale = 30.0
  c.linear.beta = 0.9999
  c.min_gain_points = 1.5
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.data.max_count = 100
  c.model.channels = 8
  c.model.latent_dim = 16
  c.model.projection_dim = 8
  c.contrastive.batch_size = 32
  c.contrastive.num_steps = 40
  c.contrastive.warmup_steps = 10
  c.contrastive.num_rounds = 2
  c.linear.num_steps = 20
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  s = c.contrastive
  if not 0 < s.warmup_steps < s.num_steps:
    raise ConfigError("need 0 < contrastive.warmup_steps < contrastive.num_steps")
  if (s.num_steps - s.warmup_steps) % s.num_rounds or s.num_steps % s.warmup_steps:
    raise ConfigError("num_rounds must divide contrastive.num_steps − warmup_steps, and "
                      "warmup_steps must divide num_steps (one compiled SupCon chunk)")
  round_steps = (s.num_steps - s.warmup_steps) // s.num_rounds
  if 2 * max(1, int(s.plateau_window * s.num_steps)) > round_steps:
    raise ConfigError("the two plateau windows must fit in SBCL's last round")
  if c.data.imbalance_ratio < 1 or c.data.max_count > 390:
    raise ConfigError("need imbalance_ratio ≥ 1 and max_count ≤ 390 (MNIST-1D train "
                      "holds 394 of its smallest class)")
