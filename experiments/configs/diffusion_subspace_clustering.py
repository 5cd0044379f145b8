"""Diffusion on a mixture of low-rank Gaussians: the sample-complexity phase transition.

Command:   jaxrep run diffusion_subspace_clustering --workdir runs/diffusion_subspace_clustering
           (= python -m experiments.diffusion_subspace_clustering --workdir=...)
Runtime:   26 min wall on 2 CPU cores shared with ~8 agent processes (236 s CPU, ≈ 2 min
           on an idle 2-core machine) (quick mode: seconds of compute).
Expected:  (thresholds ours) per seed, the critical number of training samples N_c(d)
           (the smallest grid N from which every larger grid N recovers both subspaces,
           max sin θ < 0.1) grows linearly with the intrinsic dimension d (linear fit
           R² ≥ 0.9); success rate ≥ 0.9 at N ≥ 4d (= 2·K·d) and ≤ 0.1 at N ≤ d.
Measured:  FAIL (optimisation misses above the threshold; the pooled transition is linear,
           R² 0.98): see the History in experiments/diffusion_subspace_clustering.py.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 5                      # trials per (d, N) grid point
  c.ambient_dim = 48                   # n, as the notes' setting (4×4×3 images)
  c.num_components = 2                 # K
  c.intrinsic_dims = (2, 3, 4, 5, 6)
  c.num_samples = (2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48)
  c.rows_per_step = 128                # the N samples cycled to this many rows (full batch)
  c.learning_rate = 5.0                # SGD, cosine decay to 0, then QR retraction
  c.num_steps = 1500
  c.train_t_max = 0.5                  # training times t ~ U[t_min, train_t_max] (VP cosine)
  c.num_restarts = 4                   # random inits per run; the lowest training loss is kept
  c.num_eval_draws = 8                 # (t, ε) draws of the selection loss
  c.success_threshold = 0.1            # max sin(principal angle) for a recovered subspace
  c.above_factor = 4.0                 # "above": N ≥ above_factor · d
  c.below_factor = 1.0                 # "well below": N ≤ below_factor · d
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.ambient_dim = 12
  c.intrinsic_dims = (2, 3)
  c.num_samples = (2, 4, 8, 16)
  c.rows_per_step = 16
  c.num_steps = 10
  c.num_restarts = 2
  c.num_eval_draws = 2
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.num_components * max(c.intrinsic_dims) > c.ambient_dim:
    raise ConfigError("need K · max(d) ≤ ambient_dim (orthogonal subspaces)")
  if max(c.num_samples) > c.rows_per_step:
    raise ConfigError("'rows_per_step' must be ≥ max(num_samples)")
  if list(c.num_samples) != sorted(set(c.num_samples)):
    raise ConfigError("'num_samples' must be strictly increasing")
  if len(c.intrinsic_dims) < 2:
    raise ConfigError("need ≥ 2 intrinsic dims for a linear fit")
  if not 0 < c.train_t_max <= 1:
    raise ConfigError("'train_t_max' must be in (0, 1]")
  if c.learning_rate <= 0:
    raise ConfigError("'learning_rate' must be positive")
