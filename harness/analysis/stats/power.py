"""How many seeds the observed effect would need: power of the test a verdict uses.

Means (Welch's t): with n seeds per recipe, means differing by delta and standard deviations s_a, s_b,
Welch's statistic follows a noncentral t with noncentrality delta / sqrt((s_a^2 + s_b^2) / n) and the
Welch-Satterthwaite degrees of freedom (s_a^2 + s_b^2)^2 (n - 1) / (s_a^4 + s_b^4). The normal
approximation n = (z_{1-alpha/2} + z_{power})^2 (s_a^2 + s_b^2) / delta^2 is the closed form it converges
to (z_{1-alpha} one-sided). `alternative` is "two-sided" (the exploratory tables) or the claim's direction
("greater": a above b, "less"), as in the one-sided verdict test.

Spreads (Brown-Forsythe / Levene): for two groups the test is the t test of the absolute deviations
|x - centre| (harness/analysis/verdicts/protocol.py), so its power is that t test's on the observed deviations.
Degenerate rates (Fisher's exact test): the power at n per arm is summed exactly over both binomial counts.

The "observed effect" is the sample effect, so this is a planning number for the next study, not
evidence about this one (post-hoc power of a test already run adds nothing to its p-value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MAX_SEEDS = 100_000


ALTERNATIVES = ("two-sided", "greater", "less")


def _signed(delta: float, alternative: str) -> float:
    """The effect in the direction the test looks (two-sided: its size)."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative {alternative!r}; allowed: {', '.join(ALTERNATIVES)}")
    return abs(delta) if alternative == "two-sided" else (delta if alternative == "greater" else -delta)


def welch_power(
    n: int, delta: float, sd_a: float, sd_b: float, alpha: float = 0.05, alternative: str = "two-sided"
) -> float:
    """Power of the Welch t test at level alpha with n seeds per recipe (noncentral t); two-sided or one-sided
    in the direction `alternative` (an effect on the other side has power below alpha)."""
    var = sd_a**2 + sd_b**2
    if n < 2 or var == 0:
        return math.nan
    df = var**2 * (n - 1) / (sd_a**4 + sd_b**4)
    ncp = _signed(delta, alternative) / math.sqrt(var / n)
    if alternative != "two-sided":
        return float(stats.nct.sf(stats.t.isf(alpha, df), df, ncp))
    crit = stats.t.isf(alpha / 2, df)
    # the lower tail P(T <= -crit | ncp) as P(T >= crit | -ncp): scipy's nct.cdf returns NaN that far out
    # (ncp ~ 10-20), which made the power of a large effect NaN instead of ~1
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.sf(crit, df, -ncp))


def normal_seeds(
    delta: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided"
) -> float:
    """Closed-form (normal approximation) seeds per recipe, not rounded; inf for an effect on the wrong side."""
    effect = _signed(delta, alternative)
    if effect <= 0:
        return math.inf
    z = stats.norm.isf(alpha / 2 if alternative == "two-sided" else alpha) + stats.norm.ppf(power)
    return float(z**2 * (sd_a**2 + sd_b**2) / effect**2)


def seeds_for_power(
    delta: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided"
) -> int | None:
    """Smallest n per recipe with Welch power >= `power`; None when no n up to MAX_SEEDS reaches it (no effect,
    or one-sided with the effect on the other side)."""
    if not all(map(math.isfinite, (delta, sd_a, sd_b))) or _signed(delta, alternative) <= 0:
        return None
    if sd_a == 0 and sd_b == 0:
        return 2
    lo = max(2, math.floor(normal_seeds(delta, sd_a, sd_b, alpha, power, alternative)) - 2)
    if lo > MAX_SEEDS:
        return None
    n = lo
    while welch_power(n, delta, sd_a, sd_b, alpha, alternative) < power:  # a few steps above the approximation
        n += 1
        if n > MAX_SEEDS:
            return None
    while n > 2 and welch_power(n - 1, delta, sd_a, sd_b, alpha, alternative) >= power:
        n -= 1
    return n


def spread_seeds(
    a: Sequence[float], b: Sequence[float], direction: str, alpha: float = 0.05, power: float = 0.8,
    test: str = "brown_forsythe",
) -> int | None:  # fmt: skip
    """Seeds per recipe for the one-sided spread test (`test` = brown_forsythe | levene) to reach `power`: the
    t test of the absolute deviations from the median (mean), on the observed deviations."""
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2:
        return None
    za = np.abs(x - (np.median(x) if test == "brown_forsythe" else x.mean()))
    zb = np.abs(y - (np.median(y) if test == "brown_forsythe" else y.mean()))
    delta = float(za.mean() - zb.mean())
    return seeds_for_power(delta, float(za.std(ddof=1)), float(zb.std(ddof=1)), alpha, power, direction)


def fisher_power(n: int, p_a: float, p_b: float, alpha: float, direction: str) -> float:
    """Exact power of the one-sided Fisher test of a's degenerate rate `direction` b's with n runs per arm:
    the sum over both binomial counts (x, y) of P(x) P(y) [p(x, y) <= alpha], over the counts with any mass
    (binomial tails below 1e-12 left out)."""
    xs = np.arange(*_support(n, p_a))
    ys = np.arange(*_support(n, p_b))
    x, y = np.meshgrid(xs, ys, indexing="ij")
    if direction == "greater":  # P(X >= x) for X ~ hypergeometric(2n, x + y successes, n draws from a)
        p = stats.hypergeom.sf(x - 1, 2 * n, x + y, n)
    else:
        p = stats.hypergeom.cdf(x, 2 * n, x + y, n)
    weight = np.outer(stats.binom.pmf(xs, n, p_a), stats.binom.pmf(ys, n, p_b))
    return float(np.sum(weight * (p <= alpha)))


def _support(n: int, p: float, tail: float = 1e-12) -> tuple[int, int]:
    """[lo, hi) of the binomial(n, p) counts outside both tails of mass `tail`."""
    return int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p)) + 1


def fisher_seeds(
    k_a: int, n_a: int, k_b: int, n_b: int, direction: str, alpha: float = 0.05, power: float = 0.8,
    max_n: int = 1000,
) -> int | None:  # fmt: skip
    """Seeds per recipe for the one-sided Fisher test to reach `power` at the observed rates k_a/n_a, k_b/n_b;
    None when the rates differ the other way (or not at all) or no n up to max_n reaches it. Fisher's power is
    saw-toothed in n, so this is the smallest n found by doubling then bisection, not a guaranteed minimum."""
    if min(n_a, n_b) < 1:
        return None
    p_a, p_b = k_a / n_a, k_b / n_b
    if (p_a - p_b) * (1 if direction == "greater" else -1) <= 0:
        return None
    lo, hi = 1, 2
    while fisher_power(hi, p_a, p_b, alpha, direction) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            if fisher_power(max_n, p_a, p_b, alpha, direction) < power:
                return None
            hi = max_n
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fisher_power(mid, p_a, p_b, alpha, direction) >= power else (mid, hi)
    return hi


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if math.isfinite(v)], float)


@dataclass(frozen=True)
class SeedsNeeded:
    """Seeds per recipe the observed difference would need for the target power (Welch, `alternative`)."""

    delta: float  # mean(a) - mean(b)
    sd_a: float
    sd_b: float
    n_a: int
    n_b: int
    power_now: float  # at min(n_a, n_b) seeds, if the observed effect were the true one
    seeds_needed: int | None
    seeds_normal: float  # the closed-form approximation
    alpha: float = 0.05
    power: float = 0.8
    alternative: str = "two-sided"


def seeds_needed(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided"
) -> SeedsNeeded:
    """Seeds per recipe that the observed a - b difference would need (scores of each recipe's seeds)."""
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"seeds_needed: needs >= 2 finite scores per recipe, got {len(x)} and {len(y)}")
    delta, sa, sb = float(x.mean() - y.mean()), float(x.std(ddof=1)), float(y.std(ddof=1))
    return SeedsNeeded(
        delta,
        sa,
        sb,
        len(x),
        len(y),
        welch_power(min(len(x), len(y)), delta, sa, sb, alpha, alternative),
        seeds_for_power(delta, sa, sb, alpha, power, alternative),
        normal_seeds(delta, sa, sb, alpha, power, alternative),
        alpha,
        power,
        alternative,
    )
