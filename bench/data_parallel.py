"""One train step, four layouts: ``--mode single|jit|shard_map|pmap`` (or all of them).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python bench/data_parallel.py
    python bench/data_parallel.py --mode jit --batch 1024        # on a GPU/TPU host

``SmallCNN`` (4 conv layers, 32×32×3) trained with SGD on a fixed random batch through
``jaxrep.core.parallel.make_parallel_train_step``: the loss, model and optimizer are
the same in every mode, only the flag changes. Prints, per mode, steps/s (median of
``--steps`` timed steps after one compile) and the largest parameter difference from
the single-device run after those steps. One summary line.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from jaxrep.core import parallel, tasks, train
from jaxrep.nn import SmallCNN


def run_mode(mode: str, batch, params, steps: int):
  model = SmallCNN()
  optimizer = optax.sgd(0.05)
  pstep = parallel.make_parallel_train_step(tasks.cross_entropy_loss_fn(model.apply), optimizer,
                                            mode)
  state = pstep.place_state(train.init_train_state(params, optimizer, jax.random.PRNGKey(0)))
  placed = pstep.place_batch(batch)
  state, _ = pstep(state, placed)  # compile
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = pstep(state, placed)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return pstep.fetch_state(state).params, 1.0 / float(np.median(times))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mode", choices=parallel.MODES + ("all",), default="all")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()
  data = np.random.default_rng(0)
  batch = {"x": data.normal(size=(args.batch, 32, 32, 3)).astype(np.float32),
           "y": data.integers(0, 10, args.batch).astype(np.int32)}
  params = SmallCNN().init(jax.random.PRNGKey(0), batch["x"][:1])
  modes = parallel.MODES if args.mode == "all" else (args.mode,)
  reference, _ = run_mode("single", batch, params, args.steps)
  parts = []
  for mode in modes:
    final, rate = run_mode(mode, batch, params, args.steps)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(reference)))
    parts.append(f"{mode} {rate:.2f} steps/s (max |Δparams| vs single {diff:.1e})")
  print(f"data_parallel: SmallCNN batch {args.batch}, SGD, {jax.device_count()} "
        f"{jax.devices()[0].platform} devices: " + "; ".join(parts))


if __name__ == "__main__":
  main()
