"""Stages: steps composed before a run (intermediate task, TAPT) that hand it an encoder checkpoint.

Each stage is keyed by its own spec's run_id and cached (harness/training/stages/cache.py), so the seeds of a
configuration share one stage. A stage calls the loop (`harness.training.loop`) and is never called by it; the run
pipeline (harness/training/pipeline.py) runs those in STAGES that apply to a recipe, in order, before the run.
A new stage: a module here with a `*_checkpoint(spec, ctx)` whose result has `load_into(model)` and
`note`, and an entry in STAGES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from harness.experiment.spec import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training.stages.cache import CACHE_ENV, cache_root, load_encoder, save_encoder_once
from harness.training.stages.intermediate import EncoderCheckpoint, intermediate_checkpoint, intermediate_spec
from harness.training.stages.tapt import TaptCheckpoint, tapt_checkpoint, tapt_spec


class Checkpoint(Protocol):
    """What a stage hands the run: something to load into the fresh model, and a line for its notes."""

    note: str

    def load_into(self, model: torch.nn.Module) -> None: ...


@dataclass(frozen=True)
class Stage:
    name: str
    applies: Callable[[Recipe], bool]
    checkpoint: Callable[[RunSpec, RunContext], Checkpoint]


# In load order: TAPT's encoder is copied in after the intermediate task's.
STAGES: tuple[Stage, ...] = (
    Stage("intermediate", lambda recipe: recipe.intermediate_task is not None, intermediate_checkpoint),
    Stage("tapt", lambda recipe: recipe.tapt_steps > 0, tapt_checkpoint),
)


def stage_checkpoints(spec: RunSpec, ctx: RunContext) -> list[Checkpoint]:
    """Train (once, cached) or load every stage `spec` needs, in STAGES order."""
    return [stage.checkpoint(spec, ctx) for stage in STAGES if stage.applies(spec.recipe)]


__all__ = [
    "CACHE_ENV",
    "STAGES",
    "Checkpoint",
    "EncoderCheckpoint",
    "Stage",
    "TaptCheckpoint",
    "cache_root",
    "intermediate_checkpoint",
    "intermediate_spec",
    "load_encoder",
    "save_encoder_once",
    "stage_checkpoints",
    "tapt_checkpoint",
    "tapt_spec",
]
