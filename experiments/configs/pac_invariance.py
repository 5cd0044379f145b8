"""PAC generalization of ε-approximate invariance across unseen interventions.

Command:   jaxrep run pac_invariance --workdir runs/pac_invariance
           (= python -m experiments.pac_invariance --workdir=runs/pac_invariance)
Runtime:   53 s measured on 2 CPU cores (quick mode: seconds).
Expected:  the 2ε-violation rate of representations selected as ε-invariant on T
           training environments falls with T (negative log-log slope) and is not
           larger at d = 100 than at d = 10.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.dims = (10, 30, 100)
  c.train_env_counts = (5, 10, 20, 50, 100, 200, 500)
  c.num_test_envs = 5000
  c.num_sems = 20
  c.num_candidates = 32
  c.max_candidate_size = 4
  c.epsilon = 0.1
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.dims = (10, 30)
  c.train_env_counts = (5, 20, 50)
  c.num_test_envs = 200
  c.num_sems = 3
  c.num_candidates = 8
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.epsilon <= 0:
    raise ConfigError("config key 'epsilon' must be positive")
  if min(c.dims) < 4:
    raise ConfigError("config key 'dims' must all be ≥ 4")
  if c.max_candidate_size < 3:
    raise ConfigError("config key 'max_candidate_size' must be ≥ 3")
