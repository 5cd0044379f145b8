"""The verdict from a paper's checks: margins, aggregates, gates, quick mode, k/n seeds."""
import json
import subprocess
import sys

import numpy as np
import pytest

from jaxrep import registry
from jaxrep.core import claims, results


def check(measure, op, threshold, aggregate="mean", role="claim", source="ours"):
  return {"measure": measure, "op": op, "threshold": threshold, "aggregate": aggregate,
          "role": role, "source": source}


@pytest.mark.parametrize("op, values, holds, margin", [
    (">=", [0.9, 1.1], True, 0.0),      # mean 1.0 >= 1.0: holds on the threshold
    (">", [0.9, 1.1], False, 0.0),      # ... but not strictly
    (">=", [1.5, 2.5], True, 1.0),
    (">=", [0.0, 1.0], False, -0.5),
    ("<=", [0.0, 1.0], True, 0.5),
    ("<=", [2.0, 3.0], False, -1.5),
    ("<", [0.5, 0.5], True, 0.5),
    ("<", [1.0, 1.0], False, 0.0),
])
def test_margin_is_positive_when_the_check_holds(op, values, holds, margin):
  result = claims.evaluate_check(check("x", op, 1.0), {"x": np.asarray(values)})
  assert result["holds"] is holds
  assert result["margin"] == pytest.approx(margin)
  if result["margin"] != 0:
    assert (result["margin"] > 0) == holds
  assert result["value"] == pytest.approx(np.mean(values))
  assert result["mean"] == pytest.approx(np.mean(values))
  assert result["std"] == pytest.approx(np.std(values))


def test_median_ignores_one_bad_seed_mean_does_not():
  values = {"x": np.array([0.1, 0.2, 0.3, 50.0])}
  median = claims.evaluate_check(check("x", "<=", 1.0, "median"), values)
  mean = claims.evaluate_check(check("x", "<=", 1.0, "mean"), values)
  assert median["value"] == pytest.approx(0.25) and median["holds"]
  assert mean["value"] == pytest.approx(12.65) and not mean["holds"]
  assert median["seeds_holding"] == mean["seeds_holding"] == {"k": 3, "n": 4}


def test_all_reports_the_worst_seed():
  ge = claims.evaluate_check(check("x", ">=", 0.5, "all"), {"x": [0.9, 0.6, 0.8]})
  assert ge["holds"] and ge["value"] == pytest.approx(0.6) and ge["margin"] == pytest.approx(0.1)
  le = claims.evaluate_check(check("x", "<=", 0.0, "all"), {"x": [0.0, 0.0, 0.3]})
  assert not le["holds"] and le["value"] == pytest.approx(0.3)
  assert le["margin"] == pytest.approx(-0.3) and le["seeds_holding"] == {"k": 2, "n": 3}


def test_nan_never_holds():
  for aggregate in ("mean", "median", "all"):
    result = claims.evaluate_check(check("x", "<=", 1.0, aggregate), {"x": [0.0, np.nan]})
    assert result["holds"] is False, aggregate
  assert claims.evaluate_check(check("x", ">", 0.0), {"x": np.nan})["holds"] is False


def test_verdicts_gates_and_sanity():
  measured = {"a": [2.0, 3.0], "b": [0.1, 0.2], "c": 5.0}
  passing = [check("a", ">=", 1.0), check("b", "<=", 0.5)]
  assert claims.evaluate(passing, measured)["verdict"] == claims.PASS
  assert claims.evaluate(passing, measured)["passed"] is True
  failing = passing + [check("c", "<", 1.0)]
  assert claims.evaluate(failing, measured)["verdict"] == claims.FAIL
  assert claims.evaluate(failing, measured)["passed"] is False
  gated = passing + [check("c", "<", 1.0, role="gate")]
  out = claims.evaluate(gated, measured)
  assert out["verdict"] == claims.NOT_COMPARABLE and out["passed"] is None
  sanity = passing + [check("c", "<", 1.0, role="sanity")]
  out = claims.evaluate(sanity, measured)
  assert out["verdict"] == claims.PASS and out["checks"][-1]["holds"] is False
  missing = claims.evaluate(passing + [check("d", ">", 0.0)], measured)
  assert missing["verdict"] == claims.NOT_COMPARABLE
  assert missing["checks"][-1]["missing"] and missing["checks"][-1]["holds"] is None
  assert claims.evaluate([], measured)["verdict"] is None


def test_quick_mode_computes_everything_but_never_passes():
  checks = [check("a", ">=", 1.0)]
  out = claims.evaluate(checks, {"a": [2.0, 3.0]}, quick=True)
  assert out["passed"] is None and out["verdict"] == claims.PASS
  assert out["checks"][0]["margin"] == pytest.approx(1.5)
  assert out["seeds_holding"] == {"k": 2, "n": 2}
  payload = results.results_payload(paper_id="p", claim="c", passed=True,
                                    measured={"a": [2.0, 3.0]}, seeds=[0, 1], runtime_s=1.0,
                                    config={}, quick=True, evaluation=out)
  assert payload["passed"] is None and payload["checks"][0]["holds"] is True


def test_seeds_holding_counts_seeds_where_every_per_seed_claim_check_holds():
  measured = {"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 0.0, 9.0, 0.0], "s": 7.0,
              "g": [0.0, 0.0, 0.0, 0.0]}
  checks = [check("a", ">=", 2.0), check("b", "<=", 1.0), check("s", ">", 0.0),
            check("g", ">", 1.0, role="sanity")]
  out = claims.evaluate(checks, measured)
  by_name = {c["measure"]: c for c in out["checks"]}
  assert by_name["a"]["seeds_holding"] == {"k": 3, "n": 4}
  assert by_name["b"]["seeds_holding"] == {"k": 3, "n": 4}
  assert by_name["s"]["seeds_holding"] is None          # a scalar has no seeds
  assert out["seeds_holding"] == {"k": 2, "n": 4}        # seeds 1 and 3; sanity not counted
  assert out["verdict"] == claims.FAIL                    # mean b = 2.25 > 1


def test_registry_checks_evaluate_and_serialise(tmp_path):
  paper = registry.get("tinvnn")
  measured = {"drop_tinvnn": [0.2, 0.4, 0.0], "drop_pointnet": [60.0, 55.0, 70.0],
              "acc_transformed_tinvnn_minus_aug": [1.0, -0.5, 2.0]}
  out = claims.evaluate(paper.checks, measured)
  assert out["verdict"] == claims.PASS and out["seeds_holding"] == {"k": 2, "n": 3}
  payload = results.results_payload(paper_id=paper.id, claim=paper.claim, passed=False,
                                    measured=measured, seeds=[0, 1, 2], runtime_s=1.0,
                                    config={}, quick=False, evaluation=out)
  assert payload["passed"] is True and payload["verdict"] == "PASS"  # the checks decide
  results.write_json_atomic(str(tmp_path / "r.json"), payload)
  stored = json.loads((tmp_path / "r.json").read_text())
  text = claims.format_check(stored["checks"][0])
  assert "drop_tinvnn" in text and "≤ 1 (ours)" in text and "margin +" in text
  assert "3/3 seeds" in text


def test_execute_takes_the_verdict_from_the_checks(tmp_path):
  import ml_collections
  from jaxrep.core import experiment

  def get_config():
    return ml_collections.ConfigDict({"num_seeds": 3})

  def run(config, ctx):
    return experiment.Outcome(measured={"drop_tinvnn": np.array([0.5, 2.0, 3.0]),
                                        "drop_pointnet": np.array([40.0, 40.0, 40.0]),
                                        "acc_transformed_tinvnn_minus_aug": 1.0},
                              passed=True)

  fake = experiment.Experiment(paper_id="tinvnn", claim="old text", get_config=get_config,
                               run=run, quick=lambda c: c)
  payload = experiment.execute(fake, str(tmp_path), verbose=False)
  assert payload["verdict"] == "FAIL" and payload["passed"] is False
  assert payload["claim"] == registry.get("tinvnn").claim
  assert payload["seeds_holding"] == {"k": 1, "n": 3}
  stored = json.loads((tmp_path / "results.json").read_text())
  assert stored["checks"][0]["margin"] == pytest.approx(1.0 - np.mean([0.5, 2.0, 3.0]))
  quick = experiment.execute(fake, str(tmp_path / "q"), quick=True, verbose=False)
  assert quick["passed"] is None and quick["verdict"] == "FAIL"


def test_claims_imports_no_jax():
  code = ("import sys, jaxrep.core.claims, jaxrep.scoreboard; "
          "print(sorted(m for m in ('jax', 'flax', 'orbax', 'matplotlib') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"
