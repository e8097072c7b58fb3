"""Churn and per-example agreement tables from the stored per-example predictions (`harness analyze`).

Per task: the reported split (test when a run of the task recorded it, else val), the runs that finished
(done, or stopped with their checkpoint) with predictions on it, and one (seeds x examples) matrix per recipe
with at least two seeds (harness/analysis/predictions/churn.py has the statistics). Three tables:

- churn: one row per task x recipe: mean pairwise churn with its jackknife CI, and with gold labels the
  examples every seed gets right, every seed gets wrong, or that split the seeds;
- per_example: one row per task x recipe x example: flip rate, the seeds' votes, share of seeds right, gold;
- recipe_agreement: per task, each recipe against the baseline: churn between vs within, its permutation p,
  Spearman correlation of per-example accuracy.

Gold labels come from the task's data with the runs' own evaluation protocol (`gold_labels`, the one step
that reads files); without them the label columns are empty. Regression tasks have no class churn.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd

from harness.analysis.predictions.churn import (
    churn,
    flip_rate,
    label_text,
    per_example_accuracy,
    prediction_matrix,
    recipe_agreement,
)
from harness.experiment import data as D
from harness.experiment.spec import RunSpec

CHURN_STATUSES = ("done", "stopped")  # runs whose predictions are a finished (or stopped) model's
CHURN_COLUMNS = {
    "task": "string", "recipe": "string", "split": "string", "n_runs": "int64", "n_pairs": "int64",
    "n_examples": "int64", "churn": "float64", "ci_low": "float64", "ci_high": "float64",
    "always_right": "Int64", "always_wrong": "Int64", "flips": "Int64", "method": "string",
}  # fmt: skip
PER_EXAMPLE_COLUMNS = {
    "task": "string", "recipe": "string", "split": "string", "example": "int64", "n_seeds": "int64",
    "flip_rate": "float64", "votes": "string", "gold": "float64", "share_correct": "float64",
}  # fmt: skip
AGREEMENT_COLUMNS = {
    "task": "string", "a": "string", "b": "string", "split": "string", "between": "float64", "within": "float64",
    "excess": "float64", "p_value": "float64", "accuracy_corr": "float64", "n_a": "int64", "n_b": "int64",
}  # fmt: skip


def run_spec(runs: pd.DataFrame) -> RunSpec | None:
    """The RunSpec of the first run (None when its stored spec cannot be read, e.g. an imported run)."""
    try:
        return RunSpec.from_json(str(runs["spec"].iloc[0]))
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def eval_examples(spec: RunSpec, split: str, data_dir: str | None) -> list[D.Example] | None:
    """The examples of a run's evaluation split in stored order (None when the data cannot be read)."""
    try:
        dev = D.load_split(spec.task_def, "dev", data_dir)
        splits = D.eval_splits(spec.task_def, dev, spec.eval_protocol, spec.split_seed, spec.eval_size)
    except (D.DataError, OSError, ValueError):
        return None
    examples = splits.test if split == "test" else splits.val
    return list(examples) if examples is not None else None


def _counted(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].astype(str).isin(CHURN_STATUSES)]


def reported_split(predictions: pd.DataFrame, run_ids: Collection[str]) -> str:
    """ "test" when any of the runs recorded test predictions (the split the report's scores are on), else "val"."""
    mine = predictions[predictions["run_id"].astype(str).isin(set(run_ids))]
    return "test" if (mine["split"].astype(str) == "test").any() else "val"


def task_context(
    runs: pd.DataFrame, predictions: pd.DataFrame, data_dir: str | None
) -> tuple[dict[str, np.ndarray], set[str]]:
    """(gold labels per task of its reported split, regression tasks), read from the task data with the
    protocol of the task's first counted run; a task whose data or spec cannot be read has no labels."""
    labels, regression = {}, set()
    counted = _counted(runs)
    for task, rows in counted.groupby(counted["task"].astype(str), sort=False):
        spec = run_spec(rows)
        if spec is None:
            continue
        if spec.task_def.is_regression:
            regression.add(str(task))
            continue
        examples = eval_examples(spec, reported_split(predictions, rows["run_id"].astype(str)), data_dir)
        if examples is not None:
            labels[str(task)] = np.array([e.label for e in examples], float)
    return labels, regression


def _frame(rows: list[dict], columns: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).astype(dict(columns))


def _votes(matrix: np.ndarray) -> list[str]:
    """Per example, the seeds' predictions as "class×count" in class order (as most_flipped writes them)."""
    classes = np.unique(matrix)
    counts = (matrix[:, :, None] == classes[None, None, :]).sum(axis=0)
    return [
        ", ".join(f"{label_text(c)}×{k}" for c, k in zip(classes, row, strict=True) if k) for row in counts.tolist()
    ]


def prediction_tables(
    runs: pd.DataFrame,
    predictions: pd.DataFrame,
    baseline: str | None = None,
    labels: Mapping[str, np.ndarray] | None = None,
    regression: Collection[str] = (),
    *,
    n_perm: int = 999,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """churn, per_example and recipe_agreement (module docstring) from in-memory frames. Recipes in order of
    first appearance in `runs`; agreement compares each recipe with `baseline` (default: the first recipe with
    a matrix). labels: gold labels per task of its reported split, used when they match the matrices' width."""
    churn_rows, example_rows, agreement_rows = [], [], []
    counted = _counted(runs)
    for task, rows in counted.groupby(counted["task"].astype(str), sort=False):
        task = str(task)
        ids = rows["run_id"].astype(str)
        if task in regression or predictions.empty:
            continue
        split = reported_split(predictions, ids)
        matrices: dict[str, np.ndarray] = {}
        for recipe, group in rows.groupby(rows["recipe"].astype(str), sort=False):
            _, m = prediction_matrix(predictions, group["run_id"].astype(str).tolist(), split)
            if len(m) >= 2:
                matrices[str(recipe)] = m
        widths = {m.shape[1] for m in matrices.values()}
        gold = (labels or {}).get(task)
        gold = gold if gold is not None and widths == {len(gold)} else None
        for recipe, m in matrices.items():
            share = per_example_accuracy(m, gold) if gold is not None else np.full(m.shape[1], np.nan)
            counts = {}
            if gold is not None:
                counts = {"always_right": (share == 1).sum(), "always_wrong": (share == 0).sum(),
                          "flips": ((share > 0) & (share < 1)).sum()}  # fmt: skip
            churn_rows.append({"task": task, "recipe": recipe, "split": split, **asdict(churn(m)), **counts})
            example_rows.append(
                pd.DataFrame({"task": task, "recipe": recipe, "split": split, "example": np.arange(m.shape[1]),
                              "n_seeds": len(m), "flip_rate": flip_rate(m), "votes": _votes(m),
                              "gold": gold if gold is not None else np.nan, "share_correct": share})
            )  # fmt: skip
        base = baseline if baseline in matrices else next(iter(matrices), None)
        for recipe in (r for r in matrices if r != base):
            agree = recipe_agreement(matrices[recipe], matrices[base], gold, n_perm=n_perm, seed=seed)
            agreement_rows.append({"task": task, "a": recipe, "b": base, "split": split, **asdict(agree)})
    per_example = (
        pd.concat(example_rows, ignore_index=True).reindex(columns=list(PER_EXAMPLE_COLUMNS))
        if example_rows
        else pd.DataFrame(columns=list(PER_EXAMPLE_COLUMNS))
    )
    return {
        "churn": _frame(churn_rows, CHURN_COLUMNS),
        "per_example": per_example.astype(PER_EXAMPLE_COLUMNS),
        "recipe_agreement": _frame(agreement_rows, AGREEMENT_COLUMNS),
    }


def top_flips(per_example: pd.DataFrame, task: str, recipe: str, top: int = 10) -> pd.DataFrame:
    """The `top` examples of (task, recipe) that flip most between its seeds (ties: lower index first), flip
    rate > 0 only: the rows most_flipped picks, read from the per_example table."""
    rows = per_example[(per_example["task"] == task) & (per_example["recipe"] == recipe)]
    rows = rows[rows["flip_rate"] > 0]
    return rows.sort_values(["flip_rate", "example"], ascending=[False, True], kind="stable").head(top)
