"""Every implemented experiment, in quick mode, on the training road.

On 8 simulated devices each run writes its figure and measurements (mostly
finite: DSD's quick grid censors n* at inf), never claims PASS in quick mode,
trains every model with its runs sharded over all 8 devices, and measures the
same values as on one device (``--mesh seeds=1``) to 1e-4 relative — except
the few values read through a discrete evaluation, listed in DISCRETE_FLIPS.
"""
import json

import numpy as np
import pytest

from jaxrep import cli
from jaxrep.core import experiment

IDS = cli.implemented_ids()
# Values read through a discrete evaluation (an L-BFGS probe's or a classifier's test
# accuracy): the trained parameters agree to ~1e-7 across layouts, but that can flip
# one test example. Absolute tolerance = the measured flip, not more.
DISCRETE_FLIPS = {
    # L-BFGS logistic probe on unstandardised quick-mode features (1 of ~500 queries)
    "moment_probing": {"transfer_accuracy_lp_lbfgs": 0.01, "transfer_mp_minus_lp": 0.01},
    # the wide network's held-out-class probe: one of ~900 test examples
    "rich_representations": {"heldout_classes_wide": 0.002, "heldout_classes_gain": 0.002},
    # MNIST-1D LCN test accuracy: one of 1,000 test examples on one seed
    "locality_dsd": {"mnist1d_accuracy_lcn": 0.002},
    # balanced accuracy (points) of RCAL's linear classifier on quick-mode features
    # (one test example of one class)
    "rcal": {"balanced_accuracy_rcal": 0.15, "rcal_minus_ce": 0.15, "rcal_minus_lof": 0.15},
}
# Quick grids too small for the target: DSD's n* are censored at inf (slopes NaN).
CENSORED_IN_QUICK = {"locality_dsd"}


def quick_run(paper_id: str, workdir, mesh: str | None, data_dir: str) -> dict:
  experiment.execute(cli.load_experiment(paper_id), str(workdir), quick=True, mesh=mesh,
                     data_dir=data_dir, verbose=False)
  return json.loads((workdir / "results.json").read_text())


def measured_means(results: dict) -> dict[str, float]:
  """Means as floats (results.json writes ±inf and NaN as strings)."""
  return {name: float(stats["mean"]) for name, stats in results["measured"].items()}


def test_every_implemented_paper_is_here():
  assert len(IDS) >= 19 and "locality_dsd" in IDS


@pytest.mark.timeout(1200)  # two quick runs with compiles; ≤ 4 min each here under load
@pytest.mark.parametrize("paper_id", IDS)
def test_quick_run_uses_every_device_and_matches_one_device(paper_id, tmp_path, shared_data_dir):
  eight = quick_run(paper_id, tmp_path / "eight", None, shared_data_dir)
  assert eight["passed"] is None
  assert (tmp_path / "eight" / "figure.png").exists()
  means = measured_means(eight)
  finite = sum(np.isfinite(v) for v in means.values())
  assert finite >= (1 if paper_id in CENSORED_IN_QUICK else len(means) / 2), means
  assert eight["env"]["devices"] == 8
  for name, layout in eight["env"]["fits"].items():
    assert layout["state_devices"] == 8, (name, layout)

  one = quick_run(paper_id, tmp_path / "one", "seeds=1", shared_data_dir)
  assert one["env"]["mesh"] == {"seed": 1, "data": 1}
  for name, layout in one["env"]["fits"].items():
    assert layout["state_devices"] == 1, (name, layout)
  expected, got = measured_means(one), measured_means(eight)
  assert expected.keys() == got.keys()
  flips = DISCRETE_FLIPS.get(paper_id, {})
  for name in expected:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=flips.get(name, 1e-6),
                               err_msg=f"{paper_id}: {name} differs on 8 devices")
