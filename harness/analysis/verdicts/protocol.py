"""The statistical protocol of a verdict: one pre-declared, one-sided test per claim, Holm across claims.

A paper's claim names a statistic and a direction ("re-init lowers the std on RTE"). The statistic
decides the test, declared before looking at the data: mean -> Welch's t (or Mann-Whitney / permutation
when the claim says so), std -> Brown-Forsythe (or Levene), degenerate rate -> Fisher's exact test. The
test is one-sided in the claim's direction (Zhang et al. 2021 used one-sided tests), and the claims of
one experiment form one Holm family: adding a recipe or a test to a comparison table never changes a
verdict.

Spread tests: Levene's test (centre = mean) and Brown-Forsythe's (centre = median) compare the absolute
deviations |x - centre| of the two samples; for two groups their F is the square of the pooled two-sample t
of those deviations. The one-sided p-value is therefore that t test's, one-sided on the deviations: the
direction comes from the test statistic itself, never from the sign of the std difference, which can
disagree with it exactly in the fine-tuning shape (a tight bulk plus a few collapsed seeds has the larger
std but the smaller mean deviation).

Holm family: every claim of the experiment stays in it; a claim that cannot be tested (not run, a gate
failed, too few seeds) counts as p = 1, so dropping it never makes the other claims' adjustment milder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.analysis.seeds.compare import _quiet, holm, permutation_mean_diff

DEFAULT_TEST = {"mean": "welch_t", "std": "brown_forsythe", "degenerate_rate": "fisher_exact_degenerate"}
ALLOWED_TESTS = {
    "mean": ("welch_t", "mann_whitney_u", "permutation_mean_diff"),
    "std": ("brown_forsythe", "levene"),
    "degenerate_rate": ("fisher_exact_degenerate",),
}


@dataclass(frozen=True)
class ClaimTest:
    """The one test of one claim: p-value one-sided in the claim's direction (`alternative`)."""

    test: str
    alternative: str  # "greater" | "less": a's statistic greater (less) than b's
    statistic: float
    pvalue: float
    n_a: int
    n_b: int
    note: str = ""


def claim_test(
    statistic: str,
    direction: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    test: str | None = None,
    degenerate_a: np.ndarray | None = None,
    degenerate_b: np.ndarray | None = None,
    n_perm: int = 9999,
    seed: int = 0,
) -> ClaimTest:
    """One-sided test of `a <direction> b` on `statistic` (scores a, b: NaN = diverged, dropped except for
    the degenerate-rate test, which reads the flags of every counted run)."""
    test = test or DEFAULT_TEST[statistic]
    if test not in ALLOWED_TESTS.get(statistic, ()):
        raise ValueError(f"test {test!r} does not test a claim on {statistic!r}; use one of {ALLOWED_TESTS[statistic]}")
    if direction not in ("greater", "less"):
        raise ValueError(f"direction {direction!r}: use 'greater' or 'less'")
    a_all, b_all = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = a_all[~np.isnan(a_all)], b_all[~np.isnan(b_all)]
    nan = float("nan")
    if statistic == "degenerate_rate":
        if degenerate_a is None or degenerate_b is None:
            raise ValueError("a degenerate-rate claim needs the degenerate flags of both samples")
        da, db = np.asarray(degenerate_a, dtype=bool), np.asarray(degenerate_b, dtype=bool)
        if not da.size or not db.size:
            return ClaimTest(test, direction, nan, nan, da.size, db.size, "empty sample")
        table = [[int(da.sum()), int(da.size - da.sum())], [int(db.sum()), int(db.size - db.sum())]]
        res = stats.fisher_exact(table, alternative=direction)
        return ClaimTest(test, direction, float(res.statistic), float(res.pvalue), da.size, db.size)
    if x.size < 2 or y.size < 2:
        return ClaimTest(test, direction, nan, nan, x.size, y.size, "needs n >= 2 per side")
    if test == "welch_t":
        res = _quiet(stats.ttest_ind, x, y, equal_var=False, alternative=direction)
    elif test == "mann_whitney_u":
        res = _quiet(stats.mannwhitneyu, x, y, alternative=direction)
    elif test == "permutation_mean_diff":
        res = permutation_mean_diff(x, y, n_perm=n_perm, seed=seed, alternative=direction)
    else:
        za, zb = spread_deviations(x, test), spread_deviations(y, test)
        res = _quiet(stats.ttest_ind, za, zb, equal_var=True, alternative=direction)
        return ClaimTest(test, direction, float(res.statistic) ** 2, float(res.pvalue), x.size, y.size)
    return ClaimTest(test, direction, float(res.statistic), float(res.pvalue), x.size, y.size)


def spread_deviations(x: np.ndarray, test: str) -> np.ndarray:
    """|x - median| (Brown-Forsythe) or |x - mean| (Levene): the values a spread test compares."""
    x = np.asarray(x, dtype=float)
    return np.abs(x - (np.median(x) if test == "brown_forsythe" else np.mean(x)))


def holm_across_claims(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted one-sided p-values of the claims of one experiment (a ClaimTest list or p-values). A claim
    without a p-value (untestable) stays in the family at p = 1, so its adjusted p is 1."""
    p = np.array([t.pvalue if isinstance(t, ClaimTest) else t for t in pvalues], dtype=float)
    return holm(np.where(np.isnan(p), 1.0, p))
