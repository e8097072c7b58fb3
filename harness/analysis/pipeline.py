"""`harness analyze <experiment>`: every analysis table from the stored results, written as Parquet, and reused
while the store has not changed since (harness/analysis/inputs.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis import inputs
from harness.analysis.predictions.agreement import prediction_tables, task_context
from harness.analysis.seeds.compare import compare_table
from harness.analysis.seeds.decomposition import variance_decomposition
from harness.analysis.seeds.degenerate import degenerate_rules, fill_finished_nan
from harness.analysis.seeds.describe import COUNTED_STATUSES, summarize
from harness.analysis.seeds.early_stop import early_stopping_table
from harness.analysis.seeds.emp import expected_max_table
from harness.analysis.verdicts.claims import claim_verdicts, verdicts_frame
from harness.experiment.paper import parse_paper
from harness.experiment.spec import AdaptiveSeeds
from harness.storage.safe_files import real_folder
from harness.storage.store import load_curves, load_predictions, load_runs, write_parquet_atomic


def analyze_runs(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    thresholds: Mapping[str, float] | None = None,
    baseline: str | None = None,
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
    paper: Mapping[str, Any] | None = None,
    adaptive: AdaptiveSeeds | None = None,
    predictions: pd.DataFrame | None = None,
    labels: Mapping[str, object] | None = None,
    regression: Collection[str] = (),
) -> dict[str, pd.DataFrame]:
    """All analysis tables from in-memory frames (no I/O). `paper`: the experiment's [paper] section, whose
    claims get a verdict each (`verdicts`, empty without claims); `adaptive`: its adaptive seed budget; the churn
    tables when `predictions` are given (labels, regression: harness.analysis.predictions.agreement.task_context)."""
    raw = runs
    runs = fill_finished_nan(runs)  # one meaning of a finished run's NaN metric in every table
    out = {
        "summary": summarize(runs, thresholds, n_boot=n_boot, seed=seed),
        "degenerate_rules": degenerate_rules(runs, thresholds),
        "comparisons": compare_table(runs, baseline, thresholds, n_boot=n_boot, n_perm=n_perm, seed=seed),
        "expected_max": expected_max_table(runs, n_boot=min(n_boot, 1000), seed=seed),
        "variance_decomposition": variance_decomposition(runs),
    }
    if curves is not None and len(curves):
        out["early_stopping"] = early_stopping_table(curves, runs, n_boot=min(n_boot, 1000), seed=seed)
    verdicts = claim_verdicts(
        parse_paper(paper), raw, thresholds, comparisons=out["comparisons"], curves=curves, adaptive=adaptive,
        n_boot=n_boot, n_perm=n_perm, seed=seed,
    )  # fmt: skip
    out["verdicts"] = verdicts_frame(verdicts)
    if predictions is not None:
        out |= prediction_tables(runs, predictions, baseline, labels, regression, seed=seed)
    return out


@dataclass(frozen=True)
class Analysis:
    """The tables of one analysis, and whether they were read back from the folder instead of computed."""

    tables: dict[str, pd.DataFrame]
    reused: bool
    folder: Path


def load_or_analyze(
    exp_dir: str | Path,
    thresholds: Mapping[str, float] | None = None,
    baseline: str | None = None,
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
    out_dir: str | Path | None = None,
    run_ids: Collection[str] | None = None,
    paper: Mapping[str, Any] | None = None,
    adaptive: AdaptiveSeeds | None = None,
    data_dir: str | None = None,
    reuse: bool = True,
) -> Analysis:
    """The tables under <out_dir> (default exp_dir/analysis; another folder for a read-only store) when they were
    computed from this store, scope and options (reuse), else compute them from the store and write them there.

    run_ids: the runs of the spec being analysed (None: every run in the folder); paper, adaptive: the spec's
    [paper] section and adaptive seed budget (verdicts.parquet holds one verdict per claim; both are part of the
    options the reuse fingerprint compares). data_dir: where the tasks' data is, for the gold labels of the
    per-example tables."""
    exp_dir = Path(exp_dir)
    out = real_folder(out_dir) if out_dir is not None else real_folder(exp_dir, "analysis")  # never a linked folder
    runs = scoped_runs(exp_dir, run_ids)
    baseline = effective_baseline(runs, baseline)
    options = {"thresholds": dict(thresholds or {}), "baseline": baseline, "n_boot": n_boot, "n_perm": n_perm,
               "seed": seed, "data_dir": data_dir, "paper": paper or {},
               "adaptive": dataclasses.asdict(adaptive) if adaptive is not None else None}  # fmt: skip
    if reuse and (tables := inputs.stored_tables(out, inputs.fingerprint(exp_dir, run_ids, options))) is not None:
        return Analysis(tables, True, out)
    curves = scoped_curves(exp_dir, runs)
    predictions = load_predictions(exp_dir)
    predictions = predictions[predictions["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)
    labels, regression = task_context(runs, predictions, data_dir)
    tables = analyze_runs(
        runs, curves, thresholds, baseline, n_boot=n_boot, n_perm=n_perm, seed=seed, paper=paper, adaptive=adaptive,
        predictions=predictions, labels=labels, regression=regression,
    )  # fmt: skip
    inputs.forget(out)
    for name, frame in tables.items():
        write_parquet_atomic(frame, out / f"{name}.parquet")
    inputs.remember(out, inputs.fingerprint(exp_dir, run_ids, options), list(tables))  # after the loads' quarantine
    return Analysis(tables, False, out)


def analyze_experiment(
    exp_dir: str | Path,
    thresholds: Mapping[str, float] | None = None,
    baseline: str | None = None,
    **options: object,
) -> dict[str, pd.DataFrame]:
    """load_or_analyze's tables (same keyword options): every analysis table of the store under exp_dir."""
    return load_or_analyze(exp_dir, thresholds, baseline, **options).tables  # type: ignore[arg-type]


def effective_baseline(runs: pd.DataFrame, baseline: str | None) -> str | None:
    """The recipe the comparisons use: `baseline`, else compare_table's default (the first recipe of the counted
    runs) when every task has it, so that asking for it by name or not computes, and fingerprints, the same
    tables; None when some task lacks it (each task then compares with its own first recipe)."""
    if baseline is not None:
        return baseline
    counted = runs[runs["status"].astype(str).isin(COUNTED_STATUSES)]
    if counted.empty:
        return None
    first = str(counted["recipe"].iloc[0])
    has_it = counted.groupby(counted["task"].astype(str))["recipe"].agg(lambda r: first in set(r.astype(str)))
    return first if bool(has_it.all()) else None


def scoped_runs(exp_dir: Path, run_ids: Collection[str] | None) -> pd.DataFrame:
    """Stored runs, only those of `run_ids` when given; attrs["other_runs"] counts the rest."""
    runs = load_runs(exp_dir)
    others = 0
    if run_ids is not None:
        keep = runs["run_id"].isin(set(run_ids))
        others = int((~keep).sum())
        runs = runs[keep].reset_index(drop=True)
    runs.attrs["other_runs"] = others
    return runs


def scoped_curves(exp_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The stored curves of `runs`."""
    curves = load_curves(exp_dir)
    return curves[curves["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)


def load_scoped(exp_dir: Path, run_ids: Collection[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored runs and curves, only those of `run_ids` when given; attrs["other_runs"] counts the rest."""
    runs = scoped_runs(exp_dir, run_ids)
    return runs, scoped_curves(exp_dir, runs)
