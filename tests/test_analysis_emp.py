import itertools
import json

import numpy as np
import pandas as pd
import pytest

from harness.analysis import expected_max, expected_max_table
from harness.analysis.seeds.emp import expected_test


@pytest.mark.parametrize("scores", [[3.0, 1.0, 2.0, 5.0], [60.0, 60.0, 70.0], [1.0, 4.0, 4.0, 9.0, 2.0]])
def test_emp_equals_brute_force_enumeration(scores):
    # Dodge et al. (2019): draws with replacement; enumerate all N^n equally likely n-tuples
    v = np.array(scores)
    out = expected_max(v, n_boot=0)
    for n in range(1, len(v) + 1):
        maxima = np.array([max(t) for t in itertools.product(v, repeat=n)])
        row = out.iloc[n - 1]
        assert row.emp == pytest.approx(maxima.mean(), rel=1e-12)
        assert row.emp_std == pytest.approx(maxima.std(), rel=1e-9, abs=1e-12)


def test_emp_edges_and_band():
    out = expected_max(np.array([5.0]), n_max=3)
    assert out.emp.tolist() == [5.0, 5.0, 5.0] and out.emp_std.tolist() == [0.0, 0.0, 0.0]
    assert len(expected_max(np.array([np.nan, np.nan]))) == 0
    v = np.random.default_rng(0).normal(70, 3, 40)
    out = expected_max(np.r_[v, np.nan], n_boot=500)  # NaN (diverged) dropped
    assert out.emp.iloc[0] == pytest.approx(v.mean()) and out.emp.is_monotonic_increasing
    assert (out.band_lo <= out.emp + 1e-9).all() and (out.emp <= out.band_hi + 1e-9).all()


def test_emp_table_per_config():
    runs = pd.DataFrame({"task": "rte", "recipe": ["a"] * 3 + ["b"] * 2, "status": "done",
                         "val_best": [1.0, 2.0, 3.0, 4.0, 5.0], "score": np.nan})  # fmt: skip
    t = expected_max_table(runs, n_boot=10)
    assert t.groupby("recipe").size().to_dict() == {"a": 3, "b": 2}
    assert t.iloc[2].emp == pytest.approx(3 - (2 / 3) ** 3 - (1 / 3) ** 3)  # E[max of 3 of {1,2,3}]


@pytest.mark.parametrize(
    ("val", "test"),
    [([3.0, 1.0, 2.0, 5.0], [60.0, 70.0, 65.0, 55.0]), ([1.0, 4.0, 4.0, 2.0], [10.0, 30.0, 50.0, 20.0])],
)
def test_expected_test_performance_equals_brute_force(val, test):
    # Zhang et al. 2021: draw n seeds with replacement, take the best on validation, report its test score;
    # tied validation maxima are picked uniformly among the drawn tied seeds
    v, t = np.array(val), np.array(test)
    out = expected_test(v, t, n_boot=200)
    for n in range(1, len(v) + 1):
        picked = []
        for tup in itertools.product(range(len(v)), repeat=n):
            top = max(v[i] for i in tup)
            picked.append(np.mean([t[i] for i in tup if v[i] == top]))
        assert out.iloc[n - 1].emp == pytest.approx(np.mean(picked), rel=1e-12)
    assert (out.band_lo <= out.band_hi).all() and out.band_lo.notna().all()


def _spec(select: str) -> str:
    return json.dumps({"recipe": {"select": select}})


def test_emp_follows_select_and_counts_diverged_runs_at_their_degenerate_value():
    runs = pd.DataFrame({
        "task": "rte", "recipe": "a", "metric": "accuracy", "majority_val": 50.0, "majority_test": np.nan,
        "status": ["done", "done", "diverged"], "score": [70.0, 60.0, np.nan],
        "val_best": [80.0, 75.0, np.nan], "val_final": [70.0, 60.0, np.nan],
        "test_best": np.nan, "test_final": np.nan, "spec": _spec("final"),
    })  # fmt: skip
    t = expected_max_table(runs, n_boot=0)
    assert t["column"].iloc[0] == "val_final"  # old code: always val_best
    # the diverged run is counted at the majority baseline (50), not dropped: E[one draw] = (70 + 60 + 50) / 3
    assert t.emp.iloc[0] == pytest.approx(60.0) and t.n_scores.iloc[0] == 3
    assert "1 diverged" in t.used.iloc[0]
    runs["spec"] = _spec("best")
    assert expected_max_table(runs, n_boot=0).emp.iloc[0] == pytest.approx((80 + 75 + 50) / 3)


def test_emp_table_leaves_stopped_runs_out_and_gives_expected_test():
    runs = pd.DataFrame({
        "task": "rte", "recipe": "a", "metric": "accuracy", "majority_val": 50.0, "majority_test": 50.0,
        "status": ["done", "done", "stopped"], "score": [66.0, 64.0, 99.0],
        "val_best": [80.0, 75.0, 99.0], "val_final": [80.0, 75.0, 99.0],
        "test_best": [66.0, 64.0, 99.0], "test_final": [66.0, 64.0, 99.0], "spec": _spec("best"),
    })  # fmt: skip
    t = expected_max_table(runs, n_boot=50)
    assert len(t) == 2 and t.emp.iloc[0] == pytest.approx(77.5)
    assert "1 stopped excluded" in t.used.iloc[0]
    # n = 2: the best-val seed (80 -> test 66) is drawn with probability 3/4
    assert t.test_emp.iloc[1] == pytest.approx(0.75 * 66 + 0.25 * 64)
