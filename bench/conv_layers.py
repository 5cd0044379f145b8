"""Where SmallCNN's step time goes: each conv layer's forward, input gradient and
kernel gradient, jaxrep (CPU path of ``jaxrep.nn.conv``) vs PyTorch channels_last.

    python bench/conv_layers.py [--batch 256] [--threads 2]

Times are medians of 5 runs (ms). Needs the bench extra ``torch``. One line per layer
and a summary line.
"""
from __future__ import annotations

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--threads", type=int, default=2)
ARGS = parser.parse_args()
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:ARGS.threads]))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from jaxrep.nn import conv  # noqa: E402

torch.set_num_threads(ARGS.threads)
LAYERS = ((32, 3, 32), (32, 32, 32), (16, 32, 64), (16, 64, 64))  # (size, in, out)


def median_ms(fn, reps: int = 5) -> float:
  fn()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def main() -> None:
  rng = np.random.default_rng(0)
  totals = {"jax": 0.0, "torch": 0.0}
  pads = ((1, 1), (1, 1))
  for size, cin, cout in LAYERS:
    x = rng.normal(size=(ARGS.batch, size, size, cin)).astype(np.float32)
    k = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
    dy = rng.normal(size=(ARGS.batch, size, size, cout)).astype(np.float32)
    jx, jk, jdy = map(jax.numpy.asarray, (x, k, dy))
    fwd = jax.jit(lambda a, b: conv._forward(a, b, (1, 1), pads))
    dx = jax.jit(lambda g, b, a: conv.input_gradient(g, b, a, (1, 1), pads))
    dk = jax.jit(lambda a, g: conv.kernel_gradient(a, g, k.shape, (1, 1), pads))
    ours = [median_ms(lambda: fwd(jx, jk).block_until_ready()),
            median_ms(lambda: dx(jdy, jk, jx).block_until_ready()),
            median_ms(lambda: dk(jx, jdy).block_until_ready())]
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    tk = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous()
    tdy = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    theirs = [median_ms(lambda: torch.nn.functional.conv2d(tx, tk, padding=1)),
              median_ms(lambda: torch.nn.grad.conv2d_input(tx.shape, tk, tdy, padding=1)),
              median_ms(lambda: torch.nn.grad.conv2d_weight(tx, tk.shape, tdy, padding=1))]
    totals["jax"] += sum(ours)
    totals["torch"] += sum(theirs)
    print(f"{size}x{size} {cin:>2}->{cout:<2}  fwd / dx / dK ms: jaxrep "
          + " / ".join(f"{t:6.1f}" for t in ours) + "   torch channels_last "
          + " / ".join(f"{t:6.1f}" for t in theirs))
  print(f"conv_layers: batch {ARGS.batch}, {ARGS.threads} threads: all conv work jaxrep "
        f"{totals['jax']:.0f} ms vs PyTorch channels_last {totals['torch']:.0f} ms "
        f"({totals['torch'] / totals['jax']:.2f}x)")


if __name__ == "__main__":
  main()
