"""Training length (epochs or max_steps) and the linear warmup + linear decay learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from harness.experiment.spec import ConfigError, Recipe


def total_training_steps(recipe: Recipe, n_train_examples: int) -> int:
    """recipe.max_steps when set, else ceil(n / batch_size) * epochs (last partial batch kept; fractional
    epochs rounded up to a whole update)."""
    if recipe.max_steps is not None:
        return recipe.max_steps
    if n_train_examples < 1:
        raise ConfigError(f"recipe '{recipe.name}': the training set is empty; cannot size the run by epochs")
    per_epoch = math.ceil(n_train_examples / recipe.batch_size)
    return max(1, math.ceil(round(per_epoch * recipe.epochs, 6)))


def warmup_steps_for(recipe: Recipe, total_steps: int) -> int:
    """int(warmup_ratio * total_steps), as Zhang et al.'s run_glue.py."""
    return int(recipe.warmup_ratio * total_steps)


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """lr multiplier: step / warmup during warmup, then linear to 0 at total_steps (HF's linear schedule)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int, warmup_steps: int | None = None
) -> LambdaLR:
    """Linear warmup (default warmup_ratio * total_steps) then linear decay to 0 at total_steps.

    Call scheduler.step() once after each optimizer.step(); the first update runs at multiplier 0 when
    warmup_steps > 0 (as transformers' get_linear_schedule_with_warmup).
    """
    if total_steps < 1:
        raise ConfigError(f"recipe '{recipe.name}': total_steps = {total_steps}; the run needs at least 1 update")
    warmup = warmup_steps_for(recipe, total_steps) if warmup_steps is None else warmup_steps
    return LambdaLR(optimizer, lambda step: linear_warmup_decay(step, total_steps, warmup))
