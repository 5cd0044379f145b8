"""Deep kernel machines: finite-width deep GPs approach the DKM optimum; sparse DKM scales linearly.

Command:   jaxrep run deep_kernel_machines --workdir runs/deep_kernel_machines
           (= python -m experiments.deep_kernel_machines --workdir=runs/deep_kernel_machines)
Runtime:   measured on 2 shared CPU cores: see the record (quick mode: seconds).
Expected:  ‖E[G_ℓ] − G*_ℓ‖_F/‖G*_ℓ‖ (layer mean) of MALA-sampled finite-width deep GPs
           falls with width N at log-log slope ≤ −0.3 and is < 0.1 at N = 1024; the
           measured time of one objective+gradient evaluation grows with log-log
           slope ≥ 2.0 in P for the full DKM and ≤ 1.3 for the sparse DKM (ours).
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.num_points = 50            # P (sklearn diabetes subset per seed)
  c.num_layers = 2
  c.nu = 1.0                   # ν_ℓ for every hidden layer
  c.noise_var = 0.1
  c.dkm_steps = 1000
  c.dkm_learning_rate = 3e-2   # cosine-decayed to 0
  c.widths = (16, 64, 256, 1024)
  c.mala_steps = 1000
  c.mala_burn_in = 300
  c.mala_step_scale = 0.5      # initial h = scale · (dimension)^{-1/3}, adapted in burn-in
  c.full_sizes = (400, 800, 1600, 3200)
  c.sparse_sizes = (4000, 16000, 64000)
  c.num_inducing = 64
  c.timing_repeats = 3
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_points = 8             # < 10 input features: G₀ full rank (layout-stable fit)
  c.dkm_steps = 50
  c.widths = (8, 32)
  c.mala_steps = 40
  c.mala_burn_in = 10
  c.full_sizes = (40, 80)
  c.sparse_sizes = (200, 800)
  c.num_inducing = 8
  c.timing_repeats = 1
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.mala_burn_in >= c.mala_steps:
    raise ConfigError("'mala_burn_in' must be < 'mala_steps'")
  if len(c.widths) < 2 or len(c.full_sizes) < 2 or len(c.sparse_sizes) < 2:
    raise ConfigError("widths, full_sizes and sparse_sizes need ≥ 2 values for a slope")
  if c.nu <= 0 or c.noise_var <= 0:
    raise ConfigError("'nu' and 'noise_var' must be positive")
