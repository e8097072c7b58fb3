"""Benchmark: `harness analyze` and `harness report` on synthetic stores with evaluation curves, before and after.

Stores: 600 runs (4 tasks x 3 recipes x 50 seeds, the shape of the imported log of bench_import.py) and 10,000
runs (4 tasks x 10 recipes x 250 seeds), 10 evaluation points per run, one part file per run and table (the
layout `harness run` writes). Each command runs in its own process, as a user runs it; the table gives wall
seconds and, in brackets, the CPU seconds (user + system) of that process (the machine may be shared).
With --before REF the same commands run, in the same invocation, with the harness package of git REF (e.g.
main, extracted with `git archive` into a temporary folder) on an identical copy of each store, and the analysis
tables both wrote are compared number by number. Writes results/bench/analysis.md. Not a unit test.
Usage: python benchmarks/bench_analysis.py [--sizes 600,10000] [--evals 10] [--before main]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.analysis.synthetic import synthetic_runs
from harness.storage.store import CURVE_COLUMNS, RUN_COLUMNS, load_curves, load_runs

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("rte", "mrpc", "cola", "stsb")
SHAPES = {600: (3, 5, 10), 10_000: (10, 10, 25)}  # runs: (recipes, init seeds, order seeds) per task
EARLY_STOP = (
    "import sys, time; from harness.storage.store import load_runs, load_curves; "
    "from harness.analysis import early_stopping_table; "
    "from harness.analysis.seeds.degenerate import fill_finished_nan; "
    "runs, curves = fill_finished_nan(load_runs(sys.argv[1])), load_curves(sys.argv[1]); t = time.perf_counter(); "
    "early_stopping_table(curves, runs); print(time.perf_counter() - t)"
)


READ_TABLES = (
    "import sys, time; from harness.analysis import load_or_analyze; t = time.perf_counter(); "
    "assert load_or_analyze(sys.argv[1]).reused; print(time.perf_counter() - t)"
)


def build_store(exp_dir: Path, n_runs: int, n_evals: int) -> tuple[int, int]:
    """4 tasks x recipes x (init x order) runs (SHAPES), one part file per run and table, as `harness run` writes."""
    n_recipes, n_init, n_order = SHAPES.get(n_runs) or (10, *_grid(n_runs // 40))
    recipes = tuple(f"r{k}" for k in range(n_recipes))
    runs, curves = synthetic_runs(n_init=n_init, n_order=n_order, recipes=recipes, tasks=TASKS, n_evals=n_evals, seed=0)
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


def _grid(per_config: int) -> tuple[int, int]:
    n_init = int(np.sqrt(per_config))
    while per_config % n_init:
        n_init -= 1
    return n_init, per_config // n_init


def timed(cmd: list[str], code: Path, timeout: float) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its stdout) of `cmd` run with the harness package under `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} (code {code}) failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def compare_tables(before: Path, after: Path) -> list[str]:
    """Per table both wrote: identical, or the largest relative difference of a number (and any other change)."""
    lines = []
    for path in sorted(before.glob("*.parquet")):
        mine = after / path.name
        if not mine.is_file():
            lines.append(f"- `{path.stem}`: only before")
            continue
        a, b = pd.read_parquet(path), pd.read_parquet(mine)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            lines.append(f"- `{path.stem}`: columns or rows differ ({a.shape} vs {b.shape})")
            continue
        worst, other = 0.0, []
        for col in a.columns:
            x, y = a[col], b[col]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                x, y = x.to_numpy(float), y.to_numpy(float)
                if not np.array_equal(np.isnan(x), np.isnan(y)):
                    other.append(f"{col} (NaN pattern)")
                    continue
                ok = ~np.isnan(x)
                diff = np.abs(x[ok] - y[ok]) / np.maximum(1.0, np.abs(x[ok]))
                worst = max(worst, float(diff.max(initial=0.0)))
            elif not x.astype(str).equals(y.astype(str)):
                other.append(col)
        text = "identical" if worst == 0 and not other else f"max relative difference {worst:.1e}"
        lines.append(f"- `{path.stem}`: {text}" + (f"; differs in {', '.join(other)}" if other else ""))
    lines += [f"- `{p.stem}`: new table" for p in sorted(after.glob("*.parquet")) if not (before / p.name).is_file()]
    return lines


def cell(value: tuple[float, float] | float | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return f"{value[0]:.1f} ({value[1]:.1f})"
    return f"{value:.2f}"


def bench_size(n: int, args: argparse.Namespace, tmp: Path, codes: dict[str, Path]) -> tuple[dict, list[str], str]:
    base = tmp / str(n) / "base"
    t = time.perf_counter()
    n_runs, n_points = build_store(base / "exp", n, args.evals)
    setup = time.perf_counter() - t
    t = time.perf_counter()
    load_runs(base / "exp"), load_curves(base / "exp")
    snapshot = time.perf_counter() - t
    cells: dict[tuple[str, str], object] = {("build", "after"): setup, ("snapshot", "after"): snapshot}
    folders = {}
    for side, code in codes.items():
        root = tmp / str(n) / side
        shutil.copytree(base, root)  # keeps the parts' mtimes, so the snapshot stays valid
        harness = [sys.executable, "-m", "harness.cli", "--results", str(root)]
        print(f"{n} runs, {side}: analyze", flush=True)
        wall, cpu, _ = timed([*harness, "analyze", "exp"], code, args.timeout)
        cells[("analyze", side)] = (wall, cpu)
        folders[side] = root / "tables"
        shutil.copytree(root / "exp" / "analysis", folders[side])
        _, _, out = timed([sys.executable, "-c", EARLY_STOP, str(root / "exp")], code, args.timeout)
        cells[("early_stop", side)] = float(out.strip().splitlines()[-1])
        print(f"{n} runs, {side}: report", flush=True)
        wall, cpu, _ = timed([*harness, "report", "exp"], code, args.timeout)
        cells[("report", side)] = (wall, cpu)
        if side == "after":
            wall, cpu, out = timed([*harness, "analyze", "exp"], code, args.timeout)
            cells[("again", side)] = (wall, cpu) if "are current" in out else "recomputed!"
            _, _, out = timed([sys.executable, "-c", READ_TABLES, str(root / "exp")], code, args.timeout)
            cells[("read", side)] = float(out.strip().splitlines()[-1])
        else:
            cells[("again", side)] = "recomputes"
    same = compare_tables(folders["before"], folders["after"]) if "before" in folders else []
    return cells, same, f"{n_runs:,} runs x {args.evals} evals = {n_points:,} curve points"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="600,10000", help="store sizes in runs, comma-separated")
    parser.add_argument("--evals", type=int, default=10)
    parser.add_argument("--before", help="git ref whose harness package times the 'before' column (e.g. main)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per command")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "analysis.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_start = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        codes = {"after": ROOT}
        if args.before:
            codes = {"before": tmp / "before-code", "after": ROOT}
            codes["before"].mkdir()
            archive = subprocess.run(["git", "archive", args.before, "harness"], cwd=ROOT, capture_output=True)
            if archive.returncode:
                raise SystemExit(f"git archive {args.before}: {archive.stderr.decode().strip()}")
            subprocess.run(["tar", "-x", "-C", str(codes["before"])], input=archive.stdout, check=True)
        for n in sizes:
            results[n] = bench_size(n, args, tmp, codes)
    sides = list(codes)
    header = ["step"] + [f"{n:,} runs, {side}" for n in sizes for side in sides]
    rows = [
        ("analyze", "`harness analyze` (load + every table + write), first time"),
        ("early_stop", "of which the early-stopping simulation (in-process s)"),
        ("report", "`harness report` after `analyze` (before: recomputes the analysis)"),
        ("again", "`harness analyze` again, store unchanged"),
        ("read", "of which checking the fingerprint and reading the stored tables (in-process s)"),
        ("snapshot", "(once) first load of a new store: read every part, write the snapshot"),
        ("build", "(setup) write the parts, one per run and table"),
    ]
    lines = [
        "# Analysis and report benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"{load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared machine: CPU seconds in "
        "brackets). "
        + (f"Before: the harness package of `{args.before}`; after: this checkout." if args.before else ""),
        "",
        *(f"- {n:,}: {results[n][2]}" for n in sizes),
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for key, title in rows:
        values = [cell(results[n][0].get((key, side))) for n in sizes for side in sides]
        lines.append(f"| {title} | " + " | ".join(values) + " |")
    for n in sizes:
        goals = []
        for key, what, limit in (("analyze", "analysis", 10), ("report", "report of stored tables", 5)):
            wall, cpu = results[n][0][(key, "after")]
            verdict = "met" if wall < limit else ("met in CPU time, not in wall time" if cpu < limit else "NOT met")
            goals.append(f"{what} under {limit} s: {verdict} ({wall:.1f} s wall, {cpu:.1f} s CPU)")
        lines += ["", f"Goals at {n:,} runs (after): " + "; ".join(goals) + "."]
        if results[n][1]:
            lines += ["", f"Tables at {n:,} runs, before vs after:", "", *results[n][1]]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
