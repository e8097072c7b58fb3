"""Fake training functions for the scheduler tests and benchmark (no model, no data).

Each follows the train_run contract: (RunSpec, RunContext) -> RunResult, calls
ctx.on_eval after each eval and stops (status "stopped") when it returns False.
Behaviour that must change between attempts (die once, raise once) keeps a
marker file per run id in $FAKE_STATE_DIR. Sleep per run: $FAKE_SLEEP seconds.

Run as a script it is a driver for the kill tests:
    python tests/fakes_schedule.py RESULTS_ROOT N_RUNS SLOTS
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path

from harness.experiment.config import EarlyStopPolicy, ExperimentSpec, Recipe, RunSpec, SchedulePolicy
from harness.storage.records import EvalPoint, RunContext, RunResult, base_row


def val_curve(spec: RunSpec, fraction: float) -> float:
    """A deterministic dev metric: each seed has its own level, all rise with training."""
    level = 50.0 + (spec.init_seed * 37 % 23)
    return level + 10.0 * fraction


def _result(spec: RunSpec, ctx: RunContext, status: str, curve: list[dict], start: float, notes: str = "") -> RunResult:
    vals = [p["val_metric"] for p in curve] or [math.nan]
    last = curve[-1] if curve else {"step": 0}
    row = {
        **base_row(spec),
        "status": status,
        "metric": "accuracy",
        "score": math.nan if status == "diverged" else max(vals),
        "val_best": max(vals),
        "val_final": vals[-1],
        "steps_done": int(last["step"]),
        "total_steps": 10 * spec.num_evals,
        "wall_time_s": time.monotonic() - start,
        "attempts": 1,
        "device": ctx.device,
        "notes": notes or f"micro_batch_size={ctx.micro_batch_size} threads={ctx.threads} pid={os.getpid()}",
    }
    return RunResult(run=row, curve=curve)


def sleepy(spec: RunSpec, ctx: RunContext) -> RunResult:
    """num_evals evals spread over $FAKE_SLEEP seconds (default 0.3)."""
    start = time.monotonic()
    pause = float(os.environ.get("FAKE_SLEEP", "0.3")) / spec.num_evals
    curve = []
    for i in range(1, spec.num_evals + 1):
        time.sleep(pause)
        fraction = i / spec.num_evals
        point = EvalPoint(spec.run_id, spec.config_key, i - 1, 10 * i, fraction, val_curve(spec, fraction), math.nan)
        curve.append(
            {
                "eval_index": i - 1,
                "step": 10 * i,
                "fraction": fraction,
                "epoch": fraction,
                "train_loss": 1.0 - 0.5 * fraction,
                "val_metric": point.val_metric,
                "test_metric": math.nan,
            }
        )
        if ctx.on_eval is not None and not ctx.on_eval(point):
            return _result(spec, ctx, "stopped", curve, start)
    return _result(spec, ctx, "done", curve, start)


def _first_time(spec: RunSpec, what: str) -> bool:
    """True on the first call for this run id and `what` (marker file in $FAKE_STATE_DIR)."""
    marker = Path(os.environ["FAKE_STATE_DIR"]) / f"{spec.run_id}.{what}"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def _halfway(spec: RunSpec, ctx: RunContext) -> None:
    """Run half the evals (sending them), to crash mid-run."""
    for i in range(1, spec.num_evals // 2 + 1):
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0.3")) / spec.num_evals)
        f = i / spec.num_evals
        if ctx.on_eval is not None:
            ctx.on_eval(EvalPoint(spec.run_id, spec.config_key, i - 1, 10 * i, f, val_curve(spec, f), math.nan))


def die_once_on_seed_2(spec: RunSpec, ctx: RunContext) -> RunResult:
    """Seed 2 kills its own worker with SIGKILL mid-run on the first attempt."""
    if spec.init_seed == 2 and _first_time(spec, "killed"):
        _halfway(spec, ctx)
        os.kill(os.getpid(), signal.SIGKILL)
    return sleepy(spec, ctx)


def raise_on_seed_3(spec: RunSpec, ctx: RunContext) -> RunResult:
    """Seed 3 raises on every attempt; the others train."""
    if spec.init_seed == 3:
        _first_time(spec, f"attempt-{time.time_ns()}")  # count attempts
        raise ValueError(f"boom in seed 3 (pid {os.getpid()})")
    return sleepy(spec, ctx)


def oom_unless_small(spec: RunSpec, ctx: RunContext) -> RunResult:
    """A fake CUDA OOM while the micro-batch is the full batch; torch's type for seed 1, a RuntimeError else."""
    if ctx.micro_batch_size is None or ctx.micro_batch_size >= spec.recipe.batch_size:
        if spec.init_seed == 1:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        raise RuntimeError("CUDA error: out of memory (fake)")
    return sleepy(spec, ctx)


def diverge_on_seed_1(spec: RunSpec, ctx: RunContext) -> RunResult:
    """Seed 1 hits a NaN loss: a `diverged` result (never retried)."""
    if spec.init_seed == 1:
        _first_time(spec, f"attempt-{time.time_ns()}")
        return _result(spec, ctx, "diverged", [], time.monotonic())
    return sleepy(spec, ctx)


def matmul(spec: RunSpec, ctx: RunContext) -> RunResult:
    """A cheap real-ish run for benchmarks/bench_schedule.py: a tiny torch matmul loop of $FAKE_STEPS steps."""
    import torch

    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    start = time.monotonic()
    torch.manual_seed(spec.init_seed)
    a = torch.randn(256, 256)
    w = torch.randn(256, 256) / 16
    curve = []
    steps = int(os.environ.get("FAKE_STEPS", "400"))
    for i in range(1, spec.num_evals + 1):
        for _ in range(steps // spec.num_evals):
            a = torch.tanh(a @ w)
        f = i / spec.num_evals
        val = float(a.abs().mean()) * 100
        curve.append(
            {
                "eval_index": i - 1,
                "step": i,
                "fraction": f,
                "epoch": f,
                "train_loss": 0.0,
                "val_metric": val,
                "test_metric": math.nan,
            }
        )
        if ctx.on_eval is not None and not ctx.on_eval(
            EvalPoint(spec.run_id, spec.config_key, i - 1, i, f, val, math.nan)
        ):
            return _result(spec, ctx, "stopped", curve, start)
    return _result(spec, ctx, "done", curve, start)


def make_experiment(
    name: str,
    seeds: int,
    recipes: tuple[str, ...] = ("a",),
    *,
    num_evals: int = 4,
    max_retries: int = 2,
    early_stop: EarlyStopPolicy | None = None,
) -> ExperimentSpec:
    """An experiment of `seeds` seeds x `recipes` on task rte, without parsing TOML."""
    runs = tuple(
        RunSpec(
            task="rte",
            model="fake",
            recipe=Recipe(name=r, lr=1e-5 * (1 + i)),
            init_seed=s,
            order_seed=s,
            experiment=name,
            num_evals=num_evals,
        )
        for i, r in enumerate(recipes)
        for s in range(1, seeds + 1)
    )
    policy = SchedulePolicy(max_retries=max_retries, early_stop=early_stop)
    return ExperimentSpec(name=name, runs=runs, schedule=policy)


def main(argv: list[str]) -> None:
    from harness.schedule import run_experiment

    root, n, slots = argv[0], int(argv[1]), int(argv[2])
    summary = run_experiment(
        make_experiment("killme", n), root, train_fn="fakes_schedule:sleepy", max_workers=slots, progress=False
    )
    print(summary, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])


def chaos(spec: RunSpec, ctx: RunContext) -> RunResult:
    """Seed 2 is SIGKILLed once, seed 3 always raises, the rest train (one run, several failure kinds)."""
    if spec.init_seed == 3:
        raise ValueError(f"boom in seed 3 (pid {os.getpid()})")
    return die_once_on_seed_2(spec, ctx)
