"""`harness analyze <experiment>`: every analysis table from the stored results, written as Parquet."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.claims import claim_verdicts, verdicts_frame
from harness.analysis.compare import compare_table
from harness.analysis.decomposition import variance_decomposition
from harness.analysis.degenerate import degenerate_rules, fill_finished_nan
from harness.analysis.describe import summarize
from harness.analysis.early_stop import early_stopping_table
from harness.analysis.emp import expected_max_table
from harness.experiment.paper import parse_paper
from harness.experiment.spec import AdaptiveSeeds
from harness.storage.safe_files import real_folder
from harness.storage.store import load_curves, load_runs, write_parquet_atomic


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
) -> dict[str, pd.DataFrame]:
    """All analysis tables from in-memory frames (no I/O). `paper`: the experiment's [paper] section, whose
    claims get a verdict each (`verdicts`, empty without claims); `adaptive`: its adaptive seed budget."""
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
    return out


def analyze_experiment(
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
) -> dict[str, pd.DataFrame]:
    """Load the store under exp_dir, compute every table, write <out_dir>/<name>.parquet (default
    exp_dir/analysis; another folder for a read-only store), return them.

    run_ids: the runs of the spec being analysed (None: every run in the folder); paper, adaptive: the spec's
    [paper] section and adaptive seed budget (verdicts.parquet holds one verdict per claim).
    """
    exp_dir = Path(exp_dir)
    runs, curves = load_scoped(exp_dir, run_ids)
    tables = analyze_runs(
        runs, curves, thresholds, baseline, n_boot=n_boot, n_perm=n_perm, seed=seed, paper=paper, adaptive=adaptive
    )
    out = real_folder(out_dir) if out_dir is not None else real_folder(exp_dir, "analysis")  # never a linked folder
    for name, frame in tables.items():
        write_parquet_atomic(frame, out / f"{name}.parquet")
    return tables


def load_scoped(exp_dir: Path, run_ids: Collection[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored runs and curves, only those of `run_ids` when given; attrs["other_runs"] counts the rest."""
    runs, curves = load_runs(exp_dir), load_curves(exp_dir)
    others = 0
    if run_ids is not None:
        keep = runs["run_id"].isin(set(run_ids))
        others = int((~keep).sum())
        runs = runs[keep].reset_index(drop=True)
        curves = curves[curves["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)
    runs.attrs["other_runs"] = others
    return runs, curves


SUMMARY_VIEW = [
    ("task", "task", "{}"), ("recipe", "recipe", "{}"), ("n", "n", "{:d}"), ("n_diverged", "div", "{:d}"),
    ("n_failed", "fail", "{:d}"), ("mean", "mean", "{:.1f}"), ("std", "std", "{:.1f}"), ("median", "median", "{:.1f}"),
    ("iqm", "iqm", "{:.1f}"), ("min", "min", "{:.1f}"), ("max", "max", "{:.1f}"),
    ("degenerate_rate", "degen%", "{:.0%}"), ("mean_nondeg", "mean*", "{:.1f}"), ("std_nondeg", "std*", "{:.1f}"),
]  # fmt: skip


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "-"
    try:
        return fmt.format(int(value) if fmt == "{:d}" else value)
    except (TypeError, ValueError):
        return str(value)


def format_summary(df: pd.DataFrame) -> str:
    """Fixed-width terminal table of a `summarize` frame, with the mean's and degenerate rate's CIs."""
    if df.empty:
        return "(no runs)"
    header = [title for _, title, _ in SUMMARY_VIEW] + ["mean 95% CI", "degen 95% CI"]
    body = []
    for row in df.to_dict("records"):
        cells = [_cell(row.get(col), fmt) for col, _, fmt in SUMMARY_VIEW]
        cells.append(f"[{_cell(row.get('mean_ci_lo'), '{:.1f}')}, {_cell(row.get('mean_ci_hi'), '{:.1f}')}]")
        cells.append(f"[{_cell(row.get('degenerate_lo'), '{:.0%}')}, {_cell(row.get('degenerate_hi'), '{:.0%}')}]")
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    left = {0, 1}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    notes = "* over non-degenerate runs; n excludes failed runs; diverged runs count as degenerate"
    return "\n".join([line(header), rule, *(line(r) for r in body), notes])
