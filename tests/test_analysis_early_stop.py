import numpy as np
import pandas as pd
import pytest

from harness.analysis import early_stopping_table, simulate_early_stopping
from harness.analysis.seeds.early_stop import exact_rule


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


def _brute_force(final, early, t, p):
    """Every subset of t seeds and every order of its ties at the cut: P(best kept), E[best kept], E[best of t]."""
    import itertools

    hits, kept_best, all_best = [], [], []
    for sub in itertools.combinations(range(len(final)), t):
        orders = [o for o in itertools.permutations(sub) if all(early[a] >= early[b] for a, b in itertools.pairwise(o))]
        best = max(final[k] for k in sub)
        top = [max(final[k] for k in o[:p]) for o in orders]  # equally likely tie orders
        hits.append(np.mean([x == best for x in top]))
        kept_best.append(np.mean(top))
        all_best.append(best)
    return np.mean(hits), np.mean(kept_best), np.mean(all_best)


@pytest.mark.parametrize("seed", range(5))
def test_exact_rule_equals_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = 7
    final = rng.integers(0, 5, n).astype(float)  # ties in the final score
    early = rng.integers(0, 3, n).astype(float)  # and at the cut
    for t, p in ((4, 1), (5, 2), (3, 2), (7, 3), (3, 3)):
        got = exact_rule(final, early, t, p)
        assert got == pytest.approx(_brute_force(final, early, t, p), rel=1e-12)


def test_uninformative_cut_is_exactly_keep_over_start():
    final = np.arange(12.0)
    assert exact_rule(final, np.zeros(12), 10, 3)[0] == pytest.approx(0.3, rel=1e-12)


def test_table_is_exact_has_a_quarter_fraction_and_no_rule_that_keeps_everything():
    rng = np.random.default_rng(1)
    curves, runs = _store(rng.normal(70, 3, 12), rng.normal(60, 3, 12))
    t = early_stopping_table(curves, runs, n_start=(5, 10, 20), keep=(1, 2, 5, 10))
    assert 0.25 in set(t.fraction) and (t.keep < t.n_start).all()
    assert set(t.loc[t.n_start <= 12, "method"]) == {"exact"}
    assert set(t.loc[t.n_start == 20, "method"]) == {"monte carlo (with replacement)"}
    again = early_stopping_table(curves, runs, n_start=(5, 10, 20), keep=(1, 2, 5, 10), seed=5)
    exact = t.method == "exact"  # exact cells do not move with the seed
    assert again.loc[exact, "p_best_survives"].to_numpy() == pytest.approx(t.loc[exact, "p_best_survives"])


@pytest.mark.parametrize("seed", range(12))
def test_exact_rule_equals_the_first_implementation(seed):
    """The table-based sums against the level-by-level loops they replaced (tests/early_stop_reference.py), on
    scores with ties in the final score and at the cut, and NaN (-inf) seeds: equal within float rounding."""
    from early_stop_reference import reference_exact_rule

    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 45))
    final = np.round(rng.normal(70, 3, n), int(rng.integers(0, 2)))
    early = np.round(rng.normal(60, 3, n), int(rng.integers(0, 2)))
    final[rng.random(n) < 0.1] = -np.inf
    early[rng.random(n) < 0.15] = -np.inf
    for t in sorted({2, 5, 10, 20, n} & set(range(1, n + 1))):
        for p in (q for q in (1, 2, 5, 10) if q <= t):
            got = exact_rule(final, early, t, p)
            want = reference_exact_rule(final, early, t, p)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12, nan_ok=True)


def test_config_matrices_match_a_pivot_per_configuration():
    """One pass over the curves gives each configuration the matrix a pivot of its own curves gives: its own eval
    indices, the last non-NaN value of a repeated point, a NaN row for a run without a curve, median fractions."""
    from harness.analysis.seeds.early_stop import config_matrices

    rng = np.random.default_rng(3)
    rows = []
    for run in range(12):
        for k in range(5 if run < 6 else 3):  # the second configuration has fewer evaluations
            rows.append({"run_id": f"r{run}", "eval_index": k, "fraction": (k + 1) / 5 + rng.normal(0, 0.01),
                         "val_metric": rng.normal(60, 5)})  # fmt: skip
    rows.append({"run_id": "r1", "eval_index": 2, "fraction": 0.6, "val_metric": np.nan})  # a repeat, NaN: skipped
    curves = pd.DataFrame(rows)
    groups = [[f"r{i}" for i in range(6)] + ["no-curve"], [f"r{i}" for i in range(6, 12)]]
    for ids, (mat, frac) in zip(groups, config_matrices(curves, groups), strict=True):
        sub = curves[curves.run_id.isin(ids)]
        want = sub.pivot_table(index="run_id", columns="eval_index", values="val_metric", aggfunc="last", dropna=False)
        want = want.reindex(index=ids)
        np.testing.assert_array_equal(mat, want.to_numpy(float))
        np.testing.assert_array_equal(frac, sub.groupby("eval_index")["fraction"].median().to_numpy(float))


def test_configurations_too_large_for_a_table_sum_each_term_to_the_same(monkeypatch):
    import harness.analysis.seeds.early_stop as es

    rng = np.random.default_rng(7)
    final, early = np.round(rng.normal(70, 3, 40)), np.round(rng.normal(60, 3, 40))
    with_table = es.exact_rules(final, [early], [(10, 2), (20, 5)])
    monkeypatch.setattr(es, "TABLE_CELLS", 0)
    without = es.exact_rules(final, [early], [(10, 2), (20, 5)])
    for rule in ((10, 2), (20, 5)):
        assert without[0][rule] == pytest.approx(with_table[0][rule], rel=1e-12)
