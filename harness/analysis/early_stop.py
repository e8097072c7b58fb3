"""Early-stopping simulation from stored curves (Dodge et al. 2020, section 6).

Rule (t, f, p): start t seeds, evaluate all of them after a fraction f of training, train only the
best p to the end. Cost in full runs: t f + p (1 - f); saved = 1 - cost / t. Over draws of t seeds
from the N stored runs we record whether the seed that would have been best after full training
survives the cut, and the best final score among the kept. A seed's score at f is its latest
evaluation at or before f; its final score is the best validation score of the whole curve (the
selected checkpoint). NaN counts as worst. Runs that failed or were stopped early (incomplete
curves) are left out.

Exact when t <= N (`method` = "exact"): every one of the C(N, t) subsets is equally likely, and
P(best kept >= v) = 1 - [C(#{final < v}, t) + #{subsets with a seed >= v, none of them in the best p at
the cut}] / C(N, t), the second count summed over the cut level of the best such seed (`_no_good_in_top`);
E[best kept] and P(best kept) follow from these level probabilities. Ties at the cut are broken at
random, exactly (the tie group's order is uniform), so the table does not move with the seed.
When t > N the seeds are drawn with replacement (Monte Carlo, `n_boot` draws, `method` says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import comb

from harness.analysis.describe import config_groups

SIM_STATUSES = ("done", "diverged")


@dataclass(frozen=True)
class EarlyStopResult:
    n_start: int
    fraction: float
    keep: int
    cost_in_full_runs: float
    saved_fraction: float
    p_best_survives: float
    expected_best_score: float  # E[best final score among the kept]
    expected_best_all: float  # E[best final score had all n_start been trained to the end]
    expected_best_same_budget: float  # E[best of floor(cost) fully trained seeds]
    n_runs: int
    n_boot: int
    method: str = "exact"  # "exact" (over all subsets) or "monte carlo (with replacement)"


def curve_matrix(curves: pd.DataFrame, run_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(runs x evals) validation matrix aligned on eval_index, and each eval's median training fraction."""
    run_ids = list(run_ids)
    sub = curves[curves["run_id"].isin(run_ids)]
    mat = sub.pivot_table(index="run_id", columns="eval_index", values="val_metric", aggfunc="last", dropna=False)
    mat = mat.reindex(index=run_ids)
    frac = sub.groupby("eval_index")["fraction"].median().reindex(mat.columns)
    return mat.to_numpy(dtype=float), frac.to_numpy(dtype=float)


def _finite_mean(x: np.ndarray) -> float:
    x = np.where(np.isneginf(x), np.nan, x)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _prepare(curves: pd.DataFrame, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    runs = runs[runs["status"].astype(str).isin(SIM_STATUSES)]
    return curve_matrix(curves, runs["run_id"].astype(str))


def _final_and_early(mat: np.ndarray, frac: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Final (best over the curve) and at-fraction (latest eval at or before f) scores, -inf for NaN."""
    filled = np.where(np.isnan(mat), -np.inf, mat)
    final = filled.max(axis=1) if mat.shape[1] else np.full(mat.shape[0], -np.inf)
    seen = np.flatnonzero(frac <= fraction + 1e-9)
    early = np.full(final.shape, -np.inf)
    if seen.size:
        has = ~np.isnan(mat[:, seen])
        last = seen.size - 1 - np.argmax(has[:, ::-1], axis=1)
        early = np.where(has.any(axis=1), filled[np.arange(mat.shape[0]), seen[last]], -np.inf)
    return final, early


def _no_good_in_top(universe: np.ndarray, good: np.ndarray, early: np.ndarray, t: int, p: int) -> float:
    """Expected number of t-subsets of `universe` (bool mask) holding at least one `good` seed but none among their
    best p at the cut, ties at the cut in random order. Sums over the best cut level e of a good seed present:
    j bad seeds ahead of e, g good and m bad tied at e, the rest behind; the tie group puts its first good seed
    behind the cut with probability C(m, p - j) / C(m + g, p - j)."""
    bad = universe & ~good
    levels = np.unique(early[universe & good])
    if levels.size == 0:
        return 0.0
    col = levels[:, None]
    a = np.sum(bad[None, :] & (early[None, :] > col), axis=1)[:, None]  # bad seeds ahead of the level
    g_at = np.sum((universe & good)[None, :] & (early[None, :] == col), axis=1)[:, None]
    b_at = np.sum(bad[None, :] & (early[None, :] == col), axis=1)[:, None]
    c = np.sum(universe[None, :] & (early[None, :] < col), axis=1)[:, None]  # any seed behind the level
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


def exact_rule(final: np.ndarray, early: np.ndarray, t: int, p: int) -> tuple[float, float, float]:
    """(P(best kept), E[best final among the kept], E[best final of all t]) over all C(N, t) equally likely subsets
    of the N seeds (t <= N), ties at the cut broken at random; -inf marks a NaN score (worst). The expectations
    are over the subsets whose best is finite."""
    n = final.size
    total = comb(n, t)
    everyone = np.ones(n, dtype=bool)
    p_best = 0.0
    levels = np.unique(final)
    surv_kept, surv_all = [], []  # P(best kept >= v), P(best of t >= v) per level v
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


def _level_mean(levels: np.ndarray, survival: np.ndarray) -> float:
    """E[X | X finite] from P(X >= v) at the sorted distinct values v of X (-inf = not finite)."""
    finite = np.isfinite(levels)
    if not finite.any():
        return float("nan")
    v, s = levels[finite], survival[finite]
    mass = s - np.r_[s[1:], 0.0]  # P(X == v)
    return float(np.sum(v * mass) / s[0]) if s[0] > 0 else float("nan")


def _simulate_grid(
    mat: np.ndarray, frac: np.ndarray, rules: list[tuple[int, float, int]], n_boot: int, seed: int
) -> list[EarlyStopResult]:
    """All rules on one configuration; draws of seeds are shared by rules with the same n_start."""
    for t, f, p in rules:
        if not 0 < f <= 1 or not 1 <= p <= t:
            raise ValueError(f"need 0 < fraction <= 1 and 1 <= keep <= n_start, got f={f}, p={p}, t={t}")
    n = mat.shape[0]
    out: dict[tuple[int, float, int], EarlyStopResult] = {}
    scores = {f: _final_and_early(mat, frac, f) for f in dict.fromkeys(f for _, f, _ in rules)}
    for t, f, p in rules:
        if t > n:
            continue
        final, early = scores[f]
        cost = t * f + p * (1 - f)
        budget = max(1, int(np.floor(cost + 1e-9)))
        p_best, best_kept, best_all = exact_rule(final, early, t, p)
        same_budget = exact_rule(final, early, budget, budget)[2] if budget <= n else float("nan")
        out[(t, f, p)] = EarlyStopResult(
            t, float(f), p, float(cost), float(1 - cost / t), p_best, best_kept, best_all, same_budget, n, 0, "exact"
        )
    for t in dict.fromkeys(t for t, _, _ in rules if t > n):
        rng = np.random.default_rng(seed + t)
        idx = rng.integers(0, n, (n_boot, t))  # more seeds started than stored: draws with replacement
        final = next(iter(scores.values()))[0]
        fin = final[idx]
        best_all = fin.max(axis=1)
        for f in dict.fromkeys(f for t_, f, _ in rules if t_ == t):
            order = np.argsort(-scores[f][1][idx], axis=1, kind="stable")  # idx rows are random: random ties
            running_best = np.maximum.accumulate(np.take_along_axis(fin, order, axis=1), axis=1)
            for p in dict.fromkeys(p for t_, f_, p in rules if t_ == t and f_ == f):
                best_kept = running_best[:, p - 1]
                cost = t * f + p * (1 - f)
                budget = max(1, int(np.floor(cost + 1e-9)))
                out[(t, f, p)] = EarlyStopResult(
                    t, float(f), p, float(cost), float(1 - cost / t), float(np.mean(best_kept >= best_all)),
                    _finite_mean(best_kept), _finite_mean(best_all), _finite_mean(fin[:, :budget].max(axis=1)),
                    n, n_boot, "monte carlo (with replacement)",
                )  # fmt: skip
    return [out[r] for r in rules]


def simulate_early_stopping(
    curves: pd.DataFrame, runs: pd.DataFrame, *, n_start: int, fraction: float, keep: int, n_boot: int = 1000,
    seed: int = 0,
) -> EarlyStopResult:  # fmt: skip
    """Simulate the rule (t=n_start, f=fraction, p=keep) on the runs of ONE configuration."""
    keys = runs["config_key"].astype(str).unique()
    if len(keys) > 1:
        raise ValueError(f"simulate_early_stopping takes one configuration, got {list(keys)}; see early_stopping_table")
    mat, frac = _prepare(curves, runs)
    if mat.shape[0] == 0:
        raise ValueError("no done/diverged runs with curves to simulate from")
    return _simulate_grid(mat, frac, [(n_start, fraction, keep)], n_boot, seed)[0]


def early_stopping_table(
    curves: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    n_start: Iterable[int] = (5, 10, 20, 40),
    fractions: Iterable[float] = (0.1, 0.2, 0.25, 0.3, 0.5),
    keep: Iterable[int] = (1, 2, 5, 10),
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The grid of rules (keep < n_start: keeping every seed stops nothing) for every configuration with curves;
    a configuration with fewer stored runs than every n_start also gets the exact rules at n_start = its runs."""
    rows = []
    grid = [(t, f, p) for t in n_start for f in fractions for p in keep if p < t]
    for i, (task, recipe, g) in enumerate(config_groups(runs)):
        mat, frac = _prepare(curves, g)
        if mat.shape[0] == 0 or np.isnan(mat).all():
            continue
        n = mat.shape[0]
        rules = grid
        if n >= 2 and all(t > n for t, _, _ in grid):  # too few runs stored for the grid: the exact rules at t = n
            rules = [*grid, *((n, f, p) for f in dict.fromkeys(f for _, f, _ in grid) for p in range(1, n))]
        for res in _simulate_grid(mat, frac, rules, n_boot, seed + 100_003 * i):
            rows.append({"task": task, "recipe": recipe, "config_key": f"{task}/{recipe}", **asdict(res)})
    columns = ["task", "recipe", "config_key", *EarlyStopResult.__dataclass_fields__]
    return pd.DataFrame(rows, columns=columns)
