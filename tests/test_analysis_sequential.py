"""Alpha-spending boundaries (Lan-DeMets) and the error rate of testing after every step of seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.analysis.stats.sequential import (
    boundaries,
    ci_width,
    sequential_look,
    sequential_replay,
    spent,
    stagewise_p,
    welch_z,
)
from harness.analysis.verdicts.protocol import holm_across_claims

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


# --- the verdict after an adaptive budget: replay of the group-sequential test, stage-wise p ---------------------


@pytest.mark.parametrize("kind", ["obrien-fleming", "pocock"])
def test_stagewise_p_is_the_spent_alpha_at_each_boundary(kind: str):
    t = [0.25, 0.5, 0.75, 1.0]
    c = boundaries(t, 0.05, kind)
    for k in range(1, 5):
        assert stagewise_p(c[k - 1], k, t, 0.05, kind) == pytest.approx(spent(t[k - 1], 0.05, kind), abs=2e-4)
        assert stagewise_p(c[k - 1] - 0.2, k, t, 0.05, kind) > spent(t[k - 1], 0.05, kind)
    assert stagewise_p(1.3, 1, [1.0], 0.05, kind) == pytest.approx(stats.norm.sf(1.3))  # one look: the plain z test


def test_stagewise_p_by_simulation_of_brownian_paths():
    """P(stop earlier, or stop at look 3 with a larger z) under the null, counted on simulated paths."""
    rng = np.random.default_rng(7)
    t = np.array([0.25, 0.5, 0.75, 1.0])
    c = boundaries(t, 0.05, "pocock")
    z = np.cumsum(rng.normal(size=(400_000, 4)) * np.sqrt(np.diff(t, prepend=0.0)), axis=1) / np.sqrt(t)
    crossed_before = (z[:, :2] >= c[:2]).any(axis=1)
    simulated = np.mean(crossed_before | (z[:, 2] >= 1.7))
    assert stagewise_p(1.7, 3, t, 0.05, "pocock") == pytest.approx(simulated, abs=0.002)


def test_replay_stops_where_the_budget_stops_and_its_p_agrees():
    rng = np.random.default_rng(11)
    looks = (4, 8, 12, 16)
    a, b = rng.normal(71, 3, size=(60, 16)), rng.normal(70, 3, size=(60, 16))
    rep = sequential_replay(a, b, looks, 0.05, "pocock", "greater")
    for i in range(60):
        settled = [sequential_look(a[i, :n], b[i, :n], k, looks, 0.05, "pocock").settled
                   for k, n in enumerate(looks, start=1)]  # fmt: skip
        stop = settled.index(True) + 1 if any(settled) else len(looks)
        assert rep.look[i] == stop and rep.crossed[i] == any(settled)
    assert np.array_equal(rep.crossed, rep.p <= 0.05)  # the verdict's p agrees with the boundary


def _null_verdicts(studies: int, looks: tuple[int, ...], kind: str, seed: int) -> np.ndarray:
    """The final verdict of `studies` null experiments under the whole adaptive rule: each pair gets seeds look by
    look until its one-sided test crosses the boundary (or max), then the claim is "reproduced" when its p_Holm
    (one claim: its stage-wise p) is below alpha. Vectorised: the same replay the verdict runs per claim."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(70, 3, size=(studies, looks[-1])), rng.normal(70, 3, size=(studies, looks[-1]))
    rep = sequential_replay(a, b, looks, 0.05, kind, "greater")
    p_holm = np.array([holm_across_claims([p])[0] for p in rep.p[:50]])  # a family of one claim: p itself
    assert np.array_equal(p_holm, rep.p[:50])
    return rep.p < 0.05


@pytest.mark.parametrize(("looks", "kind"), [((4, 8, 12, 16), "pocock"), (tuple(LOOKS), "obrien-fleming")])
def test_null_simulation_of_adaptive_verdicts_holds_alpha(looks, kind):
    """10,000 null studies (SE of a 5% rate: 0.22%): the adaptive verdict errs 5% +- 0.6% of the time."""
    rate = float(np.mean(_null_verdicts(10_000, looks, kind, seed=21)))
    assert 0.044 <= rate <= 0.056, rate


def test_the_old_rule_after_adaptive_stopping_did_not_hold_alpha():
    """What the check above catches: stopping at one-sided 0.025 (Pocock), then a fixed one-sided Welch test at
    0.05 on the data the budget stopped with (the report's old verdict) errs ~6% of the time."""
    rng = np.random.default_rng(21)
    looks = tuple(LOOKS)
    a, b = rng.normal(70, 3, size=(10_000, 50)), rng.normal(70, 3, size=(10_000, 50))
    stop = sequential_replay(a, b, looks, 0.025, "pocock", "greater").n
    p = np.ones(len(a))
    for n in looks:
        rows = stop == n
        p[rows] = stats.ttest_ind(a[rows, :n], b[rows, :n], axis=1, equal_var=False, alternative="greater").pvalue
    assert np.mean(p < 0.05) > 0.056
