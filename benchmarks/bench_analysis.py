"""Benchmark: the full analysis of a synthetic store of 10,000 runs x 20 evaluation points.

Writes the store as Parquet parts under a temporary folder, times the full analysis (load + every
table + writes, as analyze_experiment does), and writes a Markdown table to results/bench/analysis.md. Not a unit test.
Usage: python benchmarks/bench_analysis.py [--runs 10000] [--evals 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.analysis import (
    compare_table,
    early_stopping_table,
    expected_max_table,
    summarize,
    variance_decomposition,
)
from harness.analysis.pipeline import analyze_runs
from harness.analysis.synthetic import synthetic_runs
from harness.storage.store import CURVE_COLUMNS, RUN_COLUMNS, load_curves, load_runs, write_parquet_atomic

ROOT = Path(__file__).resolve().parents[1]


def build_store(exp_dir: Path, n_runs: int, n_evals: int) -> tuple[int, int]:
    """4 tasks x 10 recipes x (n_runs / 40) runs on an init x order grid, one part file per run (the real layout)."""
    per_config = n_runs // 40
    n_init = int(np.sqrt(per_config))
    while per_config % n_init:
        n_init -= 1
    recipes = tuple(f"r{k}" for k in range(10))
    runs, curves = synthetic_runs(
        n_init=n_init, n_order=per_config // n_init, recipes=recipes, tasks=("rte", "mrpc", "cola", "stsb"),
        n_evals=n_evals, seed=0,
    )  # fmt: skip
    runs = runs.reindex(columns=list(RUN_COLUMNS))
    curves = curves.reindex(columns=list(CURVE_COLUMNS))
    for frame, schema in ((runs, RUN_COLUMNS), (curves, CURVE_COLUMNS)):
        for col, dtype in schema.items():
            if dtype == "int64":
                frame[col] = frame[col].fillna(0)
    runs, curves = runs.astype(RUN_COLUMNS), curves.astype(CURVE_COLUMNS)
    curves = curves.sort_values(["run_id", "eval_index"], ignore_index=True)
    run_table = pa.Table.from_pandas(runs, preserve_index=False)
    curve_table = pa.Table.from_pandas(curves, preserve_index=False)
    ids = curves["run_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = dict(zip(ids[starts], zip(starts, np.r_[starts[1:], len(ids)], strict=True), strict=True))
    for folder in ("runs", "curves"):
        (exp_dir / folder).mkdir(parents=True, exist_ok=True)
    for i, run_id in enumerate(runs["run_id"]):
        lo, hi = bounds[run_id]
        pq.write_table(curve_table.slice(lo, hi - lo), exp_dir / "curves" / f"{run_id}.parquet")
        pq.write_table(run_table.slice(i, 1), exp_dir / "runs" / f"{run_id}.parquet")
    return len(runs), len(curves)


def analyze_store(exp_dir: Path) -> dict:
    """analyze_experiment's path: load, every table, atomic writes."""
    tables = analyze_runs(load_runs(exp_dir), load_curves(exp_dir))
    for name, frame in tables.items():
        write_parquet_atomic(frame, exp_dir / "analysis" / f"{name}.parquet")
    return tables


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--evals", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "analysis.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exp_dir = Path(tmp) / "synthetic"
        t_build, (n_runs, n_points) = timed(build_store, exp_dir, args.runs, args.evals)
        t_cold_runs, _ = timed(load_runs, exp_dir)
        t_cold_curves, _ = timed(load_curves, exp_dir)
        total, tables = timed(analyze_store, exp_dir)
        t_load, runs = timed(load_runs, exp_dir)
        t_curves, curves = timed(load_curves, exp_dir)
        steps = [
            (f"(setup) write {2 * n_runs:,} part files, one per run and table", t_build),
            ("(once) first load of runs: read every part, write the runs.parquet snapshot", t_cold_runs),
            ("(once) first load of curves: read every part, write the curves.parquet snapshot", t_cold_curves),
            ("load runs (snapshot + check of every part's size and mtime)", t_load),
            ("load curves (snapshot + check)", t_curves),
            ("summarize (BCa CIs, Wilson)", timed(summarize, runs)[0]),
            ("compare_table (10 methods, Holm)", timed(compare_table, runs)[0]),
            ("expected_max_table", timed(expected_max_table, runs)[0]),
            ("variance_decomposition", timed(variance_decomposition, runs)[0]),
            ("early_stopping_table", timed(early_stopping_table, curves, runs)[0]),
        ]
    lines = [
        f"# Analysis benchmark ({n_runs:,} runs x {args.evals} evals = {n_points:,} curve points)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"Configurations: {len(tables['summary'])}; comparisons: {len(tables['comparisons'])} rows; "
        f"early-stopping rules: {len(tables.get('early_stopping', []))} rows.",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {name} | {sec:.2f} |" for name, sec in steps),
        f"| **full analysis (load + all tables + write), snapshot in place** | **{total:.2f}** |",
        "",
        f"Goal: under 10 s on 2 cores: {'met' if total < 10 else 'NOT met'} (after the one-time snapshot build).",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
