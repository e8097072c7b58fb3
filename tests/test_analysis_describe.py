import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.analysis import bootstrap_ci, describe, format_summary, iqm, summarize
from harness.analysis.stats.bootstrap import mean


def test_describe_against_numpy_scipy():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    d = describe(x)
    assert d.std == pytest.approx(np.std(x, ddof=1)) and d.median == 3.5
    assert d.iqr == pytest.approx(stats.iqr(x))
    # IQM of 8 values: mean of the middle four sorted values (1 1 [2 3 4 5] 6 9) = 3.5
    assert iqm(x) == pytest.approx(3.5)
    one = describe(np.array([7.0]))
    assert one.n == 1 and one.mean == 7.0 and np.isnan(one.std)
    with pytest.raises(ValueError, match="NaN"):
        describe(np.array([1.0, np.nan]))


def test_bootstrap_ci_matches_scipy_bca_and_falls_back_on_constant_data():
    x = np.random.default_rng(3).normal(70, 5, 30)
    ci = bootstrap_ci((x,), mean, n_boot=999, seed=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(1))
    assert ci.method == "BCa"
    assert (ci.lo, ci.hi) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)
    flat = bootstrap_ci((np.full(10, 60.0),), mean, n_boot=200)
    assert flat.method == "percentile" and flat.lo == flat.hi == 60.0
    assert np.isnan(bootstrap_ci((np.array([1.0]),), mean).lo)


def _store():
    scores = [60.0, 70.0, 52.0, np.nan, np.nan, 65.0, 66.0]
    return pd.DataFrame({
        "task": "rte", "recipe": ["a"] * 6 + ["b"], "metric": "accuracy", "score": scores,
        "status": ["done", "done", "done", "diverged", "failed", "stopped", "done"],
        "majority_val": 52.9, "majority_test": 52.5,
    })  # fmt: skip


def test_summarize_counts_diverged_failed_and_degenerate_and_leaves_stopped_runs_out():
    s = summarize(_store(), n_boot=200)
    a = s.iloc[0]
    assert list(s["config_key"]) == ["rte/a", "rte/b"]
    # the stopped run (65 at its rung) is counted apart, not in n, mean, std or the degenerate rate
    assert (a.n, a.n_scored, a.n_diverged, a.n_failed, a.n_stopped) == (4, 3, 1, 1, 1)
    assert a["mean"] == pytest.approx(np.mean([60, 70, 52]))
    assert a.degenerate_n == 2 and a.degenerate_rate == pytest.approx(0.5)  # 52 <= 52.5 and the diverged run
    assert a.mean_nondeg == pytest.approx(65.0) and a.std_nondeg == pytest.approx(np.std([60, 70], ddof=1))
    b = s.iloc[1]  # n = 1: no spread, no CI
    assert b.n == 1 and np.isnan(b["std"]) and np.isnan(b.mean_ci_lo)
    assert "rte" in format_summary(s) and "degen" in format_summary(s)


def test_summarize_all_degenerate_and_all_equal():
    runs = pd.DataFrame({"task": "rte", "recipe": "a", "metric": "accuracy", "score": [50.0] * 5,
                         "status": "done", "majority_val": 52.9, "majority_test": 52.5})  # fmt: skip
    row = summarize(runs, n_boot=100).iloc[0]
    assert row.degenerate_rate == 1.0 and row.degenerate_hi == 1.0
    assert row["std"] == 0.0 and row.mean_ci_lo == row.mean_ci_hi == 50.0 and row.mean_ci_method == "percentile"
    assert row.n_nondeg == 0 and np.isnan(row.mean_nondeg)
