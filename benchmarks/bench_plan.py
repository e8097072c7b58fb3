"""Benchmark: planning an experiment at the run cap (100,000 runs): load, run ids, and `harness status`.

The loader refuses more than MAX_RUNS runs (harness/experiment/config.py); this measures that the cap itself plans in
seconds, on an empty store (no runs yet). Writes results/bench/plan.md. Not a unit test.
Usage: python benchmarks/bench_plan.py [--seeds 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.experiment.config import parse_experiment
from harness.schedule.status import experiment_status

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=100_000)
    args = parser.parse_args()
    data = {"name": "plan", "task": "rte", "model": "m", "seeds": args.seeds, "recipes": {"a": {}}}
    rows = []

    def timed(name: str, fn: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        rows.append((name, time.perf_counter() - wall, time.process_time() - cpu))
        return value

    spec = timed("load + expand", lambda: parse_experiment(data, "bench_plan.toml"))
    ids = timed("run ids (first time)", lambda: {r.run_id for r in spec.runs})
    with tempfile.TemporaryDirectory() as tmp:
        status = timed("status (empty store)", lambda: experiment_status(spec, tmp, slots=1))
    assert len(ids) == args.seeds and int(status["pending"].sum()) == args.seeds
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"# Planning {args.seeds} runs",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"peak RSS {peak_mb:.0f} MB.",
        "",
        "| step | wall s | CPU s |",
        "| :-- | --: | --: |",
        *(f"| {name} | {wall:.2f} | {cpu:.2f} |" for name, wall, cpu in rows),
        "",
    ]
    out = ROOT / "results" / "bench" / "plan.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
