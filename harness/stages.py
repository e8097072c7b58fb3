"""Two-stage recipes: an intermediate-task stage whose encoder starts the target run.

The first stage is a run of its own (same model, the intermediate task, a plain
recipe), keyed by its own run_id and cached on disk, so the 20 seeds of a target
configuration share one first stage per first-stage seed (the run's sample_seed)
instead of training it 20 times.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from harness.config import Recipe, RunSpec
from harness.records import RunContext

CACHE_ENV = "HARNESS_CACHE_DIR"


def cache_root(ctx: RunContext) -> Path:
    return Path(ctx.cache_dir or os.environ.get(CACHE_ENV) or "results/.cache")


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
        recipe=stage_recipe,
        init_seed=spec.sample_seed,
        order_seed=spec.sample_seed,
        sample_size=recipe.intermediate_size,
        eval_protocol="dev",
        eval_size=min(spec.eval_size or 1000, 1000),
        num_evals=1,
    )


def save_encoder_once(folder: Path, train: Callable[[], tuple[torch.nn.Module, dict]], save_head: bool = False) -> dict:
    """Run `train` at most once per folder (under a lock across processes) and keep its encoder.

    The encoder file is written last, by rename: its presence means the stage is complete, so a crash
    mid-stage makes the next run train it again instead of loading half a stage.
    """
    encoder, record_path = folder / "encoder.safetensors", folder / "record.json"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not encoder.is_file():
            model, record = train()
            if save_head:  # everything outside the encoder (e.g. the MLM head); clones un-tie shared weights
                prefix = f"{model.base_model_prefix}."
                head = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix)}
                save_file(head, folder / "head.safetensors")
            record_path.write_text(json.dumps(record))
            tmp = encoder.with_suffix(".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in model.base_model.state_dict().items()}, tmp)
            os.replace(tmp, encoder)
    return json.loads(record_path.read_text()) if record_path.is_file() else {}


def load_encoder(model: torch.nn.Module, path: Path, what: str, optional: tuple[str, ...] = ()) -> None:
    """Copy a saved encoder into `model.base_model`; keys starting with `optional` may be absent."""
    missing, unexpected = model.base_model.load_state_dict(load_file(path), strict=False)
    missing = [k for k in missing if not k.startswith(optional)] if optional else missing
    if missing or unexpected:
        raise RuntimeError(f"{path}: {what} does not fit the model (missing {missing}, unexpected {unexpected})")


@dataclass(frozen=True)
class EncoderCheckpoint:
    path: Path
    record: dict

    def load_encoder_into(self, model: torch.nn.Module) -> None:
        """Copy the stage-1 encoder (embeddings, layers, pooler) into `model`; the head stays new."""
        load_encoder(model, self.path, "intermediate-stage encoder")


def intermediate_checkpoint(spec: RunSpec, ctx: RunContext) -> EncoderCheckpoint:
    """Train (once) or load the cached first-stage encoder of `spec`."""
    from harness.train import fine_tune  # the stage is an ordinary run

    stage = intermediate_spec(spec)
    folder = cache_root(ctx) / "stages" / stage.run_id

    def train() -> tuple[torch.nn.Module, dict]:
        result, model = fine_tune(stage, replace(ctx, on_eval=None, progress=False))
        if result.run["status"] != "done":
            raise RuntimeError(f"intermediate stage {stage.run_id} ({stage.task}) ended {result.run['status']}")
        return model, {"spec": stage.to_json(), "score": result.run["score"]}

    record = save_encoder_once(folder, train)
    return EncoderCheckpoint(folder / "encoder.safetensors", record)
