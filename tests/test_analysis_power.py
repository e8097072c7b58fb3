"""Seeds needed for 80% power: noncentral t against textbook sample sizes and the normal closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.analysis.power import normal_seeds, seeds_for_power, seeds_needed, welch_power


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
