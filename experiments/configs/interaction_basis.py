"""Interaction basis on MLPs with injected degeneracies (modular addition, MNIST-1D).

Command:   jaxrep run interaction_basis --workdir runs/interaction_basis
           (= python -m experiments.interaction_basis --workdir=runs/interaction_basis)
Runtime:   1 min 14 s measured on 2 CPU cores (quick mode: seconds).
Expected:  on every hidden layer, the interaction basis of the network with
           injected duplicated, dead (and unused) units has exactly as many
           non-degenerate directions as the original network's true rank; the
           top-k interaction directions keep 99% of the accuracy at a smaller k
           than the top-k principal components or the top-k neurons.
Measured (3 seeds, 128-unit layers + 16 duplicated, 16 dead, 16 unused units):
           counts equal the true rank everywhere (e.g. modadd layer 2: 31, the
           logit dimension; MNIST-1D layer 2: 10); k* interaction / PCA / neuron:
           modadd L1 31 / 74 / 116, L2 14 / 47 / 89; MNIST-1D L1 32 / 83 / 126,
           L2 6 / 54 / 117 → PASS.
"""
import ml_collections

from jaxrep.core.config import ConfigError

VARIANTS = ("activation", "all")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_seeds = 3
  c.modulus = 31
  c.hidden = (128, 128)
  c.modadd_steps = 2000
  c.modadd_learning_rate = 3e-3
  c.mnist1d_steps = 3000
  c.mnist1d_batch_size = 128
  c.mnist1d_learning_rate = 1e-3
  c.num_basis_examples = 2000
  c.num_duplicate = 16
  c.num_dead = 16
  c.num_unused = 16
  c.rtol = 1e-8
  c.variants = VARIANTS
  return c


def quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.num_seeds = 2
  c.modulus = 7
  c.hidden = (16,)
  c.modadd_steps = 200
  c.mnist1d_steps = 100
  c.num_basis_examples = 200
  c.num_duplicate = 2
  c.num_dead = 2
  c.num_unused = 2
  c.variants = ("activation",)
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  if c.modulus < 2:
    raise ConfigError("'modulus' must be ≥ 2")
  if len(c.hidden) < 1 or min(c.hidden) < 1:
    raise ConfigError("'hidden' must list at least one positive width")
  if c.num_duplicate > min(c.hidden):
    raise ConfigError("'num_duplicate' must not exceed the smallest hidden width")
  if "activation" not in c.variants or not set(c.variants) <= set(VARIANTS):
    raise ConfigError(f"'variants' must include 'activation' and lie in {VARIANTS}")
  if not 0 < c.rtol < 1:
    raise ConfigError("'rtol' must be in (0, 1)")
