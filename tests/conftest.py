"""Test-wide settings: CPU, 8 simulated devices, float32 by default."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json

import numpy as np
import pytest


@pytest.fixture
def run_quick(tmp_path):
  """``run_quick(EXPERIMENT)`` runs it in quick mode in ``tmp_path`` and returns its
  results.json, after checking what every quick run writes: a figure, ``passed`` null
  (quick mode never claims PASS) and finite measurements."""
  from jaxrep.core import experiment

  def run(exp):
    payload = experiment.execute(exp, str(tmp_path), quick=True,
                                 data_dir=str(tmp_path / "data"), verbose=False)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["passed"] is None and payload["passed"] is None
    assert (tmp_path / "figure.png").exists()
    for name, stats in stored["measured"].items():
      assert np.isfinite(stats["mean"]), name
    return stored

  return run
