"""Sample-complexity separation of CNN < LCN < FCN on the DSD task (Lahoti et al., ICLR 2024).

Command:   jaxrep run locality_dsd --workdir runs/locality_dsd
           (= python -m experiments.locality_dsd --workdir=runs/locality_dsd)
Runtime:   6 min 06 s measured on 2 CPU cores (quick mode: seconds).
Expected:  n_CNN < n_LCN < n_FCN at every (k, d); n_LCN/n_CNN and n_FCN/n_LCN
           grow with k; log-log slopes of n vs k ordered CNN < LCN < FCN
           (theory: ≈0, ≈1, ≈2). MNIST-1D (4,000 training samples): the MNIST-1D
           authors report ≈94% for a CNN and ≈68% for an MLP.
"""
import ml_collections

from jaxrep.core.config import ConfigError

KINDS = ("cnn", "lcn", "fcn")  # = jaxrep.symmetry.locality.KINDS


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 4
  c.channels = 4
  c.signal_norm = 3.0
  c.noise_std = 1.0
  c.margin = 0.03
  c.num_steps = 400
  c.ks = (3, 4, 5, 6)
  c.fixed_d = 8
  c.ds = (4, 8, 16)
  c.fixed_k = 4
  c.n_min = 16
  c.n_max = 65536
  c.n_grid_factor = 2.0
  c.masked_n_max = 1024
  c.num_val = 2000
  c.num_test = 10000
  c.learning_rates = ml_collections.ConfigDict(
      {"cnn": (0.5, 2.0, 8.0), "lcn": (0.5, 2.0, 8.0), "fcn": (0.5, 2.0, 8.0)})
  c.mnist1d_steps = 3000
  c.mnist1d_batch_size = 100
  c.mnist1d_learning_rate = 3e-3
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_steps = 20
  c.ks = (3, 4)
  c.ds = (8,)
  c.fixed_k = 4
  c.n_min = 32
  c.n_max = 64          # two sizes (32, 64): the masked bucket and first_crossing need ≥ 2
  c.num_val = 128
  c.num_test = 256
  c.learning_rates = ml_collections.ConfigDict(
      {"cnn": (2.0,), "lcn": (2.0,), "fcn": (2.0,)})
  c.mnist1d_steps = 10
  c.mnist1d_batch_size = 32  # the vmapped 1-D CNN/LCN steps (8 padded runs) ran slowest
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.n_grid_factor <= 1:
    raise ConfigError("config key 'n_grid_factor' must be > 1")
  if c.n_min > c.n_max:
    raise ConfigError("config key 'n_min' must be ≤ 'n_max'")
  if c.margin <= 0 or c.signal_norm <= 0 or c.noise_std <= 0:
    raise ConfigError("'margin', 'signal_norm' and 'noise_std' must be positive")
  for kind in KINDS:
    if not all(lr > 0 for lr in c.learning_rates[kind]):
      raise ConfigError(f"learning rates for {kind} must be positive")
