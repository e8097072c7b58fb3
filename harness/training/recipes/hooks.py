"""The three places where a recipe changes a run; the training loop calls each and never reads a recipe field.

    built = build_model(spec, tokenizer, load_stages)   # the model (and tokenizer) the run trains
    updates = Updates(model, recipe, total_steps)       # optimiser + lr schedule, rebuilt at LP-FT phase changes
    loss = training_loss(model, batch, recipe)          # the task loss plus the recipe's penalty (R3F)

A new recipe that changes the model goes into `build_model` (through `prepare_model` when it edits a loaded
classifier: dropout, re-init, Mixout, BitFit, LoRA); one that changes the optimiser or the schedule into
`Updates`; one that adds a loss term into `training_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.experiment.spec import ConfigError, Recipe, RunSpec
from harness.training.models import init_head, load_classifier
from harness.training.recipes import cloze
from harness.training.recipes.head_warmup import set_trainable_phase
from harness.training.recipes.optim import build_optimizer
from harness.training.recipes.prepare import prepare_model
from harness.training.recipes.r3f import regularization_loss
from harness.training.recipes.schedule import build_lr_scheduler


@dataclass(frozen=True)
class BuiltModel:
    model: nn.Module
    tokenizer: Any  # the tokenizer the data is encoded with (cloze wraps it in its pattern)
    notes: tuple[str, ...] = ()  # lines for the run record


def build_model(spec: RunSpec, tokenizer: Any, load_stages: Callable[[nn.Module], None]) -> BuiltModel:
    """The pre-trained body, the stages' encoders (`load_stages`), a head from init_seed, then the recipe's changes.

    Cloze (PET) scores verbalisers with the MLM head instead: no new head, the pattern in the tokenizer.
    Call with the global RNG seeded by init_seed: weights the checkpoint lacks are drawn from it.
    """
    recipe, task = spec.recipe, spec.task_def
    notes: list[str] = []
    if recipe.cloze:
        model, note = cloze.load_cloze_model(spec.model, task, tokenizer, spec.model_layers, recipe.tapt_steps)
        tokenizer = cloze.ClozeTokenizer(tokenizer, task)
        notes.append(note)
    else:
        model = load_classifier(spec.model, task.num_labels, spec.model_layers)
    load_stages(model)
    if not recipe.cloze:
        init_head(model, spec.init_seed)
    model = prepare_model(model, recipe, init_seed=spec.init_seed)
    return BuiltModel(model, tokenizer, tuple(notes))


class Updates:
    """The optimiser and its lr schedule for a run of `total_steps` updates (LP-FT: one pair per phase)."""

    def __init__(self, model: nn.Module, recipe: Recipe, total_steps: int, scaler: Any = None) -> None:
        if recipe.head_warmup_steps >= total_steps:
            raise ConfigError(
                f"recipe '{recipe.name}': head_warmup_steps = {recipe.head_warmup_steps} but the run has only "
                f"{total_steps} updates; use fewer warm-up steps or train longer"
            )
        self.model, self.recipe, self.total_steps = model, recipe, total_steps
        self.scaler = scaler  # torch.amp.GradScaler under fp16, else None
        self.optimizer = build_optimizer(model, recipe)
        self.scheduler = build_lr_scheduler(self.optimizer, recipe, total_steps)

    def begin(self, step: int) -> None:
        """Before update `step` (from 0): at an LP-FT phase change, a new optimiser and schedule for the phase."""
        recipe = self.recipe
        if set_trainable_phase(self.model, recipe, step):
            self.optimizer = build_optimizer(self.model, recipe)
            in_head_phase = step < recipe.head_warmup_steps
            phase_steps = recipe.head_warmup_steps if in_head_phase else self.total_steps - step
            self.scheduler = build_lr_scheduler(self.optimizer, recipe, phase_steps)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of `loss` (scaled under fp16, so small gradients survive)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def apply(self) -> None:
        """Clip the accumulated gradients, step the optimiser and the schedule, clear the gradients."""
        if self.recipe.grad_clip > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # skips the update when fp16 gradients overflowed
            self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def training_loss(model: nn.Module, batch: dict[str, torch.Tensor], recipe: Recipe) -> torch.Tensor:
    """The model's loss on `batch` plus the recipe's extra term (R3F), when it has one.

    Weight-space regularisers (Mixout) live in the model itself (`prepare_model`), not here.
    """
    outputs = model(**batch)
    extra = regularization_loss(model, batch, outputs.logits, recipe)
    return outputs.loss if extra is None else outputs.loss + extra
