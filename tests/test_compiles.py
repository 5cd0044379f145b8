"""The DSD grid compiles each program once per shape: no recompile inside its loops.

``jax.log_compiles`` logs "Compiling <fun> with global shapes and types <signature>"
for every XLA compile. Over one (k, d) grid point's four sizes in three buckets, each program signature
must be compiled at most once: a repeated one is a cache miss inside the loop (a task
or closure rebuilt per bucket, a Python scalar baked into a program). Eager
primitives and jnp's internal helpers are left out. (The grid clears JAX's caches
between grid points on purpose, to bound LLVM's memory mappings.)
"""
import collections
import logging
import re

import jax
import jax.numpy as jnp
import ml_collections

from experiments import locality_dsd
from experiments.configs import locality_dsd as dsd_config
from jaxrep.core import experiment


class _Compiles(logging.Handler):

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.signatures: list[str] = []

  def emit(self, record):
    match = re.match(r"Compiling jit\((\S+)\) with global shapes", record.getMessage())
    if match and _is_program(match.group(1)):
      self.signatures.append(record.getMessage().split(". Argument mapping")[0])


def _is_program(name: str) -> bool:
  """A program of ours, not an eager primitive (``gather``) or jnp helper (``_where``)."""
  return not (name.startswith("_") or hasattr(jax.lax, f"{name}_p") or hasattr(jnp, name))


def _tiny_config() -> ml_collections.ConfigDict:
  c = dsd_config.quick(dsd_config.get_config())
  c.num_steps, c.n_min, c.n_max, c.masked_n_max = 20, 16, 128, 32   # buckets [16, 32], [64], [128]
  c.num_val, c.num_test, c.margin = 64, 64, 1e-6                   # never stops early
  return c


def test_dsd_grid_compiles_each_program_once_per_shape(tmp_path):
  c = _tiny_config()
  ctx = experiment.Context(str(tmp_path), c, seed=0, quick=True, data_dir=None)
  frozen = ml_collections.FrozenConfigDict(c)
  keys = ctx.seed_keys("dsd", c.num_seeds)
  handler = _Compiles()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      sets = jax.device_get(locality_dsd.dsd_sets(keys, k=4, d=8, c=frozen))
      result = locality_dsd.sample_complexity(ctx, "cnn", 4, 8, c, sets, bayes=0.0)
      assert result["sizes"] == [16, 32, 64, 128]
  finally:
    logger.removeHandler(handler)
  counts = collections.Counter(handler.signatures)
  # fit's init reads one example row, so XLA prunes the rest from the logged signature
  # and each bucket's new size looks like a repeat: bounded by the buckets instead
  inits = sum(n for signature, n in counts.items() if "jit(init_runs)" in signature)
  assert inits <= 3, inits
  repeated = {signature[:160]: n for signature, n in counts.items()
              if n > 1 and "jit(init_runs)" not in signature}
  assert handler.signatures, "no compile was logged: the log format changed"
  assert not repeated, f"programs compiled more than once: {repeated}"
  # per bucket: the init, chunk and evaluation programs; plus the sampler
  # per bucket at most its init, chunk and evaluation programs, plus the sampler once
  assert len(handler.signatures) <= 3 * 3 + 1, "\n".join(handler.signatures)
