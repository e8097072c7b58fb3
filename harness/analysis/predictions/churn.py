"""Prediction churn between seeds: which examples flip, and whether a recipe changes which ones fail.

Churn (Bhojanapalli et al. 2021, "On the Reproducibility and Stability of Deep Networks"; Summers &
Dinneen 2021) of two runs is the share of examples on which their predicted classes differ. Over n seeds
of one configuration we report the mean over all n(n-1)/2 pairs. That mean is a U-statistic of the runs,
so its interval comes from the jackknife over runs (leave one seed out), with n-1 degrees of freedom: the
examples are held fixed, the seeds are the sample. Every function takes a predictions matrix of shape
(runs, examples) of class ids, one row per seed, columns in the split's stored order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class ChurnResult:
    """Mean pairwise churn (share 0..1) over the seeds of one configuration, with a jackknife CI."""

    churn: float
    ci_low: float
    ci_high: float
    n_runs: int
    n_pairs: int
    n_examples: int
    method: str = "mean pairwise disagreement; jackknife-over-seeds t interval"


def _counts(matrix: np.ndarray) -> np.ndarray:
    """(examples, classes) counts of each predicted class per example."""
    labels = np.unique(matrix)
    return np.stack([(matrix == c).sum(axis=0) for c in labels], axis=1)


def disagreeing_pairs(matrix: np.ndarray) -> np.ndarray:
    """Per example, the number of seed pairs whose predictions differ: (n^2 - sum_c k_c^2) / 2."""
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    if matrix.size == 0:
        return np.zeros(matrix.shape[1] if matrix.ndim == 2 else 0)
    return (n * n - (_counts(matrix) ** 2).sum(axis=1)) / 2


def mean_churn(matrix: np.ndarray) -> float:
    """Share of examples on which two seeds disagree, averaged over every pair of seeds (NaN below 2 seeds)."""
    matrix = np.asarray(matrix)
    n, m = matrix.shape
    if n < 2 or m == 0:
        return math.nan
    return float(disagreeing_pairs(matrix).sum() / (n * (n - 1) / 2) / m)


def pair_churn(a: np.ndarray, b: np.ndarray) -> float:
    """Churn of two runs: share of examples where their predictions differ."""
    return float(np.mean(np.asarray(a) != np.asarray(b)))


def churn(matrix: np.ndarray, confidence: float = 0.95) -> ChurnResult:
    """Mean pairwise churn with a jackknife (leave-one-seed-out) t interval; the CI is NaN below 3 seeds."""
    matrix = np.asarray(matrix)
    n, m = matrix.shape
    value = mean_churn(matrix)
    low = high = math.nan
    if n >= 3:
        loo = np.array([mean_churn(np.delete(matrix, i, axis=0)) for i in range(n)])
        se = math.sqrt((n - 1) / n * float(((loo - loo.mean()) ** 2).sum()))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
        low, high = max(0.0, value - half), min(1.0, value + half)
    return ChurnResult(value, low, high, n, n * (n - 1) // 2, m)


def per_example_accuracy(matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per example, the share of seeds that predict its gold label."""
    return (np.asarray(matrix) == np.asarray(labels)[None, :]).mean(axis=0)


def flip_rate(matrix: np.ndarray) -> np.ndarray:
    """Per example, the share of seed pairs that disagree on it (0 = stable, 0.5+ = a coin flip)."""
    n = np.asarray(matrix).shape[0]
    return disagreeing_pairs(matrix) / (n * (n - 1) / 2) if n >= 2 else np.zeros(np.asarray(matrix).shape[1])


def most_flipped(matrix: np.ndarray, labels: np.ndarray | None = None, top: int = 10) -> pd.DataFrame:
    """The `top` examples with the highest flip rate (ties: lower index first), with the seeds' votes."""
    matrix = np.asarray(matrix)
    rate = flip_rate(matrix)
    order = sorted(range(len(rate)), key=lambda j: (-rate[j], j))[:top]
    rows = []
    for j in order:
        values, counts = np.unique(matrix[:, j], return_counts=True)
        row = {
            "example": j,
            "flip_rate": float(rate[j]),
            "votes": ", ".join(f"{label_text(v)}×{c}" for v, c in zip(values, counts, strict=True)),
        }
        if labels is not None:
            row["gold"] = label_text(labels[j])
            row["share_correct"] = float(np.mean(matrix[:, j] == labels[j]))
        rows.append(row)
    return pd.DataFrame(rows)


def label_text(value: float) -> str:
    """A class id as text: "1" for 1.0, else the number as printed."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class RecipeAgreement:
    """Do two recipes fail on the same examples (only how many changes) or on different ones?

    between: mean churn over cross-recipe pairs of seeds; within: the mean of the two recipes'
    own churn; excess = between - within, with a permutation p-value (recipe labels of the runs
    shuffled). A positive excess that seed noise cannot explain means the recipes differ in their
    predictions beyond seed-to-seed churn; `accuracy_corr` (Spearman, per-example share of seeds
    correct, a vs b) near 1 says the same examples stay hard under both.
    """

    between: float
    within: float
    excess: float
    p_value: float
    accuracy_corr: float
    n_a: int
    n_b: int


def _between(a: np.ndarray, b: np.ndarray) -> float:
    """Mean churn over every (seed of a, seed of b) pair, from per-example class counts: a pair agrees on an
    example when both predict the same class, so the agreeing pairs number sum_c k_a(c) k_b(c) per example."""
    classes = np.unique(np.concatenate([a.ravel(), b.ravel()]))
    agree = sum(float(((a == c).sum(axis=0) * (b == c).sum(axis=0)).sum()) for c in classes)
    return 1.0 - agree / (a.shape[0] * b.shape[0] * a.shape[1])


def _excess(pooled: np.ndarray, is_a: np.ndarray) -> float:
    a, b = pooled[is_a], pooled[~is_a]
    return _between(a, b) - (mean_churn(a) + mean_churn(b)) / 2


def recipe_agreement(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray | None = None, n_perm: int = 999, seed: int = 0
) -> RecipeAgreement:
    """Compare the predictions of recipe a's seeds with recipe b's on the same examples (>= 2 seeds each)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[0] < 2 or b.shape[0] < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"recipe_agreement needs >= 2 seeds each on the same examples; got {a.shape} and {b.shape}")
    pooled = np.concatenate([a, b])
    is_a = np.arange(len(pooled)) < len(a)
    observed = _excess(pooled, is_a)
    n = len(pooled)
    if math.comb(n, len(a)) <= n_perm + 1:  # exact: every split of the runs
        splits = [np.isin(np.arange(n), c) for c in itertools.combinations(range(n), len(a))]
    else:
        rng = np.random.default_rng(seed)
        splits = [is_a] + [rng.permutation(is_a) for _ in range(n_perm)]
    null = np.array([_excess(pooled, s) for s in splits])
    p = float(np.mean(null >= observed - 1e-12))
    corr = math.nan
    if labels is not None:
        acc_a, acc_b = per_example_accuracy(a, labels), per_example_accuracy(b, labels)
        if np.ptp(acc_a) > 0 and np.ptp(acc_b) > 0:
            corr = float(stats.spearmanr(acc_a, acc_b).statistic)
    within = (mean_churn(a) + mean_churn(b)) / 2
    return RecipeAgreement(_between(a, b), within, observed, p, corr, len(a), len(b))


def prediction_matrix(predictions: pd.DataFrame, run_ids: list[str], split: str) -> tuple[list[str], np.ndarray]:
    """(runs, examples) matrix of `split` from the store's predictions table, for those of `run_ids` that
    recorded it (rows in `run_ids` order; runs whose length differs from the first are left out)."""
    part = predictions[predictions["split"].astype(str) == split]
    by_run = {str(r): g.sort_values("example")["prediction"].to_numpy(float) for r, g in part.groupby("run_id")}
    kept = [r for r in run_ids if r in by_run]
    if kept:
        width = len(by_run[kept[0]])
        kept = [r for r in kept if len(by_run[r]) == width]
    matrix = np.stack([by_run[r] for r in kept]) if kept else np.zeros((0, 0))
    return kept, matrix
