"""Expected maximum validation performance vs number of trials (Dodge et al. 2019, "Show Your Work").

From the empirical CDF of N observed scores v(1) <= ... <= v(N), with n draws with replacement:
E[max_n] = sum_i v(i) [(i/N)^n - ((i-1)/N)^n], spread sqrt(sum_i p_i (v(i) - E)^2). The weights depend
on ranks only, so the bootstrap band is one matrix product over sorted resamples.

Which score: the validation score of the checkpoint the experiment reports (`val_best` under
select = "best", `val_final` under select = "final", read from the runs' recipe, or from the top level
of imports written before `select` moved into the recipe). Without validation scores, the reported
`score` itself, and the `column` says which split that is ("score (test split)" under the held-out
protocol). Diverged runs are counted at their degenerate value (the majority baseline, or 0 for
correlations), not dropped, so a recipe that diverges often is not made to look better. Early-stopped
runs are left out.

Zhang et al. 2021's expected test performance (`expected_test`): draw n seeds with replacement, pick
the one best on validation and report its test score; the closed form weights the test scores by the
same rank weights over the validation order (tied validation scores share their weight equally). It
needs a validation score to select on: without one there is no expected test performance (the
expected max of the test scores is not it: it selects on the split it reports).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.analysis.seeds.degenerate import degenerate_value
from harness.analysis.seeds.describe import COUNTED_STATUSES, config_groups, used_note

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


def expected_test(
    val: np.ndarray, test: np.ndarray, n_max: int | None = None, n_boot: int = 1000, seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:  # fmt: skip
    """Zhang et al.'s expected test performance: E[test score of the best-on-validation seed among n drawn with
    replacement], n = 1..n_max, with a percentile bootstrap band over resamples of the (val, test) pairs.
    Pairs must be finite (give diverged runs their degenerate value first)."""
    val, test = np.asarray(val, dtype=float), np.asarray(test, dtype=float)
    if val.shape != test.shape or np.isnan(val).any() or np.isnan(test).any():
        raise ValueError("expected_test needs finite (val, test) pairs of equal length")
    n_scores = val.size
    n_max = min(n_scores, DEFAULT_N_MAX) if n_max is None else int(n_max)
    if n_scores == 0 or n_max < 1:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in EMP_COLUMNS}).astype({"n": int})
    w = max_weights(n_scores, n_max)
    order = np.lexsort((test, val))
    v, t = val[order], test[order]
    t_tied = _tie_means(v, t)
    emp = w @ t_tied
    spread = np.sqrt(np.maximum(0.0, w @ _tie_means(v, t**2) - emp**2))
    frame = pd.DataFrame({"n": np.arange(1, n_max + 1), "emp": emp, "emp_std": spread})
    if n_boot > 0 and n_scores > 1:
        rng = np.random.default_rng(seed)
        boot = np.empty((n_boot, n_max))
        for b, idx in enumerate(rng.integers(0, n_scores, (n_boot, n_scores))):
            o = np.lexsort((t[idx], v[idx]))
            boot[b] = w @ _tie_means(v[idx][o], t[idx][o])
        alpha = 100 * (1 - confidence) / 2
        frame["band_lo"], frame["band_hi"] = np.percentile(boot, [alpha, 100 - alpha], axis=0)
    else:
        frame["band_lo"] = frame["band_hi"] = emp
    return frame


def _tie_means(sorted_val: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value replaced by the mean over its run of equal (sorted) validation scores."""
    _, start, counts = np.unique(sorted_val, return_index=True, return_counts=True)
    means = np.add.reduceat(values, start) / counts
    return np.repeat(means, counts)


def _spec_field(rows: pd.DataFrame, key: str) -> set[str]:
    """The values of `key` in the runs' stored specs: the recipe's, else the top level's (older imports)."""
    found = set()
    for text in rows.get("spec", pd.Series(dtype=str)).dropna().astype(str):
        try:
            spec = json.loads(text)
        except ValueError:
            continue
        if isinstance(spec, dict):
            recipe = spec.get("recipe") if isinstance(spec.get("recipe"), dict) else {}
            value = recipe.get(key, spec.get(key))
            if value is not None:
                found.add(str(value))
    return found


def reported_val_column(rows: pd.DataFrame) -> str:
    """`val_best` or `val_final` after the runs' `select` rule (read from their stored spec; "best" if unknown)."""
    return "val_final" if _spec_field(rows, "select") == {"final"} else "val_best"


def _score_split(rows: pd.DataFrame) -> str:
    """The `score` column named by the split it holds (the reported one), for a curve drawn over it."""
    protocols = _spec_field(rows, "eval_protocol")
    protocol = protocols.pop() if len(protocols) == 1 else ""
    return {"heldout": "score (test split)", "dev": "score (dev split)"}.get(protocol, "score")


def _scores(rows: pd.DataFrame, column: str) -> tuple[np.ndarray, str]:
    values = pd.to_numeric(rows.get(column, pd.Series(np.nan, index=rows.index)), errors="coerce").astype(float)
    diverged = rows["status"].astype(str) == "diverged"
    if values[~diverged].isna().all() and column != "score":
        values, column = pd.to_numeric(rows["score"], errors="coerce").astype(float), "score"
    fill = degenerate_value(rows) if {"metric", "majority_val", "majority_test"} <= set(rows) else np.nan
    return values.where(~(diverged & values.isna()), fill).to_numpy(dtype=float), column


def expected_max_table(
    runs: pd.DataFrame, column: str | None = None, n_max: int | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """expected_max per configuration over the validation score of the reported checkpoint (`column`, default
    after the runs' select rule; `score` when that column is all NaN), diverged runs at their degenerate value;
    plus Zhang's expected test performance (`test_*` columns) where a held-out test score exists. Columns:
    task, recipe, n, emp, emp_std, band_lo, band_hi, n_scores, column, used, test_emp, test_band_lo, test_band_hi."""
    frames = []
    all_runs = runs
    runs = runs[runs["status"].astype(str).isin(COUNTED_STATUSES)]
    for i, (task, recipe, rows) in enumerate(config_groups(runs)):
        values, source = _scores(rows, column or reported_val_column(rows))
        ok = ~np.isnan(values)
        frame = expected_max(values[ok], n_max, n_boot, seed + i)
        selects_on_val = source in ("val_best", "val_final")  # no validation score: nothing to select on
        test_col = "test_best" if source == "val_best" else "test_final"
        tests, _ = _scores(rows, test_col) if test_col in rows else (np.full(values.shape, np.nan), "")
        both = ok & ~np.isnan(tests)
        source = _score_split(rows) if source == "score" else source
        if selects_on_val and both.any() and test_col in rows and rows[test_col].notna().any():
            et = expected_test(values[both], tests[both], len(frame), n_boot, seed + 7 * i + 1)
            frame["test_emp"], frame["test_band_lo"], frame["test_band_hi"] = (
                et["emp"].to_numpy(), et["band_lo"].to_numpy(), et["band_hi"].to_numpy()
            )  # fmt: skip
        else:
            frame["test_emp"] = frame["test_band_lo"] = frame["test_band_hi"] = np.nan
        frame.insert(0, "recipe", recipe)
        frame.insert(0, "task", task)
        frame["n_scores"] = int(ok.sum())
        frame["column"] = source
        cfg = all_runs[(all_runs["task"].astype(str) == task) & (all_runs["recipe"].astype(str) == recipe)]
        frame["used"] = used_note(cfg, f"{source}, diverged at the degenerate value")
        frames.append(frame)
    columns = ["task", "recipe", *EMP_COLUMNS, "n_scores", "column", "used", "test_emp", "test_band_lo", "test_band_hi"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
