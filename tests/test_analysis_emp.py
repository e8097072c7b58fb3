import itertools

import numpy as np
import pandas as pd
import pytest

from harness.analysis import expected_max, expected_max_table


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
