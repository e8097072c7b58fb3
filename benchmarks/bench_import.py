"""Benchmark: `harness import` of a made-up 600-run log (4 tasks x 3 recipes x 50 seeds, 10 evals each),
then `harness report` on it, both through the command line as a user runs them.

Writes the CSVs (tests/import_data.py) under a temporary folder and a Markdown table to
results/bench/import.md. Not a unit test.
Usage: python benchmarks/bench_import.py [--seeds 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from import_data import write_runs_csv  # noqa: E402


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    print(done.stdout.strip(), flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    harness = [sys.executable, "-m", "harness.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        runs_csv, curves_csv = write_runs_csv(Path(tmp), seeds=args.seeds)
        results = str(Path(tmp) / "results")
        n_rows = len(runs_csv.read_text().splitlines()) - 1
        import_cmd = [*harness, "--results", results, "import", str(runs_csv), "--name", "theirs", "--curves",
                      str(curves_csv), "--map", "dev_best=best", "--map", "dev_last=last", "--select", "best",
                      "--missing", "diverged"]  # fmt: skip
        t_import = timed(import_cmd)
        t_reimport = timed(import_cmd)
        t_report = timed([*harness, "--results", results, "report", "theirs"])
    shown = "harness import runs.csv --name theirs --curves curves.csv --map dev_best=best --map dev_last=last "
    shown += "--select best --missing diverged"
    lines = [
        f"# Import benchmark ({n_rows} runs, 4 tasks x 3 recipes x {args.seeds} seeds, 10 evals each)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}.",
        "",
        "| step | command | wall s |",
        "| :-- | :-- | --: |",
        f"| import | `{shown}` | {t_import:.1f} |",
        f"| re-import (idempotent) | same | {t_reimport:.1f} |",
        f"| report | `harness report theirs` | {t_report:.1f} |",
        "",
    ]
    out = ROOT / "results" / "bench" / "import.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
