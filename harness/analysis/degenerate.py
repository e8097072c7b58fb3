"""Degenerate ("failed") runs and the Wilson interval for their rate.

A run is degenerate when its score is at or below the majority-class baseline (Mosbach et al. 2021,
following Dodge et al. 2020) for classification, or below a threshold for regression metrics
(default 10.0 on the x100 scale, overridable per task). A NaN score (diverged run) is degenerate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

REGRESSION_METRICS = frozenset({"spearman", "pearson"})
DEFAULT_REGRESSION_THRESHOLD = 10.0


@dataclass(frozen=True)
class DegenerateRule:
    """How degeneracy is decided for one task: `score <op> threshold` ("<=" classification, "<" regression)."""

    task: str
    metric: str
    kind: str  # "classification" | "regression"
    op: str  # "<=" | "<"
    threshold: float  # NaN for classification without override: the per-run majority baseline is used
    source: str  # "majority baseline" | "default" | "override"

    def describe(self) -> str:
        target = "the majority-class baseline" if self.source == "majority baseline" else f"{self.threshold:g}"
        return f"{self.task}: {self.metric} {self.op} {target} ({self.source}); NaN score (diverged) is degenerate"


def majority_baseline(runs: pd.DataFrame) -> pd.Series:
    """Per run: majority_test where present (held-out protocol), else majority_val (x100)."""
    test = pd.to_numeric(runs["majority_test"], errors="coerce").astype(float)
    val = pd.to_numeric(runs["majority_val"], errors="coerce").astype(float)
    return test.where(test.notna(), val)


def degenerate_rule(task: str, metric: str, thresholds: Mapping[str, float] | None = None) -> DegenerateRule:
    regression = str(metric).lower() in REGRESSION_METRICS
    kind, op = ("regression", "<") if regression else ("classification", "<=")
    if thresholds and task in thresholds:
        return DegenerateRule(task, metric, kind, op, float(thresholds[task]), "override")
    if regression:
        return DegenerateRule(task, metric, kind, op, DEFAULT_REGRESSION_THRESHOLD, "default")
    return DegenerateRule(task, metric, kind, op, float("nan"), "majority baseline")


def degenerate_rules(runs: pd.DataFrame, thresholds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per task (order of first appearance): the rule used, for the report."""
    pairs = runs[["task", "metric"]].astype(str).drop_duplicates("task")
    rules = [degenerate_rule(t, m, thresholds) for t, m in pairs.itertuples(index=False)]
    frame = pd.DataFrame([r.__dict__ for r in rules], columns=list(DegenerateRule.__dataclass_fields__))
    frame["rule"] = [r.describe() for r in rules]
    return frame


def is_degenerate(runs: pd.DataFrame, thresholds: Mapping[str, float] | None = None) -> pd.Series:
    """Boolean per run (index of `runs`): score at/below the majority baseline, or below the regression
    threshold; NaN scores are degenerate (count them separately with `runs.score.isna()`)."""
    score = pd.to_numeric(runs["score"], errors="coerce").astype(float).to_numpy()
    majority = majority_baseline(runs).to_numpy()
    out = np.isnan(score)
    tasks = runs["task"].astype(str).to_numpy()
    metrics = runs["metric"].astype(str).to_numpy()
    for task, metric in dict.fromkeys(zip(tasks, metrics, strict=True)):
        rule = degenerate_rule(task, metric, thresholds)
        rows = (tasks == task) & (metrics == metric)
        limit = majority[rows] if rule.source == "majority baseline" else np.full(rows.sum(), rule.threshold)
        s = score[rows]
        with np.errstate(invalid="ignore"):
            hit = s <= limit if rule.op == "<=" else s < limit
        out[rows] |= hit & ~np.isnan(limit)
    return pd.Series(out, index=runs.index, name="degenerate", dtype=bool)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (no continuity correction); (nan, nan) if n == 0."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
