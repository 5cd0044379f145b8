"""Train-step throughput of SmallCNN: jaxrep vs flax.linen.Conv vs plain PyTorch (CPU).

    python bench/cnn_step.py [--batch 256] [--threads 2] [--rounds 5]

One process, the same thread count for both frameworks (the process is pinned
to ``--threads`` cores; ``torch.set_num_threads``), interleaved rounds, median
seconds per step. Also the achieved FLOP/s of the jaxrep step (analytic
convolution + dense FLOPs) against the machine's fp32 matmul rate measured in
the same run (the best of jax and torch on a 2048² matmul). Needs the bench
extra ``torch`` (``pip install torch==2.13.0``). Prints one summary line.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--size", type=int, default=32)
  return parser.parse_args()


ARGS = _parse()
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:ARGS.threads]))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

from jaxrep.core import train  # noqa: E402
from jaxrep.nn import Conv  # noqa: E402
from jaxrep.nn.cnn import SmallCNN, conv_flops_per_example  # noqa: E402

FEATURES = (32, 32, 64, 64)
torch.set_num_threads(ARGS.threads)


def jax_runner(conv, x, y):
  model = SmallCNN(FEATURES, conv=conv)
  optimizer = optax.sgd(0.01)

  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply(params, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), {}

  state = train.init_train_state(model.init(jax.random.PRNGKey(0), x[:1]), optimizer,
                                 jax.random.PRNGKey(1))
  step = train.make_train_step(loss_fn, optimizer)
  batch = (jnp.asarray(x), jnp.asarray(y))
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], batch)
    jax.block_until_ready(metrics["loss"])

  return run


class TorchCNN(torch.nn.Module):
  def __init__(self):
    super().__init__()
    channels = (3,) + FEATURES
    self.convs = torch.nn.ModuleList(
        [torch.nn.Conv2d(channels[i], channels[i + 1], 3, padding=1) for i in range(4)])
    self.dense = torch.nn.Linear(FEATURES[-1], 10)

  def forward(self, x):
    for i, conv in enumerate(self.convs):
      x = torch.relu(conv(x))
      if i % 2 == 1:
        x = torch.nn.functional.avg_pool2d(x, 2)
    return self.dense(x.mean((2, 3)))


def torch_runner(x, y, channels_last):
  model = TorchCNN()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
  tx, ty = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    tx = tx.contiguous(memory_format=torch.channels_last)

  def run():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(tx), ty).backward()
    optimizer.step()

  return run


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
  """Best fp32 GFLOP/s of an n×n matmul, jax and torch."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  ta = torch.ones(n, n)
  best = 0.0
  for run in (lambda: f(a).block_until_ready(), lambda: torch.mm(ta, ta)):
    run()
    for _ in range(reps):
      start = time.perf_counter()
      run()
      best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
  return best


def main():
  data = np.random.default_rng(0)
  x = data.normal(size=(ARGS.batch, ARGS.size, ARGS.size, 3)).astype(np.float32)
  y = data.integers(0, 10, ARGS.batch).astype(np.int64)
  runners = {"jaxrep": jax_runner(Conv, x, y), "flax": jax_runner(nn.Conv, x, y),
             "torch": torch_runner(x, y, False), "torch_cl": torch_runner(x, y, True)}
  peak = matmul_peak()
  for run in runners.values():
    run()
  times = {name: [] for name in runners}
  for _ in range(ARGS.rounds):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  peak = max(peak, matmul_peak())
  t = {name: float(np.median(v)) for name, v in times.items()}
  torch_best = min(t["torch"], t["torch_cl"])
  flops = conv_flops_per_example(FEATURES, 3, ARGS.size)[1] * ARGS.batch
  achieved = flops / t["jaxrep"] / 1e9
  load = os.getloadavg()[0]
  print(f"cnn_step: jaxrep {t['jaxrep']:.3f} s/step vs PyTorch {torch_best:.3f} s/step "
        f"(NCHW {t['torch']:.3f}, channels_last {t['torch_cl']:.3f}) -> steps/s ratio "
        f"{torch_best / t['jaxrep']:.2f}x; flax.linen.Conv {t['flax']:.3f} s/step "
        f"({t['flax'] / t['jaxrep']:.2f}x slower than jaxrep); jaxrep achieves "
        f"{achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of the measured fp32 matmul "
        f"peak {peak:.1f} GFLOP/s; batch {ARGS.batch}, {ARGS.size}x{ARGS.size}x3, "
        f"{ARGS.threads} threads, median of {ARGS.rounds} interleaved rounds, "
        f"{os.cpu_count()} CPUs, load avg {load:.1f}")


if __name__ == "__main__":
  sys.exit(main())
