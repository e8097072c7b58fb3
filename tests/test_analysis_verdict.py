"""One pre-declared one-sided test per claim (harness/analysis/verdicts/protocol.py), against scipy's `alternative=`."""

import numpy as np
import pytest
from scipy import stats

from harness.analysis.verdicts.protocol import ClaimTest, claim_test, holm_across_claims

RNG = np.random.default_rng(5)
A, B = RNG.normal(70, 1.0, 20), RNG.normal(69, 3.0, 25)


@pytest.mark.parametrize("direction", ["greater", "less"])
def test_mean_claim_is_one_sided_welch(direction):
    got = claim_test("mean", direction, np.r_[A, np.nan], B)  # NaN (diverged) dropped
    want = stats.ttest_ind(A, B, equal_var=False, alternative=direction)
    assert got.test == "welch_t" and got.pvalue == pytest.approx(want.pvalue, rel=1e-12) and got.n_a == 20
    mw = claim_test("mean", direction, A, B, test="mann_whitney_u")
    assert mw.pvalue == pytest.approx(stats.mannwhitneyu(A, B, alternative=direction).pvalue, rel=1e-12)


def test_permutation_claim_is_one_sided():
    a, b = A[:6], B[:6]  # 924 splits: exact
    got = claim_test("mean", "greater", a, b, test="permutation_mean_diff", n_perm=9999)
    want = stats.permutation_test((a, b), lambda x, y: x.mean() - y.mean(), alternative="greater",
                                  permutation_type="independent", n_resamples=9999)  # fmt: skip
    assert got.pvalue == pytest.approx(want.pvalue, rel=1e-12)


@pytest.mark.parametrize("direction", ["greater", "less"])
def test_spread_claim_is_the_one_sided_t_test_of_the_absolute_deviations(direction):
    got = claim_test("std", direction, A, B)  # std(A) < std(B): "less" is the claimed side
    assert got.test == "brown_forsythe"
    # two groups: BF's F is the squared pooled t of the absolute deviations from the median
    za, zb = np.abs(A - np.median(A)), np.abs(B - np.median(B))
    t = stats.ttest_ind(za, zb, alternative=direction)
    assert got.statistic == pytest.approx(stats.levene(A, B, center="median").statistic, rel=1e-9)
    assert got.statistic == pytest.approx(t.statistic**2, rel=1e-9)
    assert got.pvalue == pytest.approx(t.pvalue, rel=1e-9)
    lev = claim_test("std", direction, A, B, test="levene")  # Levene: deviations from the mean
    want = stats.ttest_ind(np.abs(A - A.mean()), np.abs(B - B.mean()), alternative=direction)
    assert lev.pvalue == pytest.approx(want.pvalue, rel=1e-9)


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=n)
    return (x - x.mean()) / x.std(ddof=1)


def test_spread_direction_comes_from_the_deviations_not_from_the_std_difference():
    """The fine-tuning shape: a tight bulk plus a few collapsed seeds has the larger std but the smaller mean
    absolute deviation, so "a spreads wider than b" is not supported by Brown-Forsythe's statistic."""
    a = np.r_[70 + 0.1 * _unit(45, 0), 70 + 9.3 * np.array([-1, 1, -1, 1, -1.0])]
    b = 70 + 2.87 * _unit(50, 1)
    assert np.std(a, ddof=1) > np.std(b, ddof=1)  # std says a is wider (2.97 vs 2.87) ...
    assert np.abs(a - np.median(a)).mean() < np.abs(b - np.median(b)).mean()  # ... the deviations say b is
    got = claim_test("std", "greater", a, b)
    assert got.pvalue > 0.98  # halving the two-sided p by the std's sign gave 0.01 here
    assert claim_test("std", "less", a, b).pvalue < 0.02


@pytest.mark.parametrize("direction", ["greater", "less"])
def test_degenerate_claim_is_one_sided_fisher(direction):
    da, db = np.r_[np.ones(7), np.zeros(13)].astype(bool), np.r_[np.ones(2), np.zeros(23)].astype(bool)
    got = claim_test("degenerate_rate", direction, A, B, degenerate_a=da, degenerate_b=db)
    want = stats.fisher_exact([[7, 13], [2, 23]], alternative=direction)
    assert got.pvalue == pytest.approx(want.pvalue, rel=1e-12)


def test_holm_across_claims_keeps_untestable_claims_in_the_family_at_p_1():
    tests = [ClaimTest("welch_t", "greater", 0.0, p, 10, 10) for p in (0.01, 0.04, 0.03, float("nan"))]
    # the untested claim counts as p = 1 (m = 4): 0.01 * 4 = 0.04, max(0.04, 0.03 * 3) = 0.09,
    # max(0.09, 0.04 * 2) = 0.09, max(0.09, 1 * 1) = 1
    assert holm_across_claims(tests) == pytest.approx([0.04, 0.09, 0.09, 1.0])
    assert holm_across_claims([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # hand-computed, m = 3


def test_claim_test_rejects_a_test_of_another_statistic():
    with pytest.raises(ValueError, match="does not test a claim on 'std'"):
        claim_test("std", "less", A, B, test="welch_t")
    assert np.isnan(claim_test("mean", "greater", A[:1], B).pvalue)
