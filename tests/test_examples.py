"""Runs every ```python block of docs/examples.md as its own program on 8 CPU devices."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "examples.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_the_three_examples():
  assert len(BLOCKS) == 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, tmp_path):
  script = tmp_path / f"example_{index + 1}.py"
  script.write_text(BLOCKS[index])
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
  assert run.returncode == 0, f"example {index + 1} failed:\n{run.stderr[-3000:]}"
  print(run.stdout)
