"""Tester-learner for halfspaces: accept Gaussian+Massart, never accept a bad output.

Command:   jaxrep run tester_learner --workdir runs/tester_learner
           (= python -m experiments.tester_learner --workdir=runs/tester_learner)
Runtime:   1 min 12 s measured on 2 CPU cores (quick mode: seconds).
Expected:  Gaussian marginals with Massart noise (η ≤ 0.3): P(accept ∧ error
           ≤ opt + 0.03) ≥ 0.95 by a one-sided 95% Clopper–Pearson lower bound over
           200 runs. Adversarial cases (Student-t(3) tails, uniform cube, mass piled
           at ±w* inside the band with flipped labels): P(accept ∧ error > opt + 0.1)
           ≤ 0.05 by the one-sided upper bound over 60 runs per case.
"""
import ml_collections

from jaxrep.core.config import ConfigError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 200           # independent Gaussian runs
  c.num_adversarial_runs = 60  # independent runs per adversarial case
  c.dim = 10
  c.num_samples = 50000
  c.num_eval = 100000
  c.eta_max = 0.3
  c.student_dof = 3.0
  c.barrier_fraction = 0.05
  c.sigma = 0.05
  c.learning_rate = 0.02
  c.num_steps = 3000
  c.batch_size = 256
  c.record_every = 100
  c.band_width = 0.5
  c.moment_degree = 4
  c.label_tolerance = 0.5 / 6
  c.total_level = 0.01        # false-rejection budget of the four tests together
  c.confidence = 0.95         # of the one-sided Clopper–Pearson bounds
  c.runs_per_batch = 8        # runs evaluated together (memory)
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.num_adversarial_runs = 2
  c.num_samples = 4000
  c.num_eval = 4000
  c.num_steps = 200
  c.record_every = 50
  c.moment_degree = 2
  c.runs_per_batch = 2
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if not 0 <= c.eta_max < 0.5:
    raise ConfigError("'eta_max' must be in [0, 0.5) (Massart noise)")
  if not 0 < c.total_level < 1 or not 0 < c.confidence < 1:
    raise ConfigError("'total_level' and 'confidence' must be in (0, 1)")
  if c.num_seeds < 1 or c.num_adversarial_runs < 1:
    raise ConfigError("'num_seeds' and 'num_adversarial_runs' must be ≥ 1")
  if not 0 < c.barrier_fraction < 1:
    raise ConfigError("'barrier_fraction' must be in (0, 1)")
  if c.student_dof <= 2:
    raise ConfigError("'student_dof' must be > 2 (finite variance)")
  if c.num_steps % c.record_every:
    raise ConfigError("'num_steps' must be a multiple of 'record_every'")
  if c.sigma <= 0 or c.band_width <= 0 or c.learning_rate <= 0 or c.label_tolerance < 0:
    raise ConfigError("'sigma', 'band_width', 'learning_rate' must be > 0, "
                      "'label_tolerance' ≥ 0")
