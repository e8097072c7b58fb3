"""Benchmark: the scheduler's overhead per run, and runs/hour with GPU packing. Not a unit test.

CPU: the same N runs of a small torch matmul "training" (tests/fakes_schedule.py:matmul) called directly vs through
run_experiment (local backend, 1 slot of 1 thread; and 2 slots for reference), each with one process per attempt
($HARNESS_WARM_WORKERS=0, as before warm workers) and with a warm worker per slot: overhead per run and ratio. The
run comes from tests/fakes_torch.py, a module that imports torch as the real training module does, so the
forkserver preloads torch for every worker (it starts once per process, with the first train function's module).
GPU (only when torch.cuda.is_available()): 40 few-sample runs of the packaged model, one at a time vs
packed 2/4/8 per GPU, in runs/hour.
Writes results/bench/schedule.md.  Usage: python benchmarks/bench_schedule.py [--runs 20] [--gpu-runs 40]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.experiment.config import ExperimentSpec, Recipe, RunSpec, SchedulePolicy, parse_experiment
from harness.schedule import run_experiment
from harness.storage.records import RunContext
from harness.storage.store import load_runs

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
STEPS = 1000  # ~0.5 s per run on one CPU thread


def cpu_experiment(name: str, n: int, slots: int) -> ExperimentSpec:
    runs = tuple(RunSpec("rte", "matmul", Recipe(), s, s, experiment=name, num_evals=10) for s in range(1, n + 1))
    return ExperimentSpec(name=name, runs=runs, schedule=SchedulePolicy(threads_per_run=1))


def bench_cpu(n: int) -> list[str]:
    from fakes_schedule import matmul  # tests/ is on sys.path (main); STEPS reaches it as $FAKE_STEPS

    exp = cpu_experiment("bench-cpu", n, 1)
    matmul(exp.runs[0], RunContext(threads=1))  # warm-up: torch kernels
    start = time.perf_counter()
    for spec in exp.runs:
        matmul(spec, RunContext(threads=1))
    direct = time.perf_counter() - start
    rows = [f"| direct loop (1 thread) | - | {n} | {direct:.2f} | {direct / n:.3f} | - | 1.00 |"]
    for slots, warm in itertools.product((1, 2), (False, True)):  # side by side: before and after
        os.environ["HARNESS_WARM_WORKERS"] = "1" if warm else "0"
        name = f"bench-cpu-{slots}-{int(warm)}"
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = run_experiment(
                cpu_experiment(name, n, slots), tmp, train_fn="fakes_torch:matmul", max_workers=slots, progress=False
            )
            wall = time.perf_counter() - start
            assert summary.done == n, summary
            processes = load_runs(Path(tmp) / name)["notes"].str.extract(r"pid=(\d+)")[0].nunique()
        overhead = (wall * slots - direct) / n  # slot-seconds per run beyond the training itself
        how = "warm worker per slot" if warm else "one process per attempt"
        rows.append(
            f"| run_experiment, {slots} slot(s) x 1 thread, {how} | {processes} | {n} | {wall:.2f} | "
            f"{wall / n:.3f} | {overhead:+.3f} | {wall / direct:.2f} |"
        )
    os.environ.pop("HARNESS_WARM_WORKERS", None)
    return [
        "| how | worker processes | runs | wall s | wall s / run | overhead slot-s / run | ratio to direct |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def gpu_experiment(name: str, n: int, runs_per_gpu: int) -> ExperimentSpec:
    data = {
        "name": name,
        "task": "sst2",
        "model": "packaged",
        "sample_size": 64,
        "eval_size": 256,
        "num_evals": 4,
        "seeds": n,
        "recipes": {"few": {"lr": 2e-5, "batch_size": 16, "max_steps": 60}},  # a table of named recipes
        "schedule": {"runs_per_gpu": runs_per_gpu, "threads_per_run": 1},
    }
    return parse_experiment(data, f"<bench {name}>")


def bench_gpu(n: int) -> list[str]:
    header = ["| runs per GPU | runs | wall s | runs / hour | speed-up |", "|---|---|---|---|---|"]
    if not torch.cuda.is_available():
        return [*header, "| skipped: no CUDA GPU on this machine | - | - | - | - |"]
    rows, base = [], None
    for packing in (1, 2, 4, 8):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = run_experiment(gpu_experiment(f"bench-gpu-{packing}", n, packing), tmp, progress=False)
            wall = time.perf_counter() - start
        per_hour = summary.done * 3600 / wall
        base = base or per_hour
        rows.append(f"| {packing} | {summary.done}/{n} | {wall:.1f} | {per_hour:.0f} | {per_hour / base:.2f} |")
    return [*header, *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gpu-runs", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "schedule.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))  # the run is tests/fakes_torch.py:matmul; workers inherit sys.path
    # ... but Python 3.11's forkserver ignores the driver's sys.path when it preloads: $PYTHONPATH it does see
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    os.environ["FAKE_STEPS"] = str(STEPS)  # ... and the environment
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        "# Scheduler benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU core(s), GPU: {gpu}; "
        f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"## CPU: harness overhead per run ({args.runs} runs of a {STEPS}-step 256x256 matmul loop)",
        "",
        *bench_cpu(args.runs),
        "",
        f"## GPU: packing runs per GPU ({args.gpu_runs} few-sample runs of the packaged model)",
        "",
        *bench_gpu(args.gpu_runs),
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
