"""The run pipeline: what the scheduler calls for one RunSpec (`harness.training.pipeline:train_run`).

    stages (harness/training/stages/: intermediate task, TAPT)  ->  encoder checkpoints, each keyed by its own spec
    fine_tune (harness/training/loop.py)                        ->  the run, starting from those checkpoints

Stages run first and call the same loop for their own specs; the loop never calls a stage.
"""

from __future__ import annotations

import time

from harness.experiment.spec import RunSpec
from harness.storage.records import RunContext, RunResult
from harness.training.loop import RunStart, fine_tune
from harness.training.stages import stage_checkpoints


def train_run(spec: RunSpec, ctx: RunContext | None = None) -> RunResult:
    """Fine-tune once and return the run's record and eval curve (never raises on NaN).

    The record's wall time counts the stages this call had to train (cached ones cost nothing).
    """
    ctx = ctx or RunContext()
    started = time.perf_counter()
    checkpoints = stage_checkpoints(spec, ctx)
    start = RunStart(
        loaders=tuple(c.load_into for c in checkpoints),
        notes=tuple(c.note for c in checkpoints if c.note),
        started=started,
    )
    return fine_tune(spec, ctx, start)[0]
