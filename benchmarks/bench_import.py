"""Benchmark: `harness import` of a made-up 600-run log (4 tasks x 3 recipes x 50 seeds, 10 evals each),
then `harness report` on it, both through the command line as a user runs them; then the import of a
10,000-run log with its curves (~97,000 points), the size an import must finish in seconds.

Writes the CSVs (tests/import_data.py) under a temporary folder and a Markdown table to
results/bench/import.md. Not a unit test. With --baseline DIR (another checkout of the harness, e.g.
`git archive main | tar -x -C DIR`) the large import is also timed with that checkout, on the same files in
the same run, and the table gives both and their ratio.
Usage: python benchmarks/bench_import.py [--seeds 50] [--large-seeds 834] [--baseline DIR]
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


def timed(cmd: list[str], checkout: Path = ROOT) -> float:
    """Wall seconds of `cmd` run with `checkout`'s harness (its folder first on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    print(done.stdout.strip(), flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--large-seeds", type=int, default=834, help="seeds of the large log (834: 10,008 runs)")
    parser.add_argument("--baseline", type=Path, help="another harness checkout to time the large import with")
    args = parser.parse_args()
    harness = [sys.executable, "-m", "harness.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        runs_csv, curves_csv = write_runs_csv(Path(tmp), seeds=args.seeds)
        results = str(Path(tmp) / "results")
        n_rows = len(runs_csv.read_text().splitlines()) - 1

        def import_of(runs: Path, curves: Path, name: str) -> list[str]:
            flags = ["--map", "dev_best=best", "--map", "dev_last=last", "--select", "best", "--missing", "diverged"]
            return [*harness, "--results", results, "import", str(runs), "--name", name, "--curves", str(curves),
                    *flags]  # fmt: skip

        import_cmd = import_of(runs_csv, curves_csv, "theirs")
        t_import = timed(import_cmd)
        t_reimport = timed(import_cmd)
        t_report = timed([*harness, "--results", results, "report", "theirs"])
        large = Path(tmp) / "large"
        large.mkdir()
        big_runs, big_curves = write_runs_csv(large, seeds=args.large_seeds)
        n_large = len(big_runs.read_text().splitlines()) - 1
        n_points = len(big_curves.read_text().splitlines()) - 1
        t_large = timed(import_of(big_runs, big_curves, "large"))
        t_base = None
        if args.baseline is not None:  # the same files, the same run, another checkout
            t_base = timed(import_of(big_runs, big_curves, "large-baseline"), args.baseline.resolve())
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
        f"| import {n_large:,} runs, {n_points:,} curve points | same, on the large log | {t_large:.1f} |",
    ]
    if t_base is not None:
        lines.append(
            f"| the same with the baseline checkout ({args.baseline.name}) | same | {t_base:.1f} "
            f"({t_base / t_large:.0f}x this checkout) |"
        )
    lines.append("")
    out = ROOT / "results" / "bench" / "import.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
