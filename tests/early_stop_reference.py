"""The exact early-stopping rule as first written (one level of the final score at a time, loops over the tie
group's composition), kept as an oracle for the table-based implementation in harness/analysis/seeds/early_stop.py."""

from __future__ import annotations

import numpy as np
from scipy.special import comb

from harness.analysis.seeds.early_stop import _level_mean  # unchanged: levels and survival to a mean


def _no_good_in_top(universe: np.ndarray, good: np.ndarray, early: np.ndarray, t: int, p: int) -> float:
    bad = universe & ~good
    levels = np.unique(early[universe & good])
    if levels.size == 0:
        return 0.0
    col = levels[:, None]
    a = np.sum(bad[None, :] & (early[None, :] > col), axis=1)[:, None]
    g_at = np.sum((universe & good)[None, :] & (early[None, :] == col), axis=1)[:, None]
    b_at = np.sum(bad[None, :] & (early[None, :] == col), axis=1)[:, None]
    c = np.sum(universe[None, :] & (early[None, :] < col), axis=1)[:, None]
    j = np.arange(min(int(a.max()), t) + 1)[None, :]
    need = p - j
    total = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for g in range(1, min(int(g_at.max()), t) + 1):
            for m in range(min(int(b_at.max()), t) + 1):
                w = np.where(need <= 0, 1.0, comb(m, need) / comb(m + g, need))
                ways = comb(a, j) * comb(g_at, g) * comb(b_at, m) * comb(c, t - j - g - m)
                total += float(np.sum(np.nan_to_num(w) * ways))
    return total


def reference_exact_rule(final: np.ndarray, early: np.ndarray, t: int, p: int) -> tuple[float, float, float]:
    """(P(best kept), E[best kept], E[best of all t]) over all C(N, t) subsets, ties at the cut at random."""
    n = final.size
    total = comb(n, t)
    everyone = np.ones(n, dtype=bool)
    p_best = 0.0
    levels = np.unique(final)
    surv_kept, surv_all = [], []
    for v in levels:
        top = final == v
        below_or_at = final <= v
        with_top = comb(int(below_or_at.sum()), t) - comb(int((final < v).sum()), t)
        p_best += (with_top - _no_good_in_top(below_or_at, top, early, t, p)) / total
        at_least = final >= v
        none = comb(int((~at_least).sum()), t)
        surv_all.append(1 - none / total)
        surv_kept.append(1 - (none + _no_good_in_top(everyone, at_least, early, t, p)) / total)
    return float(p_best), _level_mean(levels, np.array(surv_kept)), _level_mean(levels, np.array(surv_all))
