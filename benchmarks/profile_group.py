"""Where a seed group's time goes, per phase, for this checkout and another one side by side.

`python benchmarks/bench_vectorised.py --profile [--base DIR]` (table: results/bench/group_profile.md) calls
`profile_table`: each (checkout, repetition) trains the same groups of the packaged MiniLM on SST-2 in a child
process that imports `harness` from that checkout, the checkouts alternating; the table gives each phase's
median CPU seconds. A phase is the CPU time spent inside the calls listed in PHASES, charged to the outermost
one (the forward inside an evaluation is eval); `other` is the rest of `train_group`. The same names are
hooked in both checkouts where they exist, so a phase means the same work in both (`before` = e.g. a
`git worktree` of the base commit).

    python benchmarks/profile_group.py --child --checkout DIR --runs 4 --k 4 --steps 8  # one child, JSON out
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# phase -> the calls charged to it ("module:attribute.path"); a name a checkout lacks is skipped there.
PHASES: dict[str, tuple[str, ...]] = {
    "model building": (
        "harness.training.vectorised.build:build_models",
        "harness.training.vectorised.build:build_group",
        "harness.training.vectorised.build:parameter_vectors",
        "harness.training.vectorised.engine:stack_parameters",
        "harness.training.vectorised.engine:stack_runs",  # consumes build_models (a generator since engine-speed)
        "harness.training.vectorised.model:StackedModel.__init__",
        "harness.training.vectorised.optim:StackedAdamW.__init__",
        "harness.training.vectorised.engine:load_tokenizer",
    ),
    "data / batching": (
        "harness.experiment.data:load_split",
        "harness.experiment.data:stratified_sample",
        "harness.experiment.data:eval_splits",
        "harness.training.loop:Encoded.__init__",
        "harness.training.vectorised.engine:batch_order",
        "harness.training.vectorised.engine:build_batches",
        "harness.training.vectorised.engine:build_eval_set",
        "harness.training.vectorised.batches:Batches.at",
    ),
    "forward": (
        "harness.training.vectorised.model:StackedModel.logits",
        "harness.training.vectorised.engine:_per_run_loss",
    ),
    "backward": ("torch:Tensor.backward",),
    "optimizer (with gradient gather)": (
        "harness.training.vectorised.optim:StackedAdamW.step",
        "torch:cat",  # the old engine gathered each step's gradients with one torch.cat outside any other phase
        "torch:Tensor.zero_",  # the new one zeroes its flat gradient buffer instead
    ),
    "eval": ("harness.training.vectorised.engine:_Group.evaluate",),
}


class Clock:
    """CPU and wall seconds per phase; a call inside another hooked call is charged to the outer one."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.active: str | None = None

    def wrap(self, phase: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.active is not None:
                return fn(*args, **kwargs)
            self.active = phase
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[phase] = self.cpu.get(phase, 0.0) + time.process_time() - cpu
                self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - wall
                self.active = None

        return timed

    def install(self) -> list[str]:
        """Hook every listed call that exists; returns the ones hooked."""
        hooked = []
        for phase, targets in PHASES.items():
            for target in targets:
                module_name, path = target.split(":")
                owner: Any = importlib.import_module(module_name)
                *parents, attr = path.split(".")
                try:
                    for part in parents:
                        owner = getattr(owner, part)
                    fn = getattr(owner, attr)
                except AttributeError:
                    continue
                setattr(owner, attr, self.wrap(phase, fn))
                hooked.append(target)
        return hooked


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Train `runs` runs in groups of `k` with `harness` imported from args.checkout; phases and results."""
    sys.path.insert(0, str(Path(args.checkout).resolve()))
    import torch

    import harness  # from the checkout, before bench_vectorised puts this one on the path
    from harness.storage.records import RunContext

    assert Path(harness.__file__).resolve().is_relative_to(Path(args.checkout).resolve()), harness.__file__
    sys.path.insert(1, str(ROOT / "benchmarks"))
    from bench_runs import bench_specs

    from harness.training.vectorised.engine import train_group

    torch.set_num_threads(args.threads)
    ctx = RunContext(data_dir=args.data_dir, device="cpu", threads=args.threads)
    specs = bench_specs(args.model, args.runs, args.steps, args.sample_size, 8, "vectorised", args.eval_size)
    warm = bench_specs(args.model, 1, 1, args.sample_size, 8, "vectorised", args.eval_size)
    train_group(warm, ctx)  # imports, tokenizer and file caches: not part of any phase
    clock = Clock()
    hooked = clock.install()
    import harness.training.vectorised.engine as engine  # the hooked module attributes

    cpu, wall = time.process_time(), time.perf_counter()
    results = []
    for start in range(0, len(specs), args.k):
        results += engine.train_group(specs[start : start + args.k], ctx)
    total_cpu, total_wall = time.process_time() - cpu, time.perf_counter() - wall
    phases = {name: clock.cpu.get(name, 0.0) for name in PHASES}
    phases["other"] = total_cpu - sum(phases.values())
    return {
        "checkout": str(args.checkout),
        "hooked": hooked,
        "cpu": phases,
        "total_cpu": total_cpu,
        "total_wall": total_wall,
        "seed_updates": sum(int(r.run["steps_done"]) for r in results),
        "runs": [{k: r.run[k] for k in ("run_id", "score", "loss_mean", "loss_last", "val_final")} for r in results],
    }


def run_child(checkout: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--checkout", str(checkout)]
    for field in ("model", "data_dir", "runs", "k", "steps", "sample_size", "eval_size", "threads"):
        value = getattr(args, field)
        if value is not None:
            cmd += [f"--{field.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=checkout, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_table(args: argparse.Namespace) -> str:
    """The two checkouts alternated `reps` times; the median CPU seconds per phase, side by side."""
    checkouts = {"before": Path(args.base).resolve(), "after": ROOT} if args.base else {"this checkout": ROOT}
    samples: dict[str, list[dict[str, Any]]] = {label: [] for label in checkouts}
    for _ in range(args.reps):
        for label, checkout in checkouts.items():
            samples[label].append(run_child(checkout, args))
    median = statistics.median
    labels = list(checkouts)
    rows = [*PHASES, "other"]
    lines = [
        f"Seed group CPU profile: {args.runs} runs of the packaged MiniLM on SST-2 in groups of K = {args.k}, "
        f"{args.steps} updates, batch 8, {args.threads} thread(s), CPU seconds of the child process (median of "
        f"{args.reps}, checkouts alternated).",
        "",
        "| phase | " + " | ".join(f"{lbl} CPU s" for lbl in labels) + (" | after / before |" if args.base else " |"),
        "|---|" + "---|" * (len(labels) + (1 if args.base else 0)),
    ]
    for row in [*rows, "total"]:
        values = [median(s["total_cpu"] if row == "total" else s["cpu"][row] for s in samples[lbl]) for lbl in labels]
        cells = [f"{v:.2f}" for v in values]
        if args.base:
            cells.append(f"{values[1] / values[0]:.2f}" if values[0] > 0.005 else "-")
        lines.append(f"| {'**total**' if row == 'total' else row} | " + " | ".join(cells) + " |")
    rates = [median(s["seed_updates"] / s["total_cpu"] for s in samples[lbl]) for lbl in labels]
    lines.append("| seed-updates per CPU second | " + " | ".join(f"{r:.3f}" for r in rates) + (" | " + (
        f"{rates[1] / rates[0]:.2f}" if args.base else "") + " |" if args.base else " |"))  # fmt: skip
    if args.base:
        before, after = samples["before"][-1]["runs"], samples["after"][-1]["runs"]
        same_scores = [a["score"] for a in after] == [b["score"] for b in before]
        gap = max(abs(a["loss_mean"] - b["loss_mean"]) for a, b in zip(after, before, strict=True))
        lines += ["", f"Same runs in both: scores {'identical' if same_scores else 'DIFFER'}, "
                      f"largest loss_mean gap {gap:.2e}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkout", default=str(ROOT), help=argparse.SUPPRESS)
    p.add_argument("--base", default=None, help="another checkout (e.g. the base commit's worktree) to profile beside")
    p.add_argument("--model", default="packaged")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--sample-size", type=int, default=32)
    p.add_argument("--eval-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    print(profile_table(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
