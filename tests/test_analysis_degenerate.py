import numpy as np
import pandas as pd
import pytest

from harness.analysis import degenerate_rules, is_degenerate, wilson_interval
from harness.analysis.seeds.degenerate import fill_finished_nan, rounding_tolerance, stored_decimals


def _runs(task, metric, scores, maj_val=52.9, maj_test=52.5):
    return pd.DataFrame({"task": task, "metric": metric, "score": scores, "majority_val": maj_val,
                         "majority_test": maj_test})  # fmt: skip


def test_wilson_newcombe_1998_worked_examples():
    # Newcombe (1998), Stat Med 17:857, Table I, method 3 (score, no continuity correction)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=5e-5)
    assert wilson_interval(1, 29) == pytest.approx((0.0061, 0.1718), abs=5e-5)


def test_wilson_closed_form_and_edges():
    k, n, z = 7, 25, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert np.isnan(wilson_interval(0, 0)).all()
    lo, hi = wilson_interval(5, 5)  # all degenerate
    assert hi == pytest.approx(1.0) and lo < 1


def test_classification_at_or_below_majority_uses_test_baseline_then_val():
    runs = _runs("rte", "accuracy", [52.5, 52.6, 40.0, np.nan, 70.0])
    assert is_degenerate(runs).tolist() == [True, False, True, True, False]
    runs["majority_test"] = np.nan  # dev protocol: compare against the validation baseline
    assert is_degenerate(runs).tolist() == [True, True, True, True, False]


def test_regression_threshold_default_and_override():
    runs = _runs("stsb", "spearman", [9.99, 10.0, 85.0, np.nan], 0.0, 0.0)
    assert is_degenerate(runs).tolist() == [True, False, False, True]
    assert is_degenerate(runs, {"stsb": 86.0}).tolist() == [True, True, True, True]
    rules = degenerate_rules(runs, {"stsb": 86.0})
    assert rules.loc[0, "op"] == "<" and rules.loc[0, "threshold"] == 86.0 and rules.loc[0, "source"] == "override"


def _rte_like(n_runs: int = 50, n_degenerate: int = 36, decimals: int | None = None) -> pd.DataFrame:
    """RTE-like runs: the degenerate ones score exactly the majority baseline 146/277; the rest 60-70."""
    majority = 146 / 277 * 100
    rng = np.random.default_rng(0)
    scores = np.r_[np.full(n_degenerate, majority), rng.uniform(60, 70, n_runs - n_degenerate)]
    if decimals is not None:  # an external log that rounded the metric (a fraction) to `decimals` decimals
        scores = np.round(scores / 100, decimals) * 100
    return pd.DataFrame({"task": "rte", "metric": "accuracy", "score": scores, "status": "done",
                         "majority_val": majority, "majority_test": np.nan})  # fmt: skip


@pytest.mark.parametrize("decimals", [None, 6, 4, 3])
def test_degenerate_rate_survives_rounded_logs(decimals):
    # fails on the old `score <= majority` rule: 52.71 (rounded) > 52.7076 turned 72% into 0%
    runs = _rte_like(decimals=decimals)
    assert is_degenerate(runs).mean() == pytest.approx(0.72)


def test_rounded_baseline_and_a_run_one_example_above_stay_apart():
    majority = 146 / 277 * 100
    one_more = 147 / 277 * 100  # one example better than the constant predictor: not degenerate
    runs = pd.DataFrame({"task": "rte", "metric": "accuracy", "score": [round(majority, 2), round(one_more, 2)],
                         "status": "done", "majority_val": round(majority, 1), "majority_test": np.nan})  # fmt: skip
    assert is_degenerate(runs).tolist() == [True, False]
    assert rounding_tolerance(np.array([52.71, 53.07]), np.array([52.7])) == pytest.approx(0.05)
    assert rounding_tolerance(np.array([52.707581227436826])) == pytest.approx(1e-6)
    assert stored_decimals(np.array([52.71, 60.0, np.nan])) == 2


def test_nan_metric_of_a_finished_run_is_the_constant_predictor_score():
    runs = pd.DataFrame({"task": "stsb", "metric": "spearman", "score": [np.nan, np.nan, np.nan, 88.0],
                         "status": ["done", "stopped", "diverged", "done"], "majority_val": 0.0,
                         "majority_test": 0.0})  # fmt: skip
    filled = fill_finished_nan(runs)
    assert filled["score"].tolist()[:2] == [0.0, 0.0]  # what harness.experiment.data.compute_metric returns
    assert np.isnan(filled["score"].iloc[2])  # only a diverged run has no score
    assert is_degenerate(filled).tolist() == [True, True, True, False]
    assert runs["score"].isna().sum() == 3  # the input is not modified
