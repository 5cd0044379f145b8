#!/usr/bin/env bash
# GPU check for the diffusion core (≤ 5 min on one GPU; runs as is on any machine
# with jax[cuda] installed):
#   1. jax.devices() and the device kind;
#   2. a DiT-S/2-sized train step (hidden 384, depth 12, 6 heads, patch 2, 32×32×4
#      inputs, batch 256) at bf16 compute: steps/s, XLA FLOP/step, achieved TFLOP/s
#      and MFU against the device's dense bf16 peak (--peak_tflops auto: a small table
#      of datasheet peaks in bench/dit_step.py; set PEAK_TFLOPS=<number> to override);
#   3. the same step at fp32 for comparison (no MFU: the fp32/TF32 peak differs).
# Each command is capped at 150 s. Paste the output into BUILD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
PEAK="${PEAK_TFLOPS:-auto}"
SIZE=(--batch 256 --size 32 --channels 4 --patch 2 --hidden 384 --depth 12 --heads 6
      --num_classes 1000 --steps 20)

python -c "import jax; print('jax', jax.__version__, jax.devices(), jax.devices()[0].device_kind)"
timeout 150 python bench/dit_step.py "${SIZE[@]}" --dtype bfloat16 --peak_tflops "$PEAK"
timeout 150 python bench/dit_step.py "${SIZE[@]}" --dtype float32
