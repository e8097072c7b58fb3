import numpy as np
import pandas as pd
import pytest

from harness.analysis import early_stopping_table, simulate_early_stopping


def _store(final, early, n_evals=10):
    """Curves rising linearly from `early` (visible at fraction <= 0.3) to `final`."""
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(len(final))], "config_key": "rte/a", "task": "rte",
                         "recipe": "a", "status": "done"})  # fmt: skip
    frac = np.arange(1, n_evals + 1) / n_evals
    vals = np.where(frac[None, :] <= 0.3, np.asarray(early)[:, None], np.asarray(final)[:, None])
    curves = pd.DataFrame({"run_id": np.repeat(runs.run_id, n_evals), "eval_index": np.tile(range(n_evals), len(final)),
                           "fraction": np.tile(frac, len(final)), "val_metric": vals.ravel()})  # fmt: skip
    return curves, runs


def test_perfectly_informative_early_scores_always_keep_the_best():
    final = np.arange(20.0)
    curves, runs = _store(final, final)
    res = simulate_early_stopping(curves, runs, n_start=10, fraction=0.2, keep=2, n_boot=300)
    assert res.p_best_survives == 1.0 and res.cost_in_full_runs == pytest.approx(10 * 0.2 + 2 * 0.8)
    assert res.saved_fraction == pytest.approx(1 - 3.6 / 10)
    assert res.expected_best_score == pytest.approx(res.expected_best_all)


def test_uninformative_early_scores_survival_is_keep_over_start():
    final = np.arange(40.0)
    curves, runs = _store(final, np.zeros(40))  # all tied at the cut: random keep
    res = simulate_early_stopping(curves, runs, n_start=10, fraction=0.2, keep=3, n_boot=4000)
    assert res.p_best_survives == pytest.approx(0.3, abs=0.03)


def test_dodge_2020_shape_start_many_stop_early():
    # Dodge et al. (2020) sec. 6: many runs that will fail are visible early, so for a fixed budget it pays
    # to start more runs than you finish and stop after 20-30% of training.
    rng = np.random.default_rng(0)
    n = 200
    failed = rng.random(n) < 0.3
    final = np.where(failed, 50 + rng.normal(0, 1, n), 70 + rng.normal(0, 2, n))
    early = np.where(failed, 50, 60) + rng.normal(0, 3, n) + 0.3 * (final - 70)
    curves, runs = _store(final, early)
    t = early_stopping_table(curves, runs, n_start=(10, 30), fractions=(0.2, 0.5), keep=(5,), n_boot=1000)
    rule = t[(t.n_start == 30) & (t.fraction == 0.2)].iloc[0]  # cost 6 + 4 = 10 full runs
    assert rule.cost_in_full_runs == pytest.approx(10.0)
    assert rule.expected_best_score > t[(t.n_start == 10)].iloc[0].expected_best_same_budget
    later = t[(t.n_start == 30) & (t.fraction == 0.5)].iloc[0]
    assert later.p_best_survives >= rule.p_best_survives
    with pytest.raises(ValueError, match="keep"):
        simulate_early_stopping(curves, runs, n_start=3, fraction=0.2, keep=5)
