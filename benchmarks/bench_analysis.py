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

from harness.analysis import (
    compare_table,
    early_stopping_table,
    expected_max_table,
    summarize,
    variance_decomposition,
)
from harness.analysis.pipeline import analyze_runs, write_parquet_atomic
from harness.analysis.synthetic import synthetic_runs
from harness.store import CURVE_COLUMNS, RUN_COLUMNS, load_curves, load_runs

ROOT = Path(__file__).resolve().parents[1]


def build_store(exp_dir: Path, n_runs: int, n_evals: int, n_parts: int = 100) -> tuple[int, int]:
    """4 tasks x 10 recipes x (n_runs / 40) runs on an init x order grid, written in n_parts part files."""
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
    for k, idx in enumerate(np.array_split(np.arange(len(runs)), n_parts)):
        part = runs.iloc[idx]
        write_parquet_atomic(curves[curves["run_id"].isin(part["run_id"])], exp_dir / "curves" / f"part{k:04d}.parquet")
        write_parquet_atomic(part, exp_dir / "runs" / f"part{k:04d}.parquet")
    return len(runs), len(curves)


def analyze_store(exp_dir: Path) -> dict:
    """analyze_experiment's path: load, every table, atomic writes. The bench store packs 100 runs per part
    file, so curves are loaded with only_stored=False (the store keys stored runs by part file name)."""
    tables = analyze_runs(load_runs(exp_dir), load_curves(exp_dir, only_stored=False))
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
        n_runs, n_points = build_store(exp_dir, args.runs, args.evals)
        total, tables = timed(analyze_store, exp_dir)
        t_load, runs = timed(load_runs, exp_dir)
        t_curves, curves = timed(load_curves, exp_dir, only_stored=False)
        steps = [
            ("load runs", t_load),
            ("load curves", t_curves),
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
        f"| **full analysis (load + all tables + write)** | **{total:.2f}** |",
        "",
        f"Goal: under 10 s on 2 cores: {'met' if total < 10 else 'NOT met'}.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
