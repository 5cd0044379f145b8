"""Seed sweep of the DSD experiment: one vmapped program vs 16 launches vs 16 runs in one process.

    python bench/seed_sweep.py [--seeds 16] [--out DIR]

1. one launch with ``--config.num_seeds=16`` (the seeds vmapped in one program),
2. 16 launches of the same command with ``--config.num_seeds=1 --seed i`` (how
   a seed sweep is run without a seed axis),
3. 16 ``experiment.execute`` calls in one process (``num_seeds=1``,
   ``replicate_offset=i``: the same replicates as 1., compiled functions reused).

Every run uses the quick config shrunk further (``BENCH_OVERRIDES``: one grid
point, two sample sizes, 20 MNIST-1D steps) so the 16 launches finish in
minutes; launches are timed as whole processes (interpreter start, imports,
compilation, run). Prints one summary line: the wall-time ratios.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

BENCH_OVERRIDES = ("ks=3", "ds=8", "fixed_k=3", "n_min=32", "n_max=64", "mnist1d_steps=20")
MODULE = "experiments.locality_dsd"


def _launch(workdir: str, num_seeds: int, seed: int, data_dir: str) -> float:
  command = [sys.executable, "-m", MODULE, f"--workdir={workdir}", "--quick",
             f"--seed={seed}", f"--data_dir={data_dir}", f"--config.num_seeds={num_seeds}"]
  command += [f"--config.{o}" for o in BENCH_OVERRIDES]
  start = time.perf_counter()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return time.perf_counter() - start


_IN_PROCESS = """
import sys, time
start = time.perf_counter()
from jaxrep.core import experiment
import experiments.locality_dsd as dsd
out, seeds, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
overrides = ("num_seeds=1",) + tuple(sys.argv[4:])
for i in range(seeds):
  experiment.execute(dsd.EXPERIMENT, f"{out}/run{i}", quick=True, overrides=overrides,
                     data_dir=data_dir, verbose=False, replicate_offset=i)
"""


def _in_one_process(out: str, seeds: int, data_dir: str) -> float:
  start = time.perf_counter()
  subprocess.run([sys.executable, "-c", _IN_PROCESS, out, str(seeds), data_dir,
                  *BENCH_OVERRIDES], check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=16)
  parser.add_argument("--out", default=None, help="scratch dir (default: a temp dir)")
  parser.add_argument("--data_dir", default=os.environ.get("JAXREP_DATA_DIR", ""))
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp(prefix="seed_sweep_")
  data_dir = args.data_dir or os.path.expanduser("~/.cache/jaxrep/tensorflow_datasets")
  _launch(f"{out}/warmup", 1, 0, data_dir)  # prepares the data set once, warms the disk cache
  loads = [os.getloadavg()[0]]
  vmapped = _launch(f"{out}/vmapped", args.seeds, 0, data_dir)
  loads.append(os.getloadavg()[0])
  launches = sum(_launch(f"{out}/launch{i}", 1, i, data_dir) for i in range(args.seeds))
  loads.append(os.getloadavg()[0])
  one_process = _in_one_process(f"{out}/inprocess", args.seeds, data_dir)
  loads.append(os.getloadavg()[0])
  print(f"seed_sweep: DSD quick config shrunk ({' '.join(BENCH_OVERRIDES)}), {args.seeds} seeds: "
        f"one vmapped program {vmapped:.1f} s vs {args.seeds} launches {launches:.1f} s "
        f"({launches / vmapped:.1f}x) vs {args.seeds} runs in one process {one_process:.1f} s "
        f"({one_process / vmapped:.1f}x); whole processes, {os.cpu_count()} CPUs, "
        f"load avg {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
  main()
