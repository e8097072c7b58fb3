import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.analysis import compare, compare_table, holm, probability_of_improvement
from harness.analysis.seeds.compare import bootstrap_poi, permutation_mean_diff
from harness.analysis.stats.bootstrap import mean_diff

RNG = np.random.default_rng(11)
A, B = RNG.normal(70, 2, 20), RNG.normal(68, 4, 25)


def _by_method(results):
    return {c.method: c for c in results}


def test_tests_match_scipy():
    r = _by_method(compare(A, B, degenerate_a=A < 67, degenerate_b=B < 67, n_boot=500, n_perm=999))
    welch = stats.ttest_ind(A, B, equal_var=False)
    assert r["welch_t"].pvalue == pytest.approx(welch.pvalue) and r["welch_t"].statistic == pytest.approx(
        welch.statistic
    )
    assert r["welch_t"].ci_lo == pytest.approx(welch.confidence_interval().low)
    assert r["mann_whitney_u"].pvalue == pytest.approx(stats.mannwhitneyu(A, B).pvalue)
    assert r["levene"].pvalue == pytest.approx(stats.levene(A, B, center="mean").pvalue)
    assert r["brown_forsythe"].pvalue == pytest.approx(stats.levene(A, B, center="median").pvalue)
    table = [[(A < 67).sum(), (A >= 67).sum()], [(B < 67).sum(), (B >= 67).sum()]]
    assert r["fisher_exact_degenerate"].pvalue == pytest.approx(stats.fisher_exact(table).pvalue)
    assert r["bootstrap_std_ratio"].statistic == pytest.approx(np.std(A, ddof=1) / np.std(B, ddof=1))
    assert r["bootstrap_mean_diff"].ci_lo < A.mean() - B.mean() < r["bootstrap_mean_diff"].ci_hi


def test_holm_hand_computed():
    # p sorted 0.01, 0.02, 0.03, 0.04 (m=4): 0.04, 0.06, 0.06 (monotone), 0.06; NaN is not in the family
    p = np.array([0.03, 0.01, np.nan, 0.04, 0.02])
    assert holm(p) == pytest.approx([0.06, 0.04, np.nan, 0.06, 0.06], nan_ok=True)
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])


def test_probability_of_improvement_against_pairwise_count():
    pairs = [(x > y) + 0.5 * (x == y) for x, y in itertools.product(A.round(), B.round())]
    assert probability_of_improvement(A.round(), B.round()) == pytest.approx(np.mean(pairs))
    boot = bootstrap_poi(A, B, 4000, seed=0)
    assert abs(boot.mean() - probability_of_improvement(A, B)) < 0.01


def test_permutation_exact_and_monte_carlo_agree_with_scipy():
    a, b = np.array([1.0, 2.0, 4.0, 7.0]), np.array([0.0, 0.5, 1.5])  # 35 splits: exact
    exact = stats.permutation_test((a, b), mean_diff, vectorized=True, n_resamples=999)
    assert permutation_mean_diff(a, b, n_perm=999).pvalue == pytest.approx(exact.pvalue)
    ref = stats.permutation_test((A, B), mean_diff, vectorized=True, n_resamples=9999, rng=np.random.default_rng(0))
    assert permutation_mean_diff(A, B, n_perm=9999).pvalue == pytest.approx(ref.pvalue, abs=0.02)


def test_edge_cases_n1_all_equal_nan():
    r = _by_method(compare(np.array([70.0]), B, n_boot=100, n_perm=99))
    assert np.isnan(r["welch_t"].pvalue) and "n >= 2" in r["welch_t"].note and np.isnan(r["levene"].pvalue)
    r = _by_method(compare(np.full(5, 60.0), np.full(6, 60.0), n_boot=100, n_perm=99))
    assert r["mann_whitney_u"].pvalue == pytest.approx(1.0) and r["prob_improvement"].statistic == 0.5
    assert r["permutation_mean_diff"].pvalue == pytest.approx(1.0)
    r = _by_method(compare(np.r_[A, np.nan], B, n_boot=100, n_perm=99))
    assert r["welch_t"].n_a == 20 and "a=1" in r["welch_t"].note


def test_compare_table_holm_within_each_method_across_pairs():
    runs = pd.DataFrame({
        "task": ["rte"] * 45 + ["mrpc"] * 45, "recipe": (["base"] * 20 + ["new"] * 25) * 2,
        "metric": ["accuracy"] * 45 + ["f1"] * 45, "score": np.r_[A, B, A + 15, B + 15], "status": "done",
        "majority_val": 52.9, "majority_test": 52.5,
    })  # fmt: skip
    t = compare_table(runs, n_boot=200, n_perm=199, n_boot_aso=100, n_jobs=1)
    assert set(t["a"]) == {"new"} and set(t["b"]) == {"base"} and list(t["task"].unique()) == ["rte", "mrpc"]
    # one family per method (its two pairs), not one family of every test of the table
    for method in ("welch_t", "mann_whitney_u", "levene", "brown_forsythe", "fisher_exact_degenerate"):
        rows = t[t["method"] == method]
        assert rows["p_adjusted"].to_numpy() == pytest.approx(holm(rows["pvalue"].to_numpy()))
        assert set(rows["family"]) == {f"{method}, 2 pairs"}
    assert t.loc[t["method"] == "aso", "family"].eq("").all()
    assert (t["p_adjusted"].dropna() >= t.loc[t["p_adjusted"].notna(), "pvalue"]).all()
