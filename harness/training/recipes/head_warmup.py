"""LP-FT head warm-up (Kumar et al. 2022): train only the task head first, then what prepare_model left trainable.

Phases: "head" for steps < recipe.head_warmup_steps, "full" afterwards. A model starts in "full" (the
state prepare_model leaves), so with head_warmup_steps = 0 nothing ever changes.

How the loop uses it: call `set_trainable_phase(model, recipe, step)` before every update (step counts
from 0). When it returns True the set of trainable parameters changed: rebuild the optimiser (its groups
hold only trainable parameters; during the head phase its lr is head_warmup_lr, default lr) and the
scheduler for the steps left in the phase. It returns True at step 0 (entering the head phase) and at
step head_warmup_steps (entering the full phase), and False otherwise.
"""

from __future__ import annotations

from torch import nn

from harness.experiment.spec import Recipe
from harness.training.recipes import arch


def phase_at(recipe: Recipe, step: int) -> str:
    return "head" if step < recipe.head_warmup_steps else "full"


def set_trainable_phase(model: nn.Module, recipe: Recipe, step: int) -> bool:
    """Set requires_grad for the phase of `step`; True when the trainable set changed."""
    phase = phase_at(recipe, step)
    if getattr(model, "_harness_phase", "full") == phase:
        return False
    trainable = getattr(model, "_harness_trainable", None)
    if trainable is None:  # model not prepared by prepare_model: what is trainable now
        trainable = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
        model._harness_trainable = trainable
    head = getattr(model, "_harness_head", None) or frozenset(arch.head_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable and (phase == "full" or name in head))
    model._harness_phase = phase
    return True
