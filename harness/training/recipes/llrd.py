"""Optimiser parameter groups: weight-decay split and layer-wise learning-rate decay (LLRD).

Weight decay (and prior WD) skips biases and LayerNorm weights (standard BERT practice, as in Zhang et
al.'s and Mosbach et al.'s code). The task head's weights are decayed: Zhang's LLRD branch puts the
classifier and pooler in a no-decay group, which we treat as incidental.

LLRD (Zhang et al.'s `get_optimizer_grouped_parameters`): the head, the pooler and anything else outside
the embeddings and the encoder blocks get the base lr; walking down from the top block, the lr is
multiplied by d before each block, so with N blocks block i (0 = bottom) gets lr * d**(N - i) and the
embeddings lr * d**(N + 1).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from harness.experiment.spec import Recipe
from harness.training.recipes import arch


def parameter_groups(model: nn.Module, recipe: Recipe, lr: float) -> list[dict[str, Any]]:
    """Groups of trainable parameters, each with `name`, `lr`, `weight_decay` and `prior_wd`."""
    depth = _depths(model) if recipe.llrd is not None else {}
    no_decay = arch.no_decay_parameter_ids(model)
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        level, exponent = depth.get(id(param), ("top", 0))
        decay = id(param) not in no_decay
        key = (level, decay)
        if key not in groups:
            groups[key] = {
                "name": f"{level}/{'decay' if decay else 'no_decay'}",
                "params": [],
                "lr": lr * (recipe.llrd or 1.0) ** exponent,
                "weight_decay": recipe.weight_decay if decay else 0.0,
                "prior_wd": recipe.prior_wd if decay else 0.0,
            }
        groups[key]["params"].append(param)
    return list(groups.values())


def _depths(model: nn.Module) -> dict[int, tuple[str, int]]:
    """id(param) -> (group level name, exponent of the decay factor) for embeddings and encoder blocks."""
    layers = arch.encoder_layers(model, "llrd")
    n = len(layers)
    out: dict[int, tuple[str, int]] = {}
    for index, layer in enumerate(layers):
        for param in layer.parameters():
            out[id(param)] = (f"layer.{index}", n - index)
    emb = arch.embeddings(model)
    if emb is not None:
        for param in emb.parameters():
            out[id(param)] = ("embeddings", n + 1)
    return out
