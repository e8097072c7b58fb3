"""Two-configuration comparisons as frozen records, and Holm's correction across a table.

`a` is the candidate and `b` the reference: effects are a - b (or a / b, P(a > b)). Tests come from
scipy.stats; written here are only Holm's step-down adjustment, the probability of improvement
bootstrap and ASO (see aso.py). Records without a p-value (bootstrap CIs, P(a > b), ASO) carry NaN
and are left out of Holm's family.

Families: the comparison tables are exploratory and keep every test, two-sided. Holm's family is one
method across the pairs of a table (e.g. every Welch test of the table), so a Welch test never shares
a family with a Levene or Fisher test of another question; `family` names it. A verdict on a paper's
claim does not read these: it runs one pre-declared one-sided test per claim (see verdicts/protocol.py).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats

from harness.analysis.seeds.degenerate import is_degenerate
from harness.analysis.seeds.describe import COUNTED_STATUSES
from harness.analysis.stats.aso import aso
from harness.analysis.stats.bootstrap import NAN_INTERVAL, bootstrap_ci, mean_diff, std_ratio

NAN = float("nan")


@dataclass(frozen=True)
class Comparison:
    """One test of a against b, rendered the same way whatever the method."""

    method: str
    statistic: float
    pvalue: float
    p_adjusted: float
    effect: float
    effect_name: str
    ci_lo: float
    ci_hi: float
    n_a: int
    n_b: int
    note: str = ""
    family: str = ""  # the Holm family p_adjusted was computed in


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values; NaNs stay NaN and are not counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def probability_of_improvement(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 for X ~ a, Y ~ b (the Mann-Whitney U / (n m)); vectorised over leading axes."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    na, nb = a.shape[-1], b.shape[-1]
    ranks = stats.rankdata(np.concatenate((a, b), axis=-1), axis=-1)
    u = ranks[..., :na].sum(axis=-1) - na * (na + 1) / 2
    return u / (na * nb)


def bootstrap_poi(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of P(a > b): resample counts c_a, c_b (multinomial, i.e. draws with
    replacement) and evaluate c_a K c_b / (n m) with K[i, j] = [a_i > b_j] + [a_i = b_j] / 2."""
    rng = np.random.default_rng(seed)
    kernel = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    ca, cb = _counts(rng, a.size, n_boot), _counts(rng, b.size, n_boot)
    return np.sum((ca @ kernel) * cb, axis=1) / (a.size * b.size)


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) multiplicities of each value in resamples of size n drawn with replacement."""
    flat = (np.arange(n_boot)[:, None] * n + rng.integers(0, n, (n_boot, n))).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)


def permutation_mean_diff(
    a: np.ndarray, b: np.ndarray, n_perm: int = 9999, seed: int = 0, batch: int = 2000, alternative: str = "two-sided"
):
    """Permutation test of mean(a) - mean(b) (`alternative` as in scipy). Exact (scipy.stats.permutation_test)
    when the number of distinct splits is at most n_perm; otherwise Monte Carlo vectorised with numpy, with
    scipy's p-value convention (p = (1 + #null at least as extreme) / (n_perm + 1) per tail, two-sided = 2 min)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    if min(a.size, b.size) >= 2 and math.comb(a.size + b.size, a.size) <= n_perm:
        return _quiet(
            stats.permutation_test, (a, b), mean_diff, vectorized=True, n_resamples=n_perm, rng=rng,
            alternative=alternative,
        )  # fmt: skip
    observed = float(np.mean(a) - np.mean(b))
    pooled = np.concatenate([a, b])
    null = np.empty(n_perm)
    for start in range(0, n_perm, batch):
        rows = min(batch, n_perm - start)
        perm = rng.permuted(np.broadcast_to(pooled, (rows, pooled.size)), axis=1)
        null[start : start + rows] = perm[:, : a.size].mean(axis=1) - perm[:, a.size :].mean(axis=1)
    eps = abs(np.finfo(float).eps * 100 * observed)  # scipy's tolerance for ties with the observed value
    p_greater = (np.sum(null >= observed - eps) + 1) / (n_perm + 1)
    p_less = (np.sum(null <= observed + eps) + 1) / (n_perm + 1)
    p = {"greater": p_greater, "less": p_less}.get(alternative, min(1.0, 2 * min(p_greater, p_less)))
    return _PermResult(observed, float(p), null)


@dataclass(frozen=True)
class _PermResult:
    statistic: float
    pvalue: float
    null_distribution: np.ndarray


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _record(method: str, stat, p, effect, effect_name: str, ci=NAN_INTERVAL, na=0, nb=0, note="") -> Comparison:
    return Comparison(method, float(stat), float(p), NAN, float(effect), effect_name, ci.lo, ci.hi, na, nb, note)


@dataclass(frozen=True)
class _CI:
    lo: float
    hi: float


def compare(
    a: np.ndarray,
    b: np.ndarray,
    *,
    degenerate_a: np.ndarray | None = None,
    degenerate_b: np.ndarray | None = None,
    n_boot: int = 2000,
    n_perm: int = 9999,
    n_boot_aso: int = 1000,
    seed: int = 0,
) -> list[Comparison]:
    """All comparisons of scores a against b (NaNs dropped and noted), two-sided. Each method is its own
    family here (p_adjusted = p); compare_table adjusts each method across the pairs of its table.

    Fisher's exact test on degenerate counts is included when both degenerate flag arrays are given
    (they cover every counted run, diverged ones included)."""
    a_all, b_all = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a_all[~np.isnan(a_all)], b_all[~np.isnan(b_all)]
    na, nb = a.size, b.size
    dropped = (a_all.size - na, b_all.size - nb)
    note = f"dropped NaN scores: a={dropped[0]}, b={dropped[1]}" if any(dropped) else ""
    out: list[Comparison] = []
    diff = float(np.mean(a) - np.mean(b)) if na and nb else NAN
    sd_ratio = float(std_ratio(a, b)) if na > 1 and nb > 1 else NAN

    if na > 1 and nb > 1:
        t = _quiet(stats.ttest_ind, a, b, equal_var=False)
        ci = _quiet(t.confidence_interval)
        out.append(_record("welch_t", t.statistic, t.pvalue, diff, "mean_diff", _CI(ci.low, ci.high), na, nb, note))
    else:
        out.append(_record("welch_t", NAN, NAN, diff, "mean_diff", na=na, nb=nb, note="needs n >= 2 per side"))

    if na and nb:
        u = _quiet(stats.mannwhitneyu, a, b, alternative="two-sided")
        rb = 2 * u.statistic / (na * nb) - 1
        out.append(_record("mann_whitney_u", u.statistic, u.pvalue, rb, "rank_biserial", na=na, nb=nb, note=note))
        perm = permutation_mean_diff(a, b, n_perm=n_perm, seed=seed)
        out.append(_record("permutation_mean_diff", perm.statistic, perm.pvalue, diff, "mean_diff", na=na, nb=nb))
    else:
        for m, name in (("mann_whitney_u", "rank_biserial"), ("permutation_mean_diff", "mean_diff")):
            out.append(_record(m, NAN, NAN, NAN, name, na=na, nb=nb, note="empty sample"))

    ci = bootstrap_ci((a, b), mean_diff, n_boot=n_boot, seed=seed + 1)
    out.append(_record("bootstrap_mean_diff", diff, NAN, diff, "mean_diff", ci, na, nb, ci.method))
    ci = bootstrap_ci((a, b), std_ratio, n_boot=n_boot, seed=seed + 2)
    out.append(_record("bootstrap_std_ratio", sd_ratio, NAN, sd_ratio, "std_ratio", ci, na, nb, ci.method))

    for method, center in (("levene", "mean"), ("brown_forsythe", "median")):
        if na > 1 and nb > 1:
            lev = _quiet(stats.levene, a, b, center=center)
            out.append(_record(method, lev.statistic, lev.pvalue, sd_ratio, "std_ratio", na=na, nb=nb))
        else:
            out.append(_record(method, NAN, NAN, sd_ratio, "std_ratio", na=na, nb=nb, note="needs n >= 2 per side"))

    if degenerate_a is not None and degenerate_b is not None:
        da, db = np.asarray(degenerate_a, dtype=bool), np.asarray(degenerate_b, dtype=bool)
        table = np.array([[da.sum(), da.size - da.sum()], [db.sum(), db.size - db.sum()]])
        fisher = stats.fisher_exact(table)
        try:
            orr = _quiet(stats.contingency.odds_ratio, table, kind="conditional")
            ci_or = _quiet(orr.confidence_interval)
            effect, ci = orr.statistic, _CI(ci_or.low, ci_or.high)
        except ValueError:
            effect, ci = NAN, NAN_INTERVAL
        txt = f"degenerate {int(da.sum())}/{da.size} vs {int(db.sum())}/{db.size}"
        out.append(
            _record("fisher_exact_degenerate", fisher.statistic, fisher.pvalue, effect, "odds_ratio", ci, da.size,
                    db.size, txt)
        )  # fmt: skip

    if na and nb:
        poi = float(probability_of_improvement(a, b))
        ci = _CI(*np.percentile(bootstrap_poi(a, b, n_boot, seed + 3), [2.5, 97.5]))
        out.append(_record("prob_improvement", poi, NAN, poi, "P(a>b)", ci, na, nb, "percentile bootstrap"))
        res = aso(a, b, n_boot=n_boot_aso, seed=seed + 4)
        out.append(
            _record("aso", res.eps_min, NAN, res.violation_ratio, "eps_W2", na=na, nb=nb,
                    note="a better than b when eps_min < 0.5 (0.2 strict)")
        )  # fmt: skip
    return [
        dataclasses.replace(c, p_adjusted=c.pvalue, family=f"{c.method}, 1 pair" if np.isfinite(c.pvalue) else "")
        for c in out
    ]


COMPARE_COLUMNS = ["task", "a", "b", *[f.name for f in dataclasses.fields(Comparison)]]


def compare_table(
    runs: pd.DataFrame,
    baseline: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    n_boot_aso: int = 1000,
    seed: int = 0,
    n_jobs: int = 2,
) -> pd.DataFrame:
    """Every recipe against the baseline recipe within each task, all methods; Holm per method across the
    table's pairs (`family` names the family: one method, all pairs).

    Default baseline: the first recipe in `runs`; a task without it uses its own first recipe."""
    counted = runs[runs["status"].astype(str).isin(COUNTED_STATUSES)]
    degenerate = is_degenerate(counted, thresholds)
    recipes_all = list(dict.fromkeys(counted["recipe"].astype(str)))
    jobs = []
    for i, (task, task_rows) in enumerate(counted.groupby(counted["task"].astype(str), sort=False)):
        recipes = list(dict.fromkeys(task_rows["recipe"].astype(str)))
        base = baseline if baseline is not None else (recipes_all[0] if recipes_all else None)
        if base not in recipes:
            if baseline is not None:
                continue
            base = recipes[0]
        by_recipe = {r: g for r, g in task_rows.groupby(task_rows["recipe"].astype(str), sort=False)}
        ref = by_recipe[base]
        for j, recipe in enumerate(r for r in recipes if r != base):
            cand = by_recipe[recipe]
            args = (
                cand["score"].to_numpy(dtype=float),
                ref["score"].to_numpy(dtype=float),
                degenerate.loc[cand.index].to_numpy(),
                degenerate.loc[ref.index].to_numpy(),
            )
            jobs.append(((task, recipe, base), args, seed + 1009 * i + 31 * j))
    kw = {"n_boot": n_boot, "n_perm": n_perm, "n_boot_aso": n_boot_aso}
    # numpy releases the GIL in the heavy kernels, so threads help without pickling the samples
    results = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(compare)(x, y, degenerate_a=da, degenerate_b=db, seed=s, **kw) for _, (x, y, da, db), s in jobs
    )
    rows = [
        {"task": task, "a": recipe, "b": base, **dataclasses.asdict(c)}
        for ((task, recipe, base), _, _), res in zip(jobs, results, strict=True)
        for c in res
    ]
    return holm_by_method(pd.DataFrame(rows, columns=COMPARE_COLUMNS))


def holm_by_method(frame: pd.DataFrame) -> pd.DataFrame:
    """p_adjusted and family per method: Holm across the rows (pairs) of one method; NaN p-values left out."""
    frame = frame.copy()
    frame["family"] = ""
    for method, rows in frame.groupby(frame["method"].astype(str), sort=False):
        p = rows["pvalue"].to_numpy(dtype=float)
        frame.loc[rows.index, "p_adjusted"] = holm(p)
        m = int(np.isfinite(p).sum())
        if m:
            frame.loc[rows.index[np.isfinite(p)], "family"] = f"{method}, {m} pair{'s' if m > 1 else ''}"
    return frame
