"""Seeds needed for 80% power: noncentral t against textbook sample sizes and the normal closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.analysis.stats.power import normal_seeds, seeds_for_power, seeds_needed, welch_power


@pytest.mark.parametrize(("d", "n"), [(0.2, 394), (0.5, 64), (0.8, 26)])
def test_textbook_sample_sizes(d: float, n: int):
    """Cohen 1988, Table 2.4.1: two-sided alpha 0.05, power 0.80, equal variances."""
    assert seeds_for_power(d, 1.0, 1.0) == n


def test_power_equals_student_t_when_variances_are_equal():
    n, d = 20, 0.7
    df, ncp = 2 * (n - 1), d / math.sqrt(2 / n)
    crit = stats.t.isf(0.025, df)
    expected = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
    assert welch_power(n, d, 1.0, 1.0) == pytest.approx(expected)


def test_power_by_simulation_with_unequal_spread():
    rng = np.random.default_rng(0)
    n, delta, sa, sb = 12, 3.0, 2.0, 4.0
    a = rng.normal(delta, sa, size=(20000, n))
    b = rng.normal(0.0, sb, size=(20000, n))
    simulated = np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05)
    assert welch_power(n, delta, sa, sb) == pytest.approx(simulated, abs=0.015)


def test_normal_approximation_is_the_large_sample_limit():
    n_exact = seeds_for_power(0.05, 1.0, 2.0)
    assert n_exact == pytest.approx(normal_seeds(0.05, 1.0, 2.0), rel=0.002, abs=2)
    assert seeds_for_power(0.0, 1.0, 1.0) is None and math.isinf(normal_seeds(0.0, 1.0, 1.0))


def test_seeds_needed_from_scores():
    res = seeds_needed([70.0, 72.0, 68.0, 71.0, float("nan")], [60.0, 75.0, 50.0, 66.0])
    assert res.n_a == 4 and res.n_b == 4 and res.delta == pytest.approx(70.25 - 62.75)
    assert res.seeds_needed is not None and res.seeds_needed > 4 > res.power_now * 4
    assert welch_power(res.seeds_needed, res.delta, res.sd_a, res.sd_b) >= 0.8
    assert welch_power(res.seeds_needed - 1, res.delta, res.sd_a, res.sd_b) < 0.8
    with pytest.raises(ValueError, match="2 finite scores"):
        seeds_needed([1.0], [1.0, 2.0])


@pytest.mark.parametrize("delta", [8.0, 9.0, 12.0, 15.0])
def test_power_of_a_large_effect_is_one_not_nan(delta):
    """scipy's noncentral-t cdf is NaN far in the lower tail (ncp ~ 10-20): the power came out NaN."""
    power = welch_power(8, delta, 1.5, 1.5)
    assert power == pytest.approx(1.0)
    assert seeds_for_power(delta, 1.5, 1.5) in (2, 3)  # a tiny n suffices for an effect of 5+ sd


def test_one_sided_power_by_simulation_and_the_wrong_side():
    rng = np.random.default_rng(1)
    n, delta, sa, sb = 10, 2.0, 2.0, 3.0
    a, b = rng.normal(delta, sa, size=(20000, n)), rng.normal(0.0, sb, size=(20000, n))
    simulated = np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False, alternative="greater").pvalue < 0.05)
    assert welch_power(n, delta, sa, sb, 0.05, "greater") == pytest.approx(simulated, abs=0.015)
    assert welch_power(n, delta, sa, sb, 0.05, "less") < 0.05  # the effect is on the other side
    assert seeds_for_power(delta, sa, sb, 0.05, 0.8, "less") is None
    one, two = seeds_for_power(delta, sa, sb, 0.05, 0.8, "greater"), seeds_for_power(delta, sa, sb)
    assert one < two and welch_power(one, delta, sa, sb, 0.05, "greater") >= 0.8 > welch_power(
        one - 1, delta, sa, sb, 0.05, "greater")  # fmt: skip
    assert seeds_for_power(delta, sa, sb, 0.01, 0.8, "greater") > one  # a stricter Holm level needs more


def test_fisher_power_by_simulation():
    from harness.analysis.stats.power import fisher_power, fisher_seeds

    rng = np.random.default_rng(2)
    n, pa, pb = 25, 0.45, 0.1
    x, y = rng.binomial(n, pa, 3000), rng.binomial(n, pb, 3000)
    p = [stats.fisher_exact([[i, n - i], [j, n - j]], alternative="greater").pvalue for i, j in zip(x, y, strict=True)]
    assert fisher_power(n, pa, pb, 0.05, "greater") == pytest.approx(np.mean(np.array(p) <= 0.05), abs=0.02)
    need = fisher_seeds(9, 20, 2, 20, "greater", 0.05)
    assert fisher_power(need, 0.45, 0.1, 0.05, "greater") >= 0.8 > fisher_power(need - 1, 0.45, 0.1, 0.05, "greater")
    assert fisher_seeds(2, 20, 9, 20, "greater") is None  # the rates differ the other way


def test_spread_seeds_are_those_of_the_t_test_of_the_absolute_deviations():
    from harness.analysis.stats.power import spread_seeds

    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1.0, 12), rng.normal(0, 2.0, 12)
    za, zb = np.abs(a - np.median(a)), np.abs(b - np.median(b))
    want = seeds_for_power(za.mean() - zb.mean(), za.std(ddof=1), zb.std(ddof=1), 0.05, 0.8, "less")
    assert spread_seeds(a, b, "less") == want and want is not None
    assert spread_seeds(a, b, "greater") is None
