"""Expected maximum validation performance vs number of trials (Dodge et al. 2019, "Show Your Work").

From the empirical CDF of N observed scores v(1) <= ... <= v(N), with n draws with replacement:
E[max_n] = sum_i v(i) [(i/N)^n - ((i-1)/N)^n], spread sqrt(sum_i p_i (v(i) - E)^2). The weights depend
on ranks only, so the bootstrap band is one matrix product over sorted resamples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.describe import COUNTED_STATUSES, config_groups

EMP_COLUMNS = ["n", "emp", "emp_std", "band_lo", "band_hi"]
DEFAULT_N_MAX = 200  # beyond this the curve is flat for any realistic N, and the weights are n_max x N


def max_weights(n_scores: int, n_max: int) -> np.ndarray:
    """(n_max, N) matrix: row n-1 holds P(the max of n draws is the i-th smallest score)."""
    i = np.arange(1, n_scores + 1) / n_scores
    n = np.arange(1, n_max + 1)[:, None]
    return i**n - (i - 1 / n_scores) ** n


def expected_max(
    scores: np.ndarray, n_max: int | None = None, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Columns n (1..n_max, default min(N, 200)), emp, emp_std (closed form), band_lo/band_hi (percentile bootstrap
    over resamples of the scores). NaN scores (diverged runs) are dropped."""
    v = np.sort(np.asarray(scores, dtype=float))
    v = v[~np.isnan(v)]
    n_scores = v.size
    n_max = min(n_scores, DEFAULT_N_MAX) if n_max is None else int(n_max)
    if n_scores == 0 or n_max < 1:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in EMP_COLUMNS}).astype({"n": int})
    w = max_weights(n_scores, n_max)
    emp = w @ v
    spread = np.sqrt(np.sum(w * (v[None, :] - emp[:, None]) ** 2, axis=1))
    frame = pd.DataFrame({"n": np.arange(1, n_max + 1), "emp": emp, "emp_std": spread})
    if n_boot > 0 and n_scores > 1:
        rng = np.random.default_rng(seed)
        boot = np.sort(v[rng.integers(0, n_scores, (n_boot, n_scores))], axis=1) @ w.T
        alpha = 100 * (1 - confidence) / 2
        frame["band_lo"], frame["band_hi"] = np.percentile(boot, [alpha, 100 - alpha], axis=0)
    else:
        frame["band_lo"] = frame["band_hi"] = emp
    return frame


def expected_max_table(
    runs: pd.DataFrame, column: str = "val_best", n_max: int | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """expected_max per configuration over `column` (validation score of the selected checkpoint by
    default; falls back to `score` when that column is all NaN), with task, recipe, n_scores columns."""
    frames = []
    runs = runs[runs["status"].astype(str).isin(COUNTED_STATUSES)]
    for i, (task, recipe, rows) in enumerate(config_groups(runs)):
        values = pd.to_numeric(rows[column], errors="coerce").astype(float)
        source = column
        if values.isna().all() and column != "score":
            values, source = pd.to_numeric(rows["score"], errors="coerce").astype(float), "score"
        frame = expected_max(values.to_numpy(), n_max, n_boot, seed + i)
        frame.insert(0, "recipe", recipe)
        frame.insert(0, "task", task)
        frame["n_scores"] = int(values.notna().sum())
        frame["column"] = source
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["task", "recipe", *EMP_COLUMNS, "n_scores", "column"])
    return pd.concat(frames, ignore_index=True)
