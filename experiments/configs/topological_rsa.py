"""Layer identification with geo-topological RDM statistics under noise (tRSA).

Command:   jaxrep run topological_rsa --workdir runs/topological_rsa
           (= python -m experiments.topological_rsa --workdir=runs/topological_rsa)
Runtime:   59 s measured on 2 CPU cores (quick mode: seconds).
Expected (the paper's claim under the authors' protocol; thresholds ours): with
           noise λ·std(RDM) on the RDM entries (λ = 0 … 0.4) and leave-one-instance-
           out nearest-centroid layer identification, the best geo-topological
           statistic (chosen on validation draws) is within 2 points of the plain
           RDM at every λ and loses no more than 2 points more from λ = 0 to 0.4.
Measured:  see jaxrep/records/topological_rsa.json (the activation-noise protocol of
           sessions 2–4 and its FAIL are in the experiment's History).
"""
import ml_collections

from jaxrep.core.config import ConfigError

COMPARISONS = ("cosine", "pearson", "spearman", "kendall_tau_a")  # = jaxrep.probe.rdm.COMPARISONS


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 5
  c.widths = (64, 64, 64, 64)
  c.train_steps = 1500
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.stimuli_per_class = 10
  c.noise_levels = (0.0, 0.1, 0.2, 0.3, 0.4)
  c.num_val_draws = 25
  c.num_test_draws = 50
  c.grid_step = 0.1
  c.geodesic_uppers = (0.1, 0.2, 0.3)
  c.comparison = "pearson"
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 3
  c.train_steps = 100
  c.stimuli_per_class = 3
  c.noise_levels = (0.0, 0.4)
  c.num_val_draws = 2
  c.num_test_draws = 3
  c.grid_step = 0.5
  c.geodesic_uppers = (0.2,)
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.num_seeds < 3:
    raise ConfigError("'num_seeds' must be ≥ 3 (one data network, ≥ 2 candidates)")
  if not all(v >= 0 for v in c.noise_levels) or len(c.noise_levels) < 2:
    raise ConfigError("'noise_levels' needs ≥ 2 entries, each ≥ 0")
  if not 0 < c.grid_step <= 1:
    raise ConfigError("'grid_step' must be in (0, 1]")
  if not all(0 < u <= 1 for u in c.geodesic_uppers):
    raise ConfigError("'geodesic_uppers' must lie in (0, 1]")
  if c.comparison not in COMPARISONS:
    raise ConfigError(f"'comparison' must be one of {COMPARISONS}")
