import numpy as np
import pandas as pd
import pytest

from harness.analysis import degenerate_rules, is_degenerate, wilson_interval


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
