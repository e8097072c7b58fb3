"""Where things are in a BERT-like model: encoder blocks, pooler, embeddings, task head.

The recipes only assume the Hugging Face layout `model.base_model.{embeddings, encoder.layer, pooler}`
(BERT, RoBERTa, ELECTRA, MiniLM) and that everything outside `model.base_model` is the task head.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from harness.experiment.spec import ConfigError


def encoder_layers(model: nn.Module, why: str) -> nn.ModuleList:
    """`model.base_model.encoder.layer`, or a ConfigError naming the recipe field that needs it."""
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            f"{why} needs a BERT-like model with `base_model.encoder.layer` (BERT, RoBERTa, ELECTRA, MiniLM); "
            f"{type(model).__name__} has none: drop that field for this model"
        )
    return layers


def pooler(model: nn.Module) -> nn.Module | None:
    """`model.base_model.pooler`, or None when the model has no pooler (e.g. RoBERTa classifiers)."""
    return getattr(getattr(model, "base_model", None), "pooler", None)


def embeddings(model: nn.Module) -> nn.Module | None:
    return getattr(getattr(model, "base_model", None), "embeddings", None)


def head_module_names(model: nn.Module) -> list[str]:
    """Top-level children outside the pre-trained body that hold parameters: the new task head."""
    body = getattr(model, "base_model", None)
    if body is None or body is model:
        raise ConfigError(
            f"{type(model).__name__} has no task head outside `base_model`; load a *ForSequenceClassification model"
        )
    children = model.named_children()
    return [name for name, child in children if child is not body and any(True for _ in child.parameters())]


def head_parameter_names(model: nn.Module) -> set[str]:
    prefixes = tuple(f"{name}." for name in head_module_names(model))
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def no_decay_parameter_ids(model: nn.Module) -> set[int]:
    """Biases and normalisation weights: excluded from weight decay (standard BERT practice)."""
    ids = set()
    for module in model.modules():
        is_norm = isinstance(module, nn.LayerNorm | nn.GroupNorm) or "Norm" in type(module).__name__
        for pname, param in module.named_parameters(recurse=False):
            if is_norm or pname.endswith("bias"):
                ids.add(id(param))
    return ids


def derived_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for `purpose` drawn from `seed`, independent of other purposes using the same seed.

    The head is initialised with `Generator().manual_seed(init_seed)`; re-init and LoRA use derived streams so
    their draws are not copies of the head's.
    """
    digest = hashlib.sha256(f"{purpose}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
