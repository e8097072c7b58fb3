"""Variance decomposition by seed source (Dodge et al. 2020): weight init x data order.

Two-way random-effects ANOVA on a balanced init_seed x order_seed grid with r >= 1 runs per cell.
Expected mean squares: E[MS_init] = s2_e + r s2_io + J r s2_init, E[MS_order] = s2_e + r s2_io +
I r s2_order, E[MS_io] = s2_e + r s2_io, E[MS_e] = s2_e. Method-of-moments estimates are truncated at 0;
`var_interaction` is everything the main effects leave (interaction plus residual: s2_io + s2_e, which
is MS_io itself when r = 1). F tests for the main effects use MS_io as the denominator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis.seeds.describe import COUNTED_STATUSES, config_groups, used_note


@dataclass(frozen=True)
class Decomposition:
    n_init: int
    n_order: int
    replicates: int
    n_used: int
    var_init: float
    var_order: float
    var_interaction: float
    share_init: float
    share_order: float
    share_interaction: float
    std: float  # overall std of the grid scores (ddof=1)
    std_fix_init: float  # mean over init seeds of the std across data orders (init fixed)
    std_fix_order: float  # mean over data orders of the std across init seeds (order fixed)
    f_init: float
    p_init: float
    f_order: float
    p_order: float


def decompose_grid(y: np.ndarray) -> Decomposition:
    """Decompose scores y of shape (I init seeds, J data orders[, r replicates]); I, J >= 2."""
    y = np.asarray(y, dtype=float)
    if y.ndim == 2:
        y = y[..., None]
    n_i, n_j, r = y.shape
    if n_i < 2 or n_j < 2 or np.isnan(y).any():
        raise ValueError(f"need a complete grid with >= 2 levels per seed source, got {y.shape}")
    cell = y.mean(axis=2)
    m, mi, mj = cell.mean(), cell.mean(axis=1), cell.mean(axis=0)
    ms_i = n_j * r * np.sum((mi - m) ** 2) / (n_i - 1)
    ms_j = n_i * r * np.sum((mj - m) ** 2) / (n_j - 1)
    df_ij = (n_i - 1) * (n_j - 1)
    ms_ij = r * np.sum((cell - mi[:, None] - mj[None, :] + m) ** 2) / df_ij
    var_i = max(0.0, (ms_i - ms_ij) / (n_j * r))
    var_j = max(0.0, (ms_j - ms_ij) / (n_i * r))
    if r > 1:
        ms_e = np.sum((y - cell[..., None]) ** 2) / (n_i * n_j * (r - 1))
        var_ij = max(0.0, (ms_ij - ms_e) / r) + ms_e
    else:
        var_ij = ms_ij
    total = var_i + var_j + var_ij
    share = (lambda v: v / total) if total > 0 else (lambda v: float("nan"))
    with np.errstate(divide="ignore", invalid="ignore"):
        f_i, f_j = ms_i / ms_ij, ms_j / ms_ij
    flat_by_init = y.reshape(n_i, n_j * r)
    flat_by_order = np.moveaxis(y, 1, 0).reshape(n_j, n_i * r)
    return Decomposition(
        n_init=n_i, n_order=n_j, replicates=r, n_used=y.size,
        var_init=float(var_i), var_order=float(var_j), var_interaction=float(var_ij),
        share_init=float(share(var_i)), share_order=float(share(var_j)), share_interaction=float(share(var_ij)),
        std=float(np.std(y, ddof=1)),
        std_fix_init=float(np.mean(np.std(flat_by_init, axis=1, ddof=1))),
        std_fix_order=float(np.mean(np.std(flat_by_order, axis=1, ddof=1))),
        f_init=float(f_i), p_init=float(stats.f.sf(f_i, n_i - 1, df_ij)),
        f_order=float(f_j), p_order=float(stats.f.sf(f_j, n_j - 1, df_ij)),
    )  # fmt: skip


def complete_grid(init: np.ndarray, order: np.ndarray, score: np.ndarray) -> np.ndarray | None:
    """The largest balanced grid found greedily: drop the seed level with the most empty cells until none
    is empty, then keep the first r runs of every cell (r = the smallest cell count). None if < 2 x 2."""
    score = np.asarray(score, dtype=float)
    ok = ~np.isnan(score)
    init_levels, i_code = np.unique(np.asarray(init)[ok], return_inverse=True)
    order_levels, j_code = np.unique(np.asarray(order)[ok], return_inverse=True)
    y = score[ok]
    counts = np.zeros((init_levels.size, order_levels.size), dtype=int)
    np.add.at(counts, (i_code, j_code), 1)
    rows, cols = np.ones(counts.shape[0], bool), np.ones(counts.shape[1], bool)
    while rows.sum() >= 2 and cols.sum() >= 2:
        empty = counts[np.ix_(rows, cols)] == 0
        if not empty.any():
            break
        row_share, col_share = empty.mean(axis=1), empty.mean(axis=0)
        if row_share.max() >= col_share.max():
            rows[np.flatnonzero(rows)[np.argmax(row_share)]] = False
        else:
            cols[np.flatnonzero(cols)[np.argmax(col_share)]] = False
    if rows.sum() < 2 or cols.sum() < 2:
        return None
    r = int(counts[np.ix_(rows, cols)].min())
    keep = rows[i_code] & cols[j_code]
    i_code, j_code, y = i_code[keep], j_code[keep], y[keep]
    order_ = np.lexsort((j_code, i_code))  # stable: runs keep their stored order within a cell
    i_code, j_code, y = i_code[order_], j_code[order_], y[order_]
    cell = i_code * counts.shape[1] + j_code
    first = np.r_[True, cell[1:] != cell[:-1]]
    rank = np.arange(cell.size) - np.maximum.accumulate(np.where(first, np.arange(cell.size), 0))
    y = y[rank < r]
    return y.reshape(int(rows.sum()), int(cols.sum()), r)


def variance_decomposition(runs: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    """Per configuration with an init x order grid (>= 2 levels each): variances, shares, Dodge's expected
    std with one seed fixed, the overall std and main-effect F tests. Diverged (NaN) runs leave holes
    that are resolved by dropping seed levels (n_dropped counts the runs left out). Early-stopped runs are left
    out (`used` says so)."""
    rows = []
    all_runs, runs = runs, runs[runs["status"].astype(str).isin(COUNTED_STATUSES)]
    for task, recipe, g in config_groups(runs):
        y = pd.to_numeric(g[column], errors="coerce").astype(float).to_numpy()
        grid = complete_grid(g["init_seed"].to_numpy(), g["order_seed"].to_numpy(), y)
        if grid is None:
            continue
        dec = decompose_grid(grid)
        cfg = all_runs[(all_runs["task"].astype(str) == task) & (all_runs["recipe"].astype(str) == recipe)]
        used = used_note(cfg, column)
        row = {"task": task, "recipe": recipe, **asdict(dec), "n_dropped": int(len(g) - dec.n_used), "used": used}
        rows.append(row)
    columns = ["task", "recipe", *Decomposition.__dataclass_fields__, "n_dropped", "used"]
    return pd.DataFrame(rows, columns=columns)
