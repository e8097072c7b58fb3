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
the cut}] / C(N, t), the second count summed over the cut level of the best such seed (`_tied_terms`);
E[best kept] and P(best kept) follow from these level probabilities. Ties at the cut are broken at
random, exactly (the tie group's order is uniform), so the table does not move with the seed.
The counts of every final level and every cut are summed at once per rule: a cut level holding one good
seed and no bad one contributes T[a, c] = sum_{j>=p} C(a, j) C(c, t-1-j) (a = bad seeds ahead, c = seeds
behind), read from one table per rule (t, p) shared by all configurations; only tied cut levels need the
sum over the tie group's composition. That is O(N^2) table reads per rule instead of O(N^2 t) arithmetic.
When t > N the seeds are drawn with replacement (Monte Carlo, `n_boot` draws, `method` says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import comb

from harness.analysis.seeds.describe import config_groups

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


def config_matrices(curves: pd.DataFrame, groups: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group of run ids: its (runs x evals) validation matrix, aligned on eval_index (the group's own
    eval indices, rows in the given order, the last non-NaN value of a repeated point), and each eval's median
    training fraction over the group's points. One pass over the curves for every group."""
    code = {run_id: (k, i) for k, ids in enumerate(groups) for i, run_id in enumerate(ids)}
    sub = curves[curves["run_id"].isin(code)]
    points = sub.groupby([sub["run_id"].astype(str), sub["eval_index"]], sort=False)["val_metric"].last()
    where = np.array([code[r] for r in points.index.get_level_values(0)], dtype=np.int64).reshape(-1, 2)
    evals = points.index.get_level_values(1).to_numpy(dtype=np.int64)
    values = points.to_numpy(dtype=float)
    config = np.array([code[r][0] for r in sub["run_id"].astype(str)], dtype=np.int64)
    medians = sub.groupby([config, sub["eval_index"].to_numpy(dtype=np.int64)])["fraction"].median()
    out = []
    for k, ids in enumerate(groups):
        mine = where[:, 0] == k
        cols = np.unique(evals[mine])
        mat = np.full((len(ids), cols.size), np.nan)
        mat[where[mine, 1], np.searchsorted(cols, evals[mine])] = values[mine]
        frac = medians.loc[k].reindex(cols).to_numpy(dtype=float) if cols.size else np.zeros(0)
        out.append((mat, frac))
    return out


def _finite_mean(x: np.ndarray) -> float:
    x = np.where(np.isneginf(x), np.nan, x)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _simulated(runs: pd.DataFrame) -> list[str]:
    return runs.loc[runs["status"].astype(str).isin(SIM_STATUSES), "run_id"].astype(str).tolist()


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


TABLE_CELLS = 4_000_000  # 32 MB per rule table: up to ~2,000 seeds in one configuration


class _Binomials:
    """C(n, k) for n <= n_max, k <= k_max (scipy's floating-point comb), and per rule (t, p) the table
    T[a, c] = sum_{j=p}^{t-1} C(a, j) C(c, t-1-j): the t-subsets holding one seed s, j >= p of the a bad seeds
    ahead of s at the cut and the rest from the c seeds behind it. The tables depend on (t, p) only, so one set
    serves every configuration and fraction."""

    def __init__(self, n_max: int, k_max: int) -> None:
        self.n = n_max + 1
        self.c = comb(np.arange(self.n)[:, None], np.arange(k_max + 1)[None, :])
        self._tables: dict[tuple[int, int], np.ndarray] = {}

    def lone(self, t: int, p: int, a: np.ndarray, c: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """T[a, c] per term (flat = a * (n_max + 1) + c): read from the rule's table, or summed per term when a
        table of (n_max + 1)^2 cells would not fit in TABLE_CELLS (a configuration of thousands of seeds)."""
        if self.n * self.n > TABLE_CELLS:
            return self.ahead_behind(t, p, 1, a, c)
        return self.table(t, p)[flat]

    def table(self, t: int, p: int) -> np.ndarray:
        """T of rule (t, p), flattened (index a * (n_max + 1) + c)."""
        if (t, p) not in self._tables:
            k = t - 1
            tab = self.c[:, p : k + 1] @ self.c[:, k - p :: -1].T if k >= p else np.zeros((self.n, self.n))
            self._tables[(t, p)] = tab.ravel()
        return self._tables[(t, p)]

    def ahead_behind(self, t: int, p: int, r: int, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """sum_{j=p}^{t-r} C(a, j) C(c, t-r-j) per pair (a, c): j bad seeds ahead, the rest of t - r behind."""
        k = t - r
        if k < p:
            return np.zeros(a.shape)
        return np.sum(self.c[a, p : k + 1] * self.c[c, k - p :: -1], axis=1)


@dataclass(frozen=True)
class _Pairs:
    """The terms of "no good seed kept" counts, one per (final level v, cut level e) holding a good seed: the bad
    seeds strictly ahead at the cut (a), the seeds of the universe strictly behind (c), the good (g) and bad (b)
    seeds tied at e; `level` indexes the count the term adds to."""

    level: np.ndarray
    a: np.ndarray
    c: np.ndarray
    g: np.ndarray
    b: np.ndarray

    def take(self, idx: np.ndarray) -> _Pairs:
        return _Pairs(*(x[idx] for x in (self.level, self.a, self.c, self.g, self.b)))


def _pairs(counts: np.ndarray, rows: slice, offset: int) -> _Pairs:
    """From counts[final level, cut level] (both ascending), the terms for the final levels v in `rows` of two
    counts per v: (1) at offset + v, behind P(best kept >= v): universe every seed, good = final >= v; (2) at
    offset + levels + v, behind P(the subset's best is kept): universe final <= v, good = final == v.
    Bad = final < v in both."""
    below = (np.cumsum(counts, axis=0) - counts)[rows]  # final < v, per cut level
    at = counts[rows]
    column = counts.sum(axis=0)
    ahead = np.cumsum(below[:, ::-1], axis=1)[:, ::-1] - below  # bad seeds at higher cut levels
    good = column[None, :] - below
    upto = below + at
    behind = (np.cumsum(column) - column)[None, :].repeat(len(at), axis=0), np.cumsum(upto, axis=1) - upto
    parts = []
    for k, (goods, behind_k) in enumerate(zip((good, at), behind, strict=True)):
        lv, le = np.nonzero(goods)
        level = lv + rows.start + offset + k * len(counts)
        parts.append((level, ahead[lv, le], behind_k[lv, le], goods[lv, le], below[lv, le]))
    return _Pairs(*(np.concatenate(x) for x in zip(*parts, strict=True)))


def _tied_terms(pairs: _Pairs, t: int, p: int, binom: _Binomials) -> np.ndarray:
    """Per term, the expected number of t-subsets holding at least one good seed but none among their best p
    at the cut, ties at the cut in random order, without the part of one good seed alone at e (g = 1, m = 0,
    which every term shares: see exact_rules). Summed over the subset's composition at the best cut level of a
    good seed present: j bad seeds ahead, g good and m bad tied there, the rest behind; the tie group puts its
    first good seed behind the cut with probability C(m, p - j) / C(m + g, p - j)."""
    out = np.zeros(pairs.a.shape)
    c = binom.c
    for g in range(1, min(int(pairs.g.max(initial=0)), t) + 1):
        with_g = np.flatnonzero(pairs.g >= g)
        for m in range(1 if g == 1 else 0, min(int(pairs.b[with_g].max(initial=0)), t - g) + 1):
            idx = with_g[pairs.b[with_g] >= m] if m else with_g
            a, behind, r = pairs.a[idx], pairs.c[idx], g + m
            ways = binom.ahead_behind(t, p, r, a, behind)  # j >= p bad seeds ahead: none of the tie group kept
            for need in range(1, min(p, m) + 1):  # j = p - need < p: the tie group's first `need` places are bad
                k = t - r - (p - need)
                if k >= 0:
                    ways = ways + c[a, p - need] * c[behind, k] * (comb(m, need) / comb(r, need))
            out[idx] += c[pairs.g[idx], g] * c[pairs.b[idx], m] * ways
    return out


def _level_mean(levels: np.ndarray, survival: np.ndarray) -> float:
    """E[X | X finite] from P(X >= v) at the sorted distinct values v of X (-inf = not finite)."""
    finite = np.isfinite(levels)
    if not finite.any():
        return float("nan")
    v, s = levels[finite], survival[finite]
    mass = s - np.r_[s[1:], 0.0]  # P(X == v)
    return float(np.sum(v * mass) / s[0]) if s[0] > 0 else float("nan")


PAIR_BLOCK = 4_000_000  # (final level x cut level) cells per block of terms: bounds the memory for many seeds


def exact_rules(
    final: np.ndarray, earlies: list[np.ndarray], rules: list[tuple[int, int]], binom: _Binomials | None = None
) -> list[dict[tuple[int, int], tuple[float, float, float]]]:
    """Per cut (one array of at-fraction scores each) and rule (t, p) with t <= N: (P(best kept), E[best final
    among the kept], E[best final of all t]) over all C(N, t) equally likely subsets of the N seeds, ties at the
    cut broken at random; -inf marks a NaN score (worst). The expectations are over the subsets whose best is
    finite. Every term of every cut is evaluated at once per rule: the part of one good seed alone at its cut
    level is g * T[a, c] (a table lookup), and only the terms with ties at the cut need the composition sum."""
    n = final.size
    binom = binom or _Binomials(n, max((t for t, _ in rules), default=0))
    levels, fv = np.unique(final, return_inverse=True)
    per_level = np.bincount(fv, minlength=levels.size)
    less = np.cumsum(per_level) - per_level  # seeds with final < v
    n_counts = 2 * len(earlies) * levels.size  # per cut: P(best kept >= v) counts, then P(best kept) counts
    no_good = {rule: np.zeros(n_counts) for rule in rules}
    for i, early in enumerate(earlies):
        cut_levels, fe = np.unique(early, return_inverse=True)
        counts = np.zeros((levels.size, cut_levels.size), dtype=np.int64)
        np.add.at(counts, (fv, fe), 1)
        step = max(1, PAIR_BLOCK // cut_levels.size)
        for start in range(0, levels.size, step):
            terms = _pairs(counts, slice(start, min(start + step, levels.size)), 2 * i * levels.size)
            flat = terms.a * binom.n + terms.c
            tied = terms.take(np.flatnonzero((terms.g > 1) | (terms.b > 0)))
            for t, p in rules:
                value = terms.g * binom.lone(t, p, terms.a, terms.c, flat)
                no_good[(t, p)] += np.bincount(terms.level, value, minlength=n_counts)
                if tied.a.size:
                    no_good[(t, p)] += np.bincount(tied.level, _tied_terms(tied, t, p, binom), minlength=n_counts)
    out: list[dict[tuple[int, int], tuple[float, float, float]]] = [{} for _ in earlies]
    for t, p in rules:
        total, none = binom.c[n, t], binom.c[less, t]
        with_top = binom.c[less + per_level, t] - none
        best_all = _level_mean(levels, 1 - none / total)
        for i, counts in enumerate(no_good[(t, p)].reshape(len(earlies), 2, levels.size)):
            p_best = float(np.sum((with_top - counts[1]) / total))
            out[i][(t, p)] = (p_best, _level_mean(levels, 1 - (none + counts[0]) / total), best_all)
    return out


def exact_rule(final: np.ndarray, early: np.ndarray, t: int, p: int) -> tuple[float, float, float]:
    """exact_rules for one cut and one rule (t, p)."""
    return exact_rules(final, [early], [(t, p)])[0][(t, p)]


def _best_of(final: np.ndarray, t: int, binom: _Binomials) -> float:
    """E[best final of t seeds drawn without replacement | finite]."""
    levels, counts = np.unique(final, return_counts=True)
    less = np.cumsum(counts) - counts
    return _level_mean(levels, 1 - binom.c[less, t] / binom.c[final.size, t])


def _simulate_grid(
    mat: np.ndarray, frac: np.ndarray, rules: list[tuple[int, float, int]], n_boot: int, seed: int,
    binom: _Binomials | None = None,
) -> list[EarlyStopResult]:  # fmt: skip
    """All rules on one configuration; draws of seeds are shared by rules with the same n_start."""
    for t, f, p in rules:
        if not 0 < f <= 1 or not 1 <= p <= t:
            raise ValueError(f"need 0 < fraction <= 1 and 1 <= keep <= n_start, got f={f}, p={p}, t={t}")
    n = mat.shape[0]
    binom = binom or _Binomials(n, max(t for t, _, _ in rules))
    out: dict[tuple[int, float, int], EarlyStopResult] = {}
    scores = {f: _final_and_early(mat, frac, f) for f in dict.fromkeys(f for _, f, _ in rules)}
    exact = [(t, f, p) for t, f, p in rules if t <= n]
    cuts = list(dict.fromkeys(f for _, f, _ in exact))
    if exact:
        final = scores[cuts[0]][0]
        pairs = list(dict.fromkeys((t, p) for t, _, p in exact))
        found = exact_rules(final, [scores[f][1] for f in cuts], pairs, binom)
        for t, f, p in exact:
            p_best, best_kept, best_all = found[cuts.index(f)][(t, p)]
            cost = t * f + p * (1 - f)
            budget = max(1, int(np.floor(cost + 1e-9)))
            same_budget = _best_of(final, budget, binom) if budget <= n else float("nan")
            out[(t, f, p)] = EarlyStopResult(
                t,
                float(f),
                p,
                float(cost),
                float(1 - cost / t),
                p_best,
                best_kept,
                best_all,
                same_budget,
                n,
                0,
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
    mat, frac = config_matrices(curves, [_simulated(runs)])[0]
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
    configs = config_groups(runs)
    matrices = config_matrices(curves, [_simulated(g) for _, _, g in configs])
    sizes = [mat.shape[0] for mat, _ in matrices]
    binom = _Binomials(max(sizes, default=0), max([t for t, _, _ in grid] + sizes, default=0))
    for i, ((task, recipe, _), (mat, frac)) in enumerate(zip(configs, matrices, strict=True)):
        if mat.shape[0] == 0 or np.isnan(mat).all():
            continue
        n = mat.shape[0]
        rules = grid
        if n >= 2 and all(t > n for t, _, _ in grid):  # too few runs stored for the grid: the exact rules at t = n
            rules = [*grid, *((n, f, p) for f in dict.fromkeys(f for _, f, _ in grid) for p in range(1, n))]
        for res in _simulate_grid(mat, frac, rules, n_boot, seed + 100_003 * i, binom):
            rows.append({"task": task, "recipe": recipe, "config_key": f"{task}/{recipe}", **asdict(res)})
    columns = ["task", "recipe", "config_key", *EarlyStopResult.__dataclass_fields__]
    return pd.DataFrame(rows, columns=columns)
