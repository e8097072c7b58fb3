"""Dodge et al. 2020's claims as statistics of one configuration, each with a bootstrap CI and a one-sided test.

- `variance_share`: share of the score variance from the weight-init seed minus the share from the data-order
  seed (harness/analysis/seeds/decomposition.py), over the NON-degenerate runs of an init x order grid (a collapsed
  run is a failure, not variance of a working model). CI and p from the two-way ("pigeonhole") bootstrap that
  resamples init levels and order levels independently (Owen 2007), the resampling that respects a crossed
  design.
- `expected_max_gain`: E[best of n seeds] - E[best of 1 seed] (= the mean) of the validation score the
  experiment reports (harness/analysis/seeds/emp.py: diverged runs at their degenerate value); bootstrap over runs.
- `early_stopping_gain`: E[best final score | start t, stop all at fraction f, train the best p to the end]
  minus E[best of floor(t f + p (1 - f)) seeds trained fully], the budget-matched alternative
  (harness/analysis/seeds/early_stop.py, exact over subsets). Its CI and p: bootstrap over runs (their curves), each
  resample evaluated by MC_DRAWS Monte Carlo draws of t seeds without replacement, the alternative's seeds the
  first of the same draw (paired); the Monte Carlo error only widens the interval.

Tests, one-sided in the claim's direction, against `margin` (0 unless declared): "greater" p = (1 + #{T* <=
margin}) / (B + 1), "less" with >=, "comparable" (equivalence, two one-sided tests) the larger of the two
tails beyond +-margin. The CI is the 95% percentile interval of the B resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.seeds.decomposition import complete_grid, decompose_grid
from harness.analysis.seeds.early_stop import _final_and_early, config_matrices, exact_rule
from harness.analysis.seeds.emp import _scores, max_weights, reported_val_column

NAN = float("nan")
MC_DRAWS = 400


@dataclass(frozen=True)
class OneStat:
    """A one-configuration statistic: point effect, 95% CI, one-sided p, runs used, and why it is missing."""

    effect: float
    ci_lo: float
    ci_hi: float
    p: float
    n_used: int
    detail: str = ""
    missing: str = ""  # why the statistic cannot be computed here ("" when it can)


def _missing(why: str, n: int = 0) -> OneStat:
    return OneStat(NAN, NAN, NAN, NAN, n, missing=why)


def tail_p(boot: np.ndarray, direction: str, margin: float = 0.0) -> float:
    """One-sided bootstrap p of `effect <direction> margin` (comparable: |effect| < margin, the larger tail)."""
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return NAN
    below = (1 + np.sum(boot <= (-margin if direction == "comparable" else margin))) / (boot.size + 1)
    above = (1 + np.sum(boot >= margin)) / (boot.size + 1)
    return float({"greater": below, "less": above}.get(direction, max(below, above)))


def _ci(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    return (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) if boot.size else (NAN, NAN)


def share_difference(y: np.ndarray) -> np.ndarray:
    """share_init - share_order of grids y (..., I, J, r), vectorised over leading axes (decompose_grid's
    method-of-moments variances truncated at 0); NaN where the grid has no variance."""
    n_i, n_j, r = y.shape[-3:]
    cell = y.mean(axis=-1)
    m = cell.mean(axis=(-2, -1), keepdims=True)
    mi, mj = cell.mean(axis=-1, keepdims=True), cell.mean(axis=-2, keepdims=True)
    ms_i = n_j * r * np.sum((mi - m) ** 2, axis=(-2, -1)) / (n_i - 1)
    ms_j = n_i * r * np.sum((mj - m) ** 2, axis=(-2, -1)) / (n_j - 1)
    ms_ij = r * np.sum((cell - mi - mj + m) ** 2, axis=(-2, -1)) / ((n_i - 1) * (n_j - 1))
    var_i, var_j = np.maximum(0.0, (ms_i - ms_ij) / (n_j * r)), np.maximum(0.0, (ms_j - ms_ij) / (n_i * r))
    if r > 1:
        ms_e = np.sum((y - cell[..., None]) ** 2, axis=(-3, -2, -1)) / (n_i * n_j * (r - 1))
        var_ij = np.maximum(0.0, (ms_ij - ms_e) / r) + ms_e
    else:
        var_ij = ms_ij
    total = var_i + var_j + var_ij
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (var_i - var_j) / total, np.nan)


def variance_share(
    rows: pd.DataFrame, degenerate: np.ndarray, direction: str, margin: float, n_boot: int = 2000, seed: int = 0
) -> OneStat:
    """share_init - share_order over the non-degenerate runs of one configuration's init x order grid."""
    score = pd.to_numeric(rows["score"], errors="coerce").astype(float).to_numpy()
    score = np.where(np.asarray(degenerate, bool), np.nan, score)
    grid = complete_grid(rows["init_seed"].to_numpy(), rows["order_seed"].to_numpy(), score)
    if grid is None:
        return _missing(
            "no complete init x order grid (>= 2 x 2) of non-degenerate runs", int(np.isfinite(score).sum())
        )
    n_i, n_j, _ = grid.shape
    effect = float(share_difference(grid))
    rng = np.random.default_rng(seed)
    ri, rj = rng.integers(0, n_i, (n_boot, n_i)), rng.integers(0, n_j, (n_boot, n_j))
    boot = share_difference(grid[ri[:, :, None], rj[:, None, :]])
    lo, hi = _ci(boot)
    dec = decompose_grid(grid)
    detail = (
        f"init {dec.share_init:.0%}, order {dec.share_order:.0%} of the variance (non-degenerate {n_i} × {n_j} "
        f"grid, {grid.size} runs)"
    )
    return OneStat(effect, lo, hi, tail_p(boot, direction, margin), int(grid.size), detail)


def expected_max_gain(
    rows: pd.DataFrame, n: int, direction: str, margin: float, n_boot: int = 2000, seed: int = 0
) -> OneStat:
    """E[max of n] - E[max of 1] of the reported validation score (diverged runs at their degenerate value)."""
    values, column = _scores(rows, reported_val_column(rows))
    v = np.sort(values[np.isfinite(values)])
    if v.size < 2:
        return _missing("fewer than two scored runs", int(v.size))
    w = max_weights(v.size, n)[[0, n - 1]]
    emp = w @ v
    rng = np.random.default_rng(seed)
    boot = np.sort(v[rng.integers(0, v.size, (n_boot, v.size))], axis=1) @ w.T
    gains = boot[:, 1] - boot[:, 0]
    lo, hi = _ci(gains)
    detail = f"E[best of {n}] {emp[1]:.1f} vs E[best of 1] {emp[0]:.1f} ({column}, {v.size} runs)"
    return OneStat(float(emp[1] - emp[0]), lo, hi, tail_p(gains, direction, margin), int(v.size), detail)


def _budget(t: int, f: float, p: int) -> int:
    return max(1, int(np.floor(t * f + p * (1 - f) + 1e-9)))


def _mc_gain(final: np.ndarray, early: np.ndarray, t: int, f: float, p: int, rng: np.random.Generator) -> float:
    """Monte Carlo E[best kept by the rule] - E[best of the same budget fully trained] over MC_DRAWS draws of t
    of the runs without replacement (ties at the cut in the draw's random order; -inf = a NaN score)."""
    draw = np.argsort(rng.random((MC_DRAWS, final.size)), axis=1)[:, :t]
    fin, ear = final[draw], early[draw]
    order = np.argsort(-ear, axis=1, kind="stable")
    kept = np.take_along_axis(fin, order[:, :p], axis=1).max(axis=1)
    same = fin[:, : _budget(t, f, p)].max(axis=1)
    kept, same = kept[np.isfinite(kept)], same[np.isfinite(same)]
    return float(kept.mean() - same.mean()) if kept.size and same.size else NAN


def early_stopping_gain(
    curves: pd.DataFrame, rows: pd.DataFrame, n_start: int, fraction: float, keep: int, direction: str,
    margin: float, n_boot: int = 200, seed: int = 0,
) -> OneStat:  # fmt: skip
    """E[best kept by the rule (n_start, fraction, keep)] - E[best of the same budget of fully trained seeds],
    exact over subsets of the stored runs trained to the end; bootstrap over runs for the CI and p."""
    if int((rows["status"].astype(str) == "stopped").sum()):
        return _missing("runs were stopped online: only the survivors' curves reach the end, so a replay is biased")
    mat, frac = config_matrices(curves, [rows["run_id"].astype(str).tolist()])[0]
    if mat.shape[0] == 0 or np.isnan(mat).all():
        return _missing("no stored evaluation curves")
    if mat.shape[0] < n_start:
        return _missing(f"{mat.shape[0]} runs with curves, fewer than the rule's n_start = {n_start}", mat.shape[0])
    final, early = _final_and_early(mat, frac, fraction)
    budget = _budget(n_start, fraction, keep)
    kept = exact_rule(final, early, n_start, keep)[1]
    same = exact_rule(final, early, budget, budget)[2]
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, final.size, (n_boot, final.size))
    boot = np.array([_mc_gain(final[i], early[i], n_start, fraction, keep, rng) for i in resamples])
    lo, hi = _ci(boot)
    saved = 1 - (n_start * fraction + keep * (1 - fraction)) / n_start
    detail = (
        f"E[best | start {n_start}, stop at {fraction:.0%}, keep {keep}] {kept:.1f} vs E[best of {budget} "
        f"fully trained] {same:.1f}; {saved:.0%} of the compute saved ({final.size} runs)"
    )
    return OneStat(kept - same, lo, hi, tail_p(boot, direction, margin), int(final.size), detail)
