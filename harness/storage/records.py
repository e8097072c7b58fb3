"""Run records shared by the training loop and the scheduler (no torch here).

The scheduler must be able to write a `failed` record for a run whose worker
died, without importing the training stack; both build rows from here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.experiment.spec import RunSpec


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during a run, as streamed to the scheduler (metrics x100)."""

    run_id: str
    config_key: str
    eval_index: int
    step: int
    fraction: float  # of the run's total steps
    val_metric: float
    test_metric: float


@dataclass(frozen=True)
class RunContext:
    """Where and how a run executes; none of it changes the result, so none of it is in run_id."""

    data_dir: str | None = None
    device: str = "cpu"
    threads: int | None = None
    micro_batch_size: int | None = None  # < batch_size: gradient accumulation (OOM retry)
    cache_dir: str | None = None  # intermediate-stage and TAPT models, keyed by spec hash
    # Called after every evaluation; returning False stops the run (status "stopped").
    on_eval: Callable[[EvalPoint], bool] | None = field(default=None, compare=False)
    progress: bool = False  # show a per-run step bar
    deterministic: bool = False  # torch.use_deterministic_algorithms (bit-identical reruns, slower)


@dataclass(frozen=True)
class RunResult:
    run: dict[str, Any]  # one row for store.write_run
    curve: list[dict[str, Any]]
    # Per-example predictions at the selected checkpoint: {"val": [...], "test": [...]}, one value per example
    # of the split in its stored order (class id, or the score for regression); None when not recorded.
    predictions: dict[str, list[float]] | None = None
    # A seed-group engine sets this when it removed the run, stopped early, from its group's batch: the fraction
    # of training at which its compute ended. None: it kept computing (frozen in the batch) until its group
    # ended, so stopping it saved nothing. A run trained alone ends its process at the stop and needs no field.
    dropped_at: float | None = None


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_row(spec: RunSpec) -> dict[str, Any]:
    """Identity columns of a run's record."""
    return {
        "run_id": spec.run_id,
        "experiment": spec.experiment,
        "task": spec.task,
        "recipe": spec.recipe.name,
        "model": spec.model,
        "config_key": spec.config_key,
        "init_seed": spec.init_seed,
        "order_seed": spec.order_seed,
        "sample_seed": spec.sample_seed,
        "sample_size": spec.sample_size,
        "spec": spec.to_json(),
        "finished_at": utc_now(),
    }


ERROR_HEAD = 1000
ERROR_TAIL = 3000


def clip_error(error: str) -> str:
    """The first lines (the exception's type and message) and the end of the traceback, at most ~4,000 chars."""
    if len(error) <= ERROR_HEAD + ERROR_TAIL:
        return error
    cut = len(error) - ERROR_HEAD - ERROR_TAIL
    return f"{error[:ERROR_HEAD]}\n[... {cut} characters cut ...]\n{error[-ERROR_TAIL:]}"


def failed_row(spec: RunSpec, error: str, attempts: int, device: str = "") -> dict[str, Any]:
    """The record of a run that crashed on every attempt: no metrics, the error kept."""
    nan = float("nan")
    return {
        **base_row(spec),
        "status": "failed",
        "metric": "",
        "score": nan,
        "steps_done": 0,
        "total_steps": 0,
        "attempts": attempts,
        "error": clip_error(error),
        "device": device,
    }
