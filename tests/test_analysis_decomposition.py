import numpy as np
import pandas as pd
import pytest

from harness.analysis import decompose_grid, variance_decomposition


def test_additive_grid_closed_form():
    # y_ij = a_i + b_j exactly: MS_io = 0, so var_init = var(a) and var_order = var(b) (ddof=1)
    a, b = np.array([0.0, 1.0, 5.0]), np.array([2.0, -1.0, 0.0, 3.0])
    d = decompose_grid(a[:, None] + b[None, :])
    assert d.var_init == pytest.approx(np.var(a, ddof=1)) and d.var_order == pytest.approx(np.var(b, ddof=1))
    assert d.var_interaction == pytest.approx(0.0, abs=1e-12)
    assert d.std_fix_init == pytest.approx(np.std(b, ddof=1))  # init fixed: spread comes from b alone


def test_recovers_known_components_on_synthetic_grid():
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(20):
        y = rng.normal(0, 2.0, (25, 1)) + rng.normal(0, 1.0, (1, 25)) + rng.normal(0, 1.0, (25, 25))
        d = decompose_grid(y)
        shares.append((d.var_init, d.var_order, d.var_interaction))
    assert np.mean(shares, axis=0) == pytest.approx([4.0, 1.0, 1.0], rel=0.15)


def test_replicates_and_f_test():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, (6, 5, 3)) + 3 * np.arange(6)[:, None, None]
    d = decompose_grid(y)
    assert d.replicates == 3 and d.p_init < 1e-6 and d.p_order > 1e-3


def test_holes_from_diverged_runs_drop_a_level():
    ii, jj = np.meshgrid(range(4), range(3), indexing="ij")
    score = (ii * 2.0 + jj).ravel()
    score[5] = np.nan  # one diverged run (init 1, order 2)
    runs = pd.DataFrame({"task": "rte", "recipe": "a", "status": "done", "init_seed": ii.ravel(),
                         "order_seed": jj.ravel(), "score": score})  # fmt: skip
    out = variance_decomposition(runs).iloc[0]
    assert out.n_used == 9 and out.n_dropped == 3 and out.n_init * out.n_order == 9
    assert len(variance_decomposition(runs[runs.init_seed == 0])) == 0  # a single init level: no grid


def test_stopped_runs_are_left_out_and_the_table_says_so():
    ii, jj = np.meshgrid(range(3), range(3), indexing="ij")
    score = (ii * 2.0 + jj).ravel()
    status = np.array(["done"] * 9, dtype=object)
    status[4] = "stopped"  # its score is a rung checkpoint: it leaves a hole, not a value
    runs = pd.DataFrame({"task": "rte", "recipe": "a", "status": status, "init_seed": ii.ravel(),
                         "order_seed": jj.ravel(), "score": score})  # fmt: skip
    out = variance_decomposition(runs).iloc[0]
    assert out.n_used == 6 and "1 stopped excluded" in out.used
