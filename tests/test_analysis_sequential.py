"""Alpha-spending boundaries (Lan-DeMets) and the error rate of testing after every step of seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.analysis.sequential import boundaries, ci_width, sequential_look, spent, welch_z

LOOKS = list(range(5, 51, 5))  # min 5, step 5, max 50: ten looks


def test_spending_functions_spend_alpha_by_the_end():
    for kind in ("obrien-fleming", "pocock"):
        assert spent(1.0, 0.025, kind) == pytest.approx(0.025)
        assert spent(0.5, 0.025, kind) < 0.025 and spent(0.0, 0.025, kind) == 0
    assert spent(0.2, 0.025, "obrien-fleming") < spent(0.2, 0.025, "pocock")
    with pytest.raises(ValueError, match="allowed"):
        spent(0.5, 0.05, "haybittle")


def test_boundaries_match_published_tables():
    """Five equally spaced looks, one-sided 0.025 (Jennison & Turnbull 2000, Table 2.x; R ldbounds)."""
    t = [0.2, 0.4, 0.6, 0.8, 1.0]
    assert boundaries(t, 0.025, "obrien-fleming") == pytest.approx([4.8769, 3.3569, 2.6803, 2.2898, 2.0310], abs=2e-3)
    assert boundaries(t, 0.025, "pocock") == pytest.approx([2.4380, 2.4268, 2.4101, 2.3966, 2.3859], abs=2e-3)
    assert boundaries([1.0], 0.025)[0] == pytest.approx(1.95996, abs=1e-4)  # one look: the fixed test


def test_boundaries_cross_with_probability_alpha_under_brownian_motion():
    rng = np.random.default_rng(0)
    t = np.array(LOOKS) / 50
    c = boundaries(t, 0.025, "obrien-fleming")
    increments = rng.normal(size=(200_000, len(t))) * np.sqrt(np.diff(t, prepend=0.0))
    z = np.cumsum(increments, axis=1) / np.sqrt(t)
    assert np.mean((z >= c).any(axis=1)) == pytest.approx(0.025, abs=0.0015)


def _first_crossing(a: np.ndarray, b: np.ndarray, rule: str) -> np.ndarray:
    """Per replication (rows), the 1-based look at which the two-sided rule first calls a != b (0: never).

    Vectorised over replications: Welch's p at each look turned into z, as sequential_look does.
    """
    c = np.full(len(LOOKS), stats.norm.isf(0.025)) if rule == "naive" else boundaries(np.array(LOOKS) / 50, 0.025, rule)
    first = np.zeros(len(a), dtype=int)
    for k, n in enumerate(LOOKS, start=1):
        p = stats.ttest_ind(a[:, :n], b[:, :n], axis=1, equal_var=False, alternative="greater").pvalue
        z = stats.norm.isf(p)
        first[(first == 0) & (np.abs(z) >= c[k - 1])] = k
    return first


def _null_rate(reps: int, rule: str, seed: int) -> float:
    """Share of null experiments (two recipes, same normal scores) that a rule ever calls different."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(70, 3, size=(reps, 50)), rng.normal(70, 3, size=(reps, 50))
    return float(np.mean(_first_crossing(a, b, rule) > 0))


def test_vectorised_rule_is_the_scheduler_decision():
    rng = np.random.default_rng(5)
    a, b = rng.normal(71, 3, size=(40, 50)), rng.normal(70, 3, size=(40, 50))
    first = _first_crossing(a, b, "obrien-fleming")
    for i in range(40):
        settled = [sequential_look(a[i, :n], b[i, :n], k, LOOKS, 0.05, two_sided=True).settled
                   for k, n in enumerate(LOOKS, start=1)]  # fmt: skip
        assert (settled.index(True) + 1 if any(settled) else 0) == first[i]


@pytest.mark.parametrize("rule", ["obrien-fleming", "pocock"])
def test_error_rate_stays_nominal_under_a_known_null(rule: str):
    """20000 null experiments with ten looks: the two-sided 5% rule errs 5% of the time (SE 0.15%)."""
    rate = _null_rate(20000, rule, seed=1)
    assert 0.044 <= rate <= 0.056


def test_naive_repeated_testing_inflates_the_error_rate():
    """The same simulation without the spending correction: what the check above would catch."""
    assert _null_rate(5000, "naive", seed=2) > 0.1


def test_large_effect_stops_early():
    rng = np.random.default_rng(3)
    a, b = rng.normal(75, 3, size=(2000, 50)), rng.normal(70, 3, size=(2000, 50))  # 1.7 sd apart
    first = _first_crossing(a, b, "obrien-fleming")
    seeds_used = np.where(first > 0, np.array(LOOKS)[np.maximum(first, 1) - 1], 50)
    assert np.median(seeds_used) <= 20 and np.mean(seeds_used) < 25 and np.mean(first > 0) > 0.99  # max is 50


def test_welch_z_and_ci_width():
    assert welch_z([3.0, 3.0], [1.0, 1.0], "greater") == math.inf
    assert welch_z([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "greater") == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(welch_z([1.0], [1.0, 2.0], "greater"))
    x = [1.0, 2.0, 3.0, 4.0]
    assert ci_width(x) == pytest.approx(2 * 3.182446 * np.std(x, ddof=1) / 2, rel=1e-5)
    assert math.isnan(ci_width([1.0, float("nan")]))
