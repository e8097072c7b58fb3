"""Degenerate ("failed") runs and the Wilson interval for their rate.

A run is degenerate when its score is at or below the majority-class baseline (Mosbach et al. 2021,
following Dodge et al. 2020) for classification, or below a threshold for regression metrics
(default 10.0 on the x100 scale, overridable per task). A NaN score (diverged run) is degenerate.

Stored precision: a degenerate classifier scores exactly the majority baseline, but a log that rounds
its scores (or its baseline) to d decimals can put that score just above the bar. The comparison is
therefore `score <= majority + tol` with tol half a unit of the coarsest stored precision of the
task's scores and baselines (`rounding_tolerance`): 0.005 for x100 scores with 2 decimals (metrics
rounded to 4 decimals), ~0 for the harness's own full-precision scores. A regression threshold is a
chosen cut, not a measured bar, so it gets no tolerance.

A NaN metric of a run that finished training (status done or stopped) has one meaning everywhere:
the metric is undefined because the model predicts a constant (a constant predictor on STS-B), and
its score is 0, the value the harness's own metric returns for it (`fill_finished_nan`). Only a
diverged run has no score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

REGRESSION_METRICS = frozenset({"spearman", "pearson"})
DEFAULT_REGRESSION_THRESHOLD = 10.0
FINISHED_STATUSES = ("done", "stopped")
CONSTANT_PREDICTOR_SCORE = 0.0  # harness.experiment.data.compute_metric's value for an undefined (constant) prediction
FLOAT_TOLERANCE = 1e-6  # full-precision scores: only float noise between a score and its bar
MAX_DECIMALS = 6


@dataclass(frozen=True)
class DegenerateRule:
    """How degeneracy is decided for one task: `score <op> threshold` ("<=" classification, "<" regression)."""

    task: str
    metric: str
    kind: str  # "classification" | "regression"
    op: str  # "<=" | "<"
    threshold: float  # NaN for classification without override: the per-run majority baseline is used
    source: str  # "majority baseline" | "default" | "override"
    tolerance: float = float("nan")  # added to a majority baseline (NaN: not computed from the runs yet)
    split: str = ""  # the split whose majority class is the bar: "test half" (heldout) | "validation" (dev)

    def describe(self) -> str:
        if self.source != "majority baseline":
            target, tol = f"{self.threshold:g}", ""
        else:
            target = "the majority-class baseline" + (f" of the scored {self.split}" if self.split else "")
            if self.tolerance != self.tolerance:
                tol = " + the stored precision's rounding tolerance"
            elif self.tolerance > FLOAT_TOLERANCE:
                tol = f" + {self.tolerance:g} (half a unit of the stored scores' precision)"
            else:
                tol = f" + {self.tolerance:g} (float noise: scores at full precision)"
        return f"{self.task}: {self.metric} {self.op} {target}{tol} ({self.source}); NaN score (diverged) is degenerate"


def stored_decimals(values: np.ndarray) -> int | None:
    """The fewest decimals (0..6) that represent every finite value exactly; None when none does."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    for d in range(MAX_DECIMALS + 1):
        scaled = v * 10.0**d
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6):
            return d
    return None


def rounding_tolerance(*samples: np.ndarray) -> float:
    """Half a unit of the coarsest stored precision among `samples` (scores, baselines); FLOAT_TOLERANCE if
    all are at full precision."""
    decimals = [d for d in (stored_decimals(s) for s in samples) if d is not None]
    return max(FLOAT_TOLERANCE, 0.5 * 10.0 ** -min(decimals)) if decimals else FLOAT_TOLERANCE


def fill_finished_nan(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of `runs` where a finished run's NaN score is CONSTANT_PREDICTOR_SCORE (see the module note)."""
    status = runs["status"].astype(str) if "status" in runs else pd.Series("done", index=runs.index)
    score = pd.to_numeric(runs["score"], errors="coerce").astype(float)
    hole = status.isin(FINISHED_STATUSES) & score.isna()
    if not hole.any():
        return runs
    out = runs.copy()
    out["score"] = score.where(~hole, CONSTANT_PREDICTOR_SCORE)
    return out


ZERO_WHEN_CONSTANT = frozenset({*REGRESSION_METRICS, "matthews", "f1"})


def constant_predictor_score(metric: str, bar: float) -> float:
    """The score of a constant prediction whose metric is undefined (NaN in a log): 0 for correlations, MCC and
    F1 (harness.experiment.data.compute_metric's value for them), else the task's bar (the best constant's
    score, `bar`; NaN when unknown)."""
    return CONSTANT_PREDICTOR_SCORE if str(metric).lower() in ZERO_WHEN_CONSTANT else float(bar)


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
    """One row per task (order of first appearance): the rule used, for the report, with the tolerance
    `is_degenerate` adds to the bar (from the task's stored scores and baselines) and the split the bar is of."""
    pairs = runs[["task", "metric"]].astype(str).drop_duplicates("task")
    rules = []
    for task, metric in pairs.itertuples(index=False):
        rule = degenerate_rule(task, metric, thresholds)
        if rule.source == "majority baseline":
            rows = runs[(runs["task"].astype(str) == task) & (runs["metric"].astype(str) == metric)]
            score = pd.to_numeric(rows["score"], errors="coerce").astype(float).to_numpy()
            bar = majority_baseline(rows)
            test = pd.to_numeric(rows["majority_test"], errors="coerce").notna()
            split = "test half" if test.all() else ("dev split" if not test.any() else "split of each run")
            rule = dataclasses.replace(rule, tolerance=rounding_tolerance(score, bar.to_numpy()), split=split)
        rules.append(rule)
    frame = pd.DataFrame([r.__dict__ for r in rules], columns=list(DegenerateRule.__dataclass_fields__))
    frame["rule"] = [r.describe() for r in rules]
    return frame


def degenerate_value(runs: pd.DataFrame) -> pd.Series:
    """Per run, the score a degenerate (constant) predictor gets: the majority baseline for classification,
    CONSTANT_PREDICTOR_SCORE for correlation metrics. Where a diverged run is counted when it must have a score."""
    regression = runs["metric"].astype(str).str.lower().isin(REGRESSION_METRICS)
    majority = majority_baseline(runs)
    return majority.where(~regression, CONSTANT_PREDICTOR_SCORE).rename("degenerate_value")


def is_degenerate(runs: pd.DataFrame, thresholds: Mapping[str, float] | None = None) -> pd.Series:
    """Boolean per run (index of `runs`): score at/below the majority baseline (within the stored precision's
    rounding tolerance), or below the regression threshold; NaN scores are degenerate (count them separately
    with `runs.score.isna()`; pass runs through `fill_finished_nan` first so that only diverged runs are NaN)."""
    score = pd.to_numeric(runs["score"], errors="coerce").astype(float).to_numpy()
    majority = majority_baseline(runs).to_numpy()
    out = np.isnan(score)
    tasks = runs["task"].astype(str).to_numpy()
    metrics = runs["metric"].astype(str).to_numpy()
    for task, metric in dict.fromkeys(zip(tasks, metrics, strict=True)):
        rule = degenerate_rule(task, metric, thresholds)
        rows = (tasks == task) & (metrics == metric)
        s = score[rows]
        if rule.source == "majority baseline":
            limit = majority[rows] + rounding_tolerance(s, majority[rows])
        else:
            limit = np.full(rows.sum(), rule.threshold)
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


def newcombe_interval(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95) -> tuple[float, float]:
    """CI of the difference of rates k_a/n_a - k_b/n_b from the two Wilson intervals (Newcombe 1998, method 10,
    the hybrid score interval); (nan, nan) if either n is 0."""
    if n_a <= 0 or n_b <= 0:
        return float("nan"), float("nan")
    p_a, p_b = k_a / n_a, k_b / n_b
    (l_a, u_a), (l_b, u_b) = wilson_interval(k_a, n_a, confidence), wilson_interval(k_b, n_b, confidence)
    d = p_a - p_b
    return d - float(np.hypot(p_a - l_a, u_b - p_b)), d + float(np.hypot(u_a - p_a, p_b - l_b))
