"""One pre-declared one-sided test per claim (harness/analysis/verdict.py), against scipy's `alternative=`."""

import numpy as np
import pytest
from scipy import stats

from harness.analysis.verdict import ClaimTest, claim_test, holm_across_claims

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
def test_spread_claim_is_brown_forsythe_halved_in_the_direction_of_the_std_difference(direction):
    got = claim_test("std", direction, A, B)  # std(A) < std(B): "less" is the claimed side
    p2 = stats.levene(A, B, center="median").pvalue
    assert got.test == "brown_forsythe"
    assert got.pvalue == pytest.approx(p2 / 2 if direction == "less" else 1 - p2 / 2, rel=1e-12)
    # two groups: BF's F is the squared pooled t of the absolute deviations from the median
    za, zb = np.abs(A - np.median(A)), np.abs(B - np.median(B))
    t = stats.ttest_ind(za, zb, alternative=direction)
    assert got.statistic == pytest.approx(t.statistic**2, rel=1e-9)
    assert got.pvalue == pytest.approx(t.pvalue, rel=1e-9)


@pytest.mark.parametrize("direction", ["greater", "less"])
def test_degenerate_claim_is_one_sided_fisher(direction):
    da, db = np.r_[np.ones(7), np.zeros(13)].astype(bool), np.r_[np.ones(2), np.zeros(23)].astype(bool)
    got = claim_test("degenerate_rate", direction, A, B, degenerate_a=da, degenerate_b=db)
    want = stats.fisher_exact([[7, 13], [2, 23]], alternative=direction)
    assert got.pvalue == pytest.approx(want.pvalue, rel=1e-12)


def test_holm_across_claims_hand_computed():
    tests = [ClaimTest("welch_t", "greater", 0.0, p, 10, 10) for p in (0.01, 0.04, 0.03, float("nan"))]
    # sorted 0.01, 0.03, 0.04 (m = 3): 0.03, max(0.03, 0.06) = 0.06, max(0.06, 0.04) = 0.06
    assert holm_across_claims(tests) == pytest.approx([0.03, 0.06, 0.06, np.nan], nan_ok=True)


def test_claim_test_rejects_a_test_of_another_statistic():
    with pytest.raises(ValueError, match="does not test a claim on 'std'"):
        claim_test("std", "less", A, B, test="welch_t")
    assert np.isnan(claim_test("mean", "greater", A[:1], B).pvalue)
