"""How many seeds the observed effect would need: power of Welch's t test between two recipes.

With n seeds per recipe, means differing by delta and standard deviations s_a, s_b, Welch's statistic
follows a noncentral t with noncentrality delta / sqrt((s_a^2 + s_b^2) / n) and the Welch-Satterthwaite
degrees of freedom (s_a^2 + s_b^2)^2 (n - 1) / (s_a^4 + s_b^4). The normal approximation
n = (z_{1-alpha/2} + z_{power})^2 (s_a^2 + s_b^2) / delta^2 is the closed form it converges to.
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


def welch_power(n: int, delta: float, sd_a: float, sd_b: float, alpha: float = 0.05) -> float:
    """Power of the two-sided Welch t test at level alpha with n seeds per recipe (noncentral t)."""
    var = sd_a**2 + sd_b**2
    if n < 2 or var == 0:
        return math.nan
    df = var**2 * (n - 1) / (sd_a**4 + sd_b**4)
    ncp = abs(delta) / math.sqrt(var / n)
    crit = stats.t.isf(alpha / 2, df)
    # the lower tail P(T <= -crit | ncp) as P(T >= crit | -ncp): scipy's nct.cdf returns NaN that far out
    # (ncp ~ 10-20), which made the power of a large effect NaN instead of ~1
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.sf(crit, df, -ncp))


def normal_seeds(delta: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Closed-form (normal approximation) seeds per recipe, not rounded."""
    if delta == 0:
        return math.inf
    z = stats.norm.isf(alpha / 2) + stats.norm.ppf(power)
    return float(z**2 * (sd_a**2 + sd_b**2) / delta**2)


def seeds_for_power(delta: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Smallest n per recipe with Welch power >= `power`; None when no n up to MAX_SEEDS reaches it."""
    if delta == 0 or not all(map(math.isfinite, (delta, sd_a, sd_b))):
        return None
    if sd_a == 0 and sd_b == 0:
        return 2
    lo = max(2, math.floor(normal_seeds(delta, sd_a, sd_b, alpha, power)) - 2)
    if lo > MAX_SEEDS:
        return None
    n = lo
    while welch_power(n, delta, sd_a, sd_b, alpha) < power:  # a few steps above the normal approximation
        n += 1
        if n > MAX_SEEDS:
            return None
    while n > 2 and welch_power(n - 1, delta, sd_a, sd_b, alpha) >= power:
        n -= 1
    return n


@dataclass(frozen=True)
class SeedsNeeded:
    """Seeds per recipe the observed difference would need for the target power (two-sided Welch)."""

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


def seeds_needed(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> SeedsNeeded:
    """Seeds per recipe that the observed a - b difference would need (scores of each recipe's seeds)."""
    x = np.asarray([v for v in a if math.isfinite(v)], float)
    y = np.asarray([v for v in b if math.isfinite(v)], float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"seeds_needed: needs >= 2 finite scores per recipe, got {len(x)} and {len(y)}")
    delta, sa, sb = float(x.mean() - y.mean()), float(x.std(ddof=1)), float(y.std(ddof=1))
    return SeedsNeeded(
        delta,
        sa,
        sb,
        len(x),
        len(y),
        welch_power(min(len(x), len(y)), delta, sa, sb, alpha),
        seeds_for_power(delta, sa, sb, alpha, power),
        normal_seeds(delta, sa, sb, alpha, power),
        alpha,
        power,
    )
