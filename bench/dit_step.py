"""Train-step throughput of a small class-conditional DiT/SiT: steps/s, FLOP/s and MFU.

    python bench/dit_step.py [--dtype bfloat16] [--batch 32] [--size 16] [--hidden 64]
                             [--depth 2] [--steps 10] [--peak_tflops 989|auto]

One jitted step of ``make_train_step`` on the rectified-flow velocity loss
(``denoising_loss_fn`` on ``LinearInterpolant``, label dropout 0.1) with AdamW
and a parameter EMA, on random data, on jax's default device. FLOPs per step
are XLA's count for the compiled step (``jit(step).lower(...).compile()
.cost_analysis()["flops"]``, 2 per multiply-add: DiT-S/2 at 32×32×4 is ≈ 36
GFLOP per example per step, 3× the paper's 6.06 "Gflops" of MACs × 2);
achieved FLOP/s = that / the median step time.
With ``--peak_tflops`` (a number, or ``auto`` for the dense bf16 datasheet peak
of a few known GPUs) it also prints MFU = achieved / peak. ``--dtype`` is the
compute dtype (parameters stay float32). The defaults run in well under a
minute on a laptop CPU; ``bench/gpu_check.sh`` runs a DiT-S/2-sized step on a GPU.
Prints one summary line.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrep.core import train
from jaxrep.diffusion import DiT, LinearInterpolant, denoising_loss_fn, with_params_ema

# Dense bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s (no sparsity).
KNOWN_BF16_PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0,
                    "A10": 125.0, "V100": 125.0}


def _parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=16, help="image side")
  parser.add_argument("--channels", type=int, default=1)
  parser.add_argument("--patch", type=int, default=2)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--depth", type=int, default=2)
  parser.add_argument("--heads", type=int, default=2)
  parser.add_argument("--num_classes", type=int, default=10)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  parser.add_argument("--steps", type=int, default=10, help="timed steps")
  parser.add_argument("--peak_tflops", default=None,
                      help="peak TFLOP/s of the device for MFU, or 'auto' (known GPUs, bf16)")
  return parser.parse_args()


def peak_tflops(flag: str | None, dtype: str) -> float | None:
  """The peak for MFU: the flag's number, or for 'auto' the table entry of the
  device kind (bf16 only), else None."""
  if flag is None:
    return None
  if flag != "auto":
    return float(flag)
  kind = jax.devices()[0].device_kind
  if dtype != "bfloat16":
    return None
  return next((peak for name, peak in KNOWN_BF16_PEAKS.items() if name in kind), None)


def build(args: argparse.Namespace):
  """The model, a jitted train step, its initial state and a batch."""
  model = DiT(patch_size=args.patch, hidden=args.hidden, depth=args.depth,
              num_heads=args.heads, num_classes=args.num_classes,
              dtype=jnp.dtype(args.dtype))
  loss_fn = denoising_loss_fn(model.apply, LinearInterpolant(), prediction="velocity",
                              label_dropout=0.1, null_label=args.num_classes)
  optimizer = with_params_ema(optax.adamw(1e-4), decay=0.9999)
  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.standard_normal(
               (args.batch, args.size, args.size, args.channels)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, args.num_classes, args.batch), jnp.int32)}
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch["x"][:1], jnp.zeros(1),
                               batch["label"][:1])
  state = train.init_train_state(params, optimizer, jax.random.PRNGKey(1))
  step = jax.jit(train.make_train_step(loss_fn, optimizer, jit=False), donate_argnums=0)
  return params, step, state, batch


def compile_with_flops(step, state, batch):
  """The compiled step and XLA's FLOP count for it (cost_analysis: a dict, or a list
  of one in older jax)."""
  compiled = step.lower(state, batch).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return compiled, float(analysis.get("flops", float("nan")))


def main() -> None:
  args = _parse()
  start = time.perf_counter()
  params, step, state, batch = build(args)
  step, flops = compile_with_flops(step, state, batch)
  state, metrics = step(state, batch)                 # warm up
  jax.block_until_ready(metrics["loss"])
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(args.steps):
    tick = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - tick)
  seconds = float(np.median(times))
  achieved = flops / seconds / 1e12
  device = jax.devices()[0]
  peak = peak_tflops(args.peak_tflops, args.dtype)
  why = "no --peak_tflops" if args.peak_tflops is None else f"no known peak for {args.dtype}"
  mfu = (f", MFU {100 * achieved / peak:.1f}% of {peak:g} TFLOP/s" if peak else
         f", MFU n/a ({why} on {device.device_kind})")
  num_params = sum(a.size for a in jax.tree.leaves(params))
  print(f"dit_step: {1 / seconds:.2f} steps/s ({1e3 * seconds:.1f} ms/step, median of "
        f"{args.steps}), {flops / 1e9:.2f} GFLOP/step (XLA), {achieved:.3f} TFLOP/s{mfu}; "
        f"{args.dtype}, batch {args.batch}, {args.size}x{args.size}x{args.channels}, "
        f"patch {args.patch}, hidden {args.hidden}, depth {args.depth}, "
        f"{num_params / 1e6:.2f}M params; {device.platform}:{device.device_kind}; "
        f"setup+compile {compile_s:.1f} s; loss {float(metrics['loss']):.3f}", flush=True)


if __name__ == "__main__":
  main()
