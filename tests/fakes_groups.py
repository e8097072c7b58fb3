"""Fake seed-group training functions for the scheduler tests (no model): the train_group contract,
(specs, ctx, on_evals) -> one RunResult per spec. Each call leaves a marker per member in $FAKE_STATE_DIR
(`<run_id>.group-<pid>-<ns>`), so a test counts how often a run was trained.

Run as a script it is a driver for the kill test:
    python tests/fakes_groups.py RESULTS_ROOT N_RUNS SEEDS_PER_WORKER
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
from pathlib import Path

from fakes_schedule import _first_time, _result, make_experiment, val_curve

from harness.experiment.spec import ExperimentSpec, RunSpec
from harness.storage.records import EvalPoint, RunContext, RunResult


def group_experiment(name: str, seeds: int, k: int, **kw) -> ExperimentSpec:
    """make_experiment's runs, trained vectorised in groups of k."""
    exp = make_experiment(name, seeds, **kw)
    runs = tuple(dataclasses.replace(s, engine="vectorised") for s in exp.runs)
    return dataclasses.replace(exp, runs=runs, schedule=dataclasses.replace(exp.schedule, seeds_per_worker=k))


def _mark(specs: list[RunSpec]) -> None:
    for spec in specs:
        (Path(os.environ["FAKE_STATE_DIR"]) / f"{spec.run_id}.group-{os.getpid()}-{time.time_ns()}").touch()


def group_sleepy(specs: list[RunSpec], ctx: RunContext, on_evals=None) -> list[RunResult]:
    """num_evals evals over $FAKE_SLEEP seconds for the whole group; stopped members get no more evals but
    (like the seed-group engine today) report no `dropped_at`: for the accounting they stayed in the batch."""
    _mark(specs)
    start = time.monotonic()
    n_evals = specs[0].num_evals
    pause = float(os.environ.get("FAKE_SLEEP", "0.3")) / n_evals
    curves: dict[str, list[dict]] = {s.run_id: [] for s in specs}
    status = {s.run_id: "done" for s in specs}
    for i in range(1, n_evals + 1):
        time.sleep(pause)
        fraction = i / n_evals
        live = [s for s in specs if status[s.run_id] == "done"]
        points = [
            EvalPoint(s.run_id, s.config_key, i - 1, 10 * i, fraction, val_curve(s, fraction), math.nan) for s in live
        ]
        for spec, point in zip(live, points, strict=True):
            curves[spec.run_id].append(
                {"eval_index": i - 1, "step": 10 * i, "fraction": fraction, "epoch": fraction,
                 "train_loss": 1.0, "val_metric": point.val_metric, "test_metric": math.nan}
            )  # fmt: skip
        if on_evals is not None and points:
            for spec, keep in zip(live, on_evals(points), strict=True):
                if not keep and i < n_evals:
                    status[spec.run_id] = "stopped"
    note = f"group={len(specs)} pid={os.getpid()}"
    return [_result(s, ctx, status[s.run_id], curves[s.run_id], start, notes=note) for s in specs]


def group_drops_stopped(specs: list[RunSpec], ctx: RunContext, on_evals=None) -> list[RunResult]:
    """group_sleepy, reporting (as an engine that shrinks its batch would) where each stopped run left it."""
    results = group_sleepy(specs, ctx, on_evals)
    return [
        dataclasses.replace(r, dropped_at=r.curve[-1]["fraction"]) if r.run["status"] == "stopped" else r
        for r in results
    ]


def group_dies_once_with_seed_2(specs: list[RunSpec], ctx: RunContext, on_evals=None) -> list[RunResult]:
    """The group holding seed 2 kills its worker mid-run on its first attempt. Its marker is its own: the same run
    (one id in any engine) may have been killed once by `fakes_schedule.chaos` in the same state folder."""
    seed_2 = next((s for s in specs if s.init_seed == 2), None)
    if seed_2 is not None and _first_time(seed_2, "group-killed"):
        _mark(specs)
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0.3")) / 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return group_sleepy(specs, ctx, on_evals)


def group_oom_above_2(specs: list[RunSpec], ctx: RunContext, on_evals=None) -> list[RunResult]:
    """A fake CUDA out-of-memory error for groups of more than 2 runs."""
    if len(specs) > 2:
        _mark(specs)
        raise RuntimeError("CUDA error: out of memory (fake, group too large)")
    return group_sleepy(specs, ctx, on_evals)


def main(argv: list[str]) -> None:
    from harness.schedule import run_experiment

    root, n, k = argv[0], int(argv[1]), int(argv[2])
    summary = run_experiment(
        group_experiment("killgroups", n, k), root, train_fn="fakes_schedule:sleepy",
        group_fn="fakes_groups:group_sleepy", max_workers=2, progress=False,
    )  # fmt: skip
    print(summary)


if __name__ == "__main__":
    main(sys.argv[1:])
