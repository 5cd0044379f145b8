"""Test-wide settings: CPU, 8 simulated devices, float32 by default; a skipped
``reference`` test fails the session."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json

import numpy as np
import pytest

# A skipped reference test is a failed one: a test marked ``@pytest.mark.reference``
# compares our code with an independent library (scikit-learn, SciPy, rsatoolbox,
# causal-learn, lingam); if it skips (a missing package, ``pytest.skip``, an xfail)
# the check did not run, and the session fails. The hooks below record such skips
# where reports arrive: in the only process, or in pytest-xdist's controller, which
# receives every worker's reports (workers record nothing, so nothing is counted twice).
_SKIPPED_REFERENCES: list[str] = []


def _is_xdist_worker(config) -> bool:
  return hasattr(config, "workerinput")


def pytest_runtest_logreport(report):
  if report.skipped and "reference" in report.keywords:
    _SKIPPED_REFERENCES.append(f"{report.nodeid} ({report.when}: {_skip_reason(report)})")


def _skip_reason(report) -> str:
  if hasattr(report, "wasxfail"):
    return f"xfail {report.wasxfail}".strip()
  longrepr = report.longrepr
  return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
  if _SKIPPED_REFERENCES and not _is_xdist_worker(session.config):
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  if _SKIPPED_REFERENCES and not _is_xdist_worker(config):
    terminalreporter.section("skipped reference tests (a skipped reference test fails the run)",
                             red=True, bold=True)
    for line in _SKIPPED_REFERENCES:
      terminalreporter.line(line, red=True)


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> str:
  """One TFDS data directory per test process: each stored dataset (MNIST-1D,
  digits) is prepared once, not once per test (2–4 s each on 2 cores)."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def run_quick(tmp_path, shared_data_dir):
  """``run_quick(EXPERIMENT)`` runs it in quick mode in ``tmp_path`` and returns its
  results.json, after checking what every quick run writes: a figure, ``passed`` null
  (quick mode never claims PASS) and finite measurements."""
  from jaxrep.core import experiment

  def run(exp):
    payload = experiment.execute(exp, str(tmp_path), quick=True,
                                 data_dir=shared_data_dir, verbose=False)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["passed"] is None and payload["passed"] is None
    assert (tmp_path / "figure.png").exists()
    for name, stats in stored["measured"].items():
      assert np.isfinite(stats["mean"]), name
    return stored

  return run
