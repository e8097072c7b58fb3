"""prepare_model: the recipe's changes to a freshly loaded model, in a fixed order."""

from __future__ import annotations

from torch import nn

from harness.experiment.spec import Recipe
from harness.training.recipes import arch
from harness.training.recipes.efficient import apply_bitfit, apply_lora
from harness.training.recipes.mixout import apply_mixout
from harness.training.recipes.reinit import reinit_top_layers

_DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every nn.Dropout (BERT's attention dropout reads `self.dropout.p` too) and the config; returns count."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
            count += 1
    config = getattr(model, "config", None)
    for name in _DROPOUT_FIELDS:
        if config is not None and hasattr(config, name):
            setattr(config, name, p)
    if config is not None and getattr(config, "classifier_dropout", None) is not None:
        config.classifier_dropout = p
    return count


def recipe_dropout(recipe: Recipe) -> float | None:
    """The dropout to impose: the recipe's own, else 0 under Mixout (official Mixout code), else None (keep)."""
    if recipe.dropout is not None:
        return recipe.dropout
    return 0.0 if recipe.mixout > 0 else None


def prepare_model(model: nn.Module, recipe: Recipe, *, init_seed: int) -> nn.Module:
    """Apply, in order: dropout override, re-init (pooler + top L blocks), Mixout, BitFit or LoRA.

    Call after the task head is initialised (Mixout then mixes the head toward its fresh init, as in
    Zhang et al.'s code). Records the trainable parameter names on the model for `set_trainable_phase`.
    Returns the model to train (the same object; LoRA modifies it in place).
    """
    dropout = recipe_dropout(recipe)
    if dropout is not None:
        set_dropout(model, dropout)
    if recipe.reinit_layers > 0 or recipe.reinit_pooler:
        reinit_top_layers(model, recipe.reinit_layers, recipe.reinit_pooler, init_seed)
    if recipe.mixout > 0:
        apply_mixout(model, recipe.mixout)
    if recipe.bitfit:
        apply_bitfit(model)
    elif recipe.lora_r > 0:
        model = apply_lora(model, recipe, init_seed)
    model._harness_trainable = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    model._harness_head = frozenset(arch.head_parameter_names(model))
    return model


def run_notes(model: nn.Module, recipe: Recipe) -> str:
    """One line for the run record: trainable parameter count and the recipe pieces applied."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parts = [f"trainable {trainable:,}/{total:,} params"]
    if recipe.reinit_layers or recipe.reinit_pooler:
        parts.append(f"reinit top {recipe.reinit_layers} layers + pooler")
    if recipe.mixout > 0:
        parts.append(f"mixout p={recipe.mixout} (dropout {recipe_dropout(recipe)})")
    if recipe.bitfit:
        parts.append("bitfit")
    if recipe.lora_r > 0:
        parts.append(f"lora r={recipe.lora_r} alpha={recipe.lora_alpha}")
    return "; ".join(parts)
