"""Runs every ```python block of docs/examples.md, and BUILD.md's blocks that start with
``# example:``, each as its own program: the docs/examples.md ones on 8 simulated CPU
devices, the BUILD.md ones on one (as a user's laptop runs them)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "examples.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
BUILD_BLOCKS = re.findall(r"```python\n(# example:.*?)```", (ROOT / "BUILD.md").read_text(),
                          flags=re.S)


def test_the_pages_have_the_examples():
  assert len(BLOCKS) == 3 and len(BUILD_BLOCKS) >= 1


@pytest.mark.parametrize("index", range(len(BLOCKS + BUILD_BLOCKS)))
def test_example_runs(index, tmp_path):
  script = tmp_path / f"example_{index + 1}.py"
  script.write_text((BLOCKS + BUILD_BLOCKS)[index])
  devices = 8 if index < len(BLOCKS) else 1
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "JAX_PLATFORMS": "cpu"}
  run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
  assert run.returncode == 0, f"example {index + 1} failed:\n{run.stderr[-3000:]}"
  print(run.stdout)
