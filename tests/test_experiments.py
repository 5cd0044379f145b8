"""Every implemented experiment, in quick mode, on the training road.

On 8 simulated devices each run writes its figure and finite measurements,
never claims PASS in quick mode, trains every model with its runs sharded over
all 8 devices, and measures the same values as on one device (``--mesh
seeds=1``) to 1e-4 relative.
"""
import json

import numpy as np
import pytest

from jaxrep import cli
from jaxrep.core import experiment

IDS = cli.implemented_ids()


def quick_run(paper_id: str, workdir, mesh: str | None) -> dict:
  experiment.execute(cli.load_experiment(paper_id), str(workdir), quick=True, mesh=mesh,
                     data_dir=str(workdir.parent / "data"), verbose=False)
  return json.loads((workdir / "results.json").read_text())


def measured_means(results: dict) -> dict[str, float]:
  return {name: stats["mean"] for name, stats in results["measured"].items()}


def test_every_implemented_paper_is_here():
  assert len(IDS) >= 19 and "locality_dsd" in IDS


@pytest.mark.parametrize("paper_id", IDS)
def test_quick_run_uses_every_device_and_matches_one_device(paper_id, tmp_path):
  eight = quick_run(paper_id, tmp_path / "eight", None)
  assert eight["passed"] is None
  assert (tmp_path / "eight" / "figure.png").exists()
  for name, value in measured_means(eight).items():
    assert np.isfinite(value), name
  assert eight["env"]["devices"] == 8
  for name, layout in eight["env"]["fits"].items():
    assert layout["state_devices"] == 8, (name, layout)

  one = quick_run(paper_id, tmp_path / "one", "seeds=1")
  assert one["env"]["mesh"] == {"seed": 1, "data": 1}
  for name, layout in one["env"]["fits"].items():
    assert layout["state_devices"] == 1, (name, layout)
  expected, got = measured_means(one), measured_means(eight)
  assert expected.keys() == got.keys()
  for name in expected:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-6,
                               err_msg=f"{paper_id}: {name} differs on 8 devices")
