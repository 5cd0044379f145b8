"""Compile time and training steps/s of the DSD experiment's compiled program.

    python bench/dsd_compile.py [--n 1024] [--k 4] [--d 8]

For each model kind, ``experiments.locality_dsd._train_grid`` at one grid point
with the default config (``num_seeds`` × learning rates trainings of
``num_steps`` full-batch steps, vmapped in one program): ahead-of-time compile
time (``lower().compile()``) and the run time of the compiled program, as
optimizer steps per second summed over the vmapped trainings. Prints one line.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import ml_collections

import experiments.locality_dsd as dsd
from jaxrep.symmetry import locality


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=1024)
  parser.add_argument("--k", type=int, default=4)
  parser.add_argument("--d", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  config = dsd.get_config()
  frozen = ml_collections.FrozenConfigDict(config)
  keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(0), i)
                    for i in range(config.num_seeds)])
  parts = []
  for kind in locality.KINDS:
    lrs = jnp.asarray(config.learning_rates[kind], jnp.float32)
    sizes = jnp.asarray([args.n])
    static = dict(kind=kind, k=args.k, d=args.d, n_pad=args.n, c=frozen)
    start = time.perf_counter()
    compiled = dsd._train_grid.lower(keys, lrs, sizes, **static).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(keys, lrs, sizes))
    runs = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      jax.block_until_ready(compiled(keys, lrs, sizes))
      runs.append(time.perf_counter() - start)
    run_s = min(runs)
    trainings = config.num_seeds * len(config.learning_rates[kind])
    steps_per_s = trainings * config.num_steps / run_s
    parts.append(f"{kind} compile {compile_s:.2f} s, run {run_s:.3f} s = "
                 f"{steps_per_s:,.0f} steps/s")
  print(f"dsd_compile: k={args.k} d={args.d} n={args.n}, {config.num_seeds} seeds x "
        f"{len(config.learning_rates['cnn'])} lrs x {config.num_steps} steps vmapped: "
        + "; ".join(parts) + f"; {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
