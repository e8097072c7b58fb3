"""Two-stage recipes: an intermediate-task stage whose encoder starts the target run.

The first stage is a run of its own (same model, the intermediate task, a plain
recipe), keyed by its own run_id (which carries the intermediate task's data fingerprint and the
weights', never the target task's) and cached on disk, so the 20 seeds of a target
configuration share one first stage per first-stage seed (the run's sample_seed)
instead of training it 20 times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness.experiment.spec import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training.loop import fine_tune
from harness.training.stages.cache import load_encoder, save_encoder_once, stage_folder


def intermediate_spec(spec: RunSpec) -> RunSpec:
    """The first stage of `spec`: the intermediate task, plain Adam, seeded by the run's sample_seed."""
    recipe = spec.recipe
    assert recipe.intermediate_task is not None
    stage_recipe = Recipe(
        name=f"{recipe.name}-stage1",
        lr=recipe.lr,
        bias_correction=recipe.bias_correction,
        adam_eps=recipe.adam_eps,
        weight_decay=recipe.weight_decay,
        grad_clip=recipe.grad_clip,
        epochs=recipe.intermediate_epochs,
        batch_size=recipe.batch_size,
        warmup_ratio=recipe.warmup_ratio,
        select="final",
    )
    return replace(
        spec,
        task=recipe.intermediate_task,
        custom_task=None,  # task_def prefers custom_task: keeping the target's would train on its data
        data_fingerprints=tuple(p for p in spec.data_fingerprints if p[0] == recipe.intermediate_task),
        recipe=stage_recipe,
        init_seed=spec.sample_seed,
        order_seed=spec.sample_seed,
        sample_size=recipe.intermediate_size,
        eval_protocol="dev",
        eval_size=min(spec.eval_size or 1000, 1000),
        num_evals=1,
    )


@dataclass(frozen=True)
class EncoderCheckpoint:
    path: Path
    record: dict

    def load_encoder_into(self, model: torch.nn.Module) -> None:
        """Copy the stage-1 encoder (embeddings, layers, pooler) into `model`; the head stays new."""
        load_encoder(model, self.path, "intermediate-stage encoder")

    def load_into(self, model: torch.nn.Module) -> None:
        self.load_encoder_into(model)

    @property
    def note(self) -> str:
        return ""  # the target run's spec already names the intermediate task


def intermediate_checkpoint(spec: RunSpec, ctx: RunContext) -> EncoderCheckpoint:
    """Train (once) or load the cached first-stage encoder of `spec`."""
    stage = intermediate_spec(spec)
    folder = stage_folder(ctx, "stages", stage.run_id)

    def train() -> tuple[torch.nn.Module, dict]:  # the stage is an ordinary run
        result, model = fine_tune(stage, replace(ctx, on_eval=None, progress=False))
        if result.run["status"] != "done":
            raise RuntimeError(f"intermediate stage {stage.run_id} ({stage.task}) ended {result.run['status']}")
        return model, {"spec": stage.to_json(), "score": result.run["score"]}

    record = save_encoder_once(folder, train)
    return EncoderCheckpoint(folder / "encoder.safetensors", record)
