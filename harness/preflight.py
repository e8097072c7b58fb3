"""Checks that need the model's config or the data's size, run once before any run starts.

The loader (harness/experiment/config.py) checks what the experiment file alone decides; these checks need the
model (its positions and layers) or the training set (its size), so a run that could only fail fails here,
naming the field, instead of failing every seed an hour later.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.experiment.spec import ConfigError, ExperimentSpec, RunSpec

if TYPE_CHECKING:
    from harness.experiment.data import Example

# Models whose position table keeps two extra slots (padding offset): usable length is positions - 2.
_OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}


class PreflightError(ConfigError):
    """A field the model or the data cannot support; names the field, the limit and the fix."""


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def model_config(name: str, source: str) -> Mapping[str, Any] | None:
    """The model's config.json as a dict: from its folder, else from the hub cache. Offline, a hub id that is
    not cached is an error here (in a second) instead of ~50 s of HTTP retries per run."""
    from harness.training.models import ModelError

    folder = Path(source)
    if folder.is_dir():
        return _read_json(folder / "config.json")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):
        return _read_json(Path(cached))
    if hub_offline():
        raise ModelError(
            f"model {name!r} is not a local folder and not in the hub cache, and HF_HUB_OFFLINE=1: "
            "check the id, download it once with a network, or point 'model' at a saved model folder"
        )
    return None  # online: transformers fetches it at run time


def _read_json(path: Path) -> Mapping[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_against_model(spec: RunSpec, config: Mapping[str, Any], where: str) -> None:
    """max_seq_length within the model's positions; model_layers and reinit_layers within its layers."""
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int):
        usable = positions - _OFFSET_POSITIONS.get(str(config.get("model_type")), 0)
        if spec.max_seq_length > usable:
            raise PreflightError(
                f"{where}: 'max_seq_length' = {spec.max_seq_length} but model {spec.model!r} has {usable} "
                f"positions; use at most {usable}"
            )
    layers = config.get("num_hidden_layers")
    if isinstance(layers, int):
        if spec.model_layers is not None and spec.model_layers > layers:
            raise PreflightError(
                f"{where}: 'model_layers' = {spec.model_layers} but model {spec.model!r} has {layers} layers; "
                f"use at most {layers}"
            )
        kept = spec.model_layers or layers
        if spec.recipe.reinit_layers > kept:
            raise PreflightError(
                f"{where}: recipe '{spec.recipe.name}' field 'reinit_layers' = {spec.recipe.reinit_layers} but "
                f"the model has {kept} layers; use at most {kept}"
            )


def check_against_data(spec: RunSpec, n_train: int, where: str) -> None:
    """head_warmup_steps must leave steps to fine-tune the whole model (the run's length from the data size)."""
    recipe = spec.recipe
    if recipe.head_warmup_steps == 0:
        return
    n = min(n_train, spec.sample_size) if spec.sample_size else n_train
    total = recipe.max_steps or max(1, math.ceil(round(math.ceil(n / recipe.batch_size) * recipe.epochs, 6)))
    if recipe.head_warmup_steps >= total:
        raise PreflightError(
            f"{where}: recipe '{recipe.name}' field 'head_warmup_steps' = {recipe.head_warmup_steps} but a run of "
            f"task {spec.task!r} has {total} updates ({n} examples); use fewer warm-up steps or train longer"
        )


def check_experiment(
    experiment: ExperimentSpec, configs: Mapping[str, Mapping[str, Any] | None], train_sizes: Mapping[str, int]
) -> None:
    """Every run against its model's config (None: unknown, not checked) and its training set's size."""
    where = experiment.source or experiment.name
    seen: set[tuple[Any, ...]] = set()
    for spec in experiment.runs:
        key = (spec.model, spec.task, spec.recipe, spec.max_seq_length, spec.model_layers, spec.sample_size)
        if key in seen:
            continue
        seen.add(key)
        config = configs.get(spec.model)
        if config is not None:
            check_against_model(spec, config, where)
        if spec.task in train_sizes:
            check_against_data(spec, train_sizes[spec.task], where)


_OR_DEV = ' or use eval_protocol = "dev"'


def check_dev_set(spec: RunSpec, dev: Sequence[Example], where: str) -> None:
    """Each evaluation split of the run's dev set needs two examples per class (the eval_size rule): a dev set
    of one example would leave the held-out test half empty, and every run would fail on an empty metric."""
    from harness.experiment.config import min_eval_size
    from harness.experiment.data import eval_splits  # numpy/scipy: only when a run is about to start

    splits = eval_splits(spec.task_def, dev, spec.eval_protocol, spec.split_seed, spec.eval_size)
    sizes = [len(s) for s in (splits.val, splits.test) if s is not None]
    need = min_eval_size(spec) // len(sizes)
    if min(sizes) < need:
        raise PreflightError(
            f"{where}: task {spec.task!r}: its dev set has {len(dev)} example(s), so an evaluation split holds "
            f"{min(sizes)}; the {spec.eval_protocol} protocol needs at least {need} per split (two per class): "
            f"add dev examples{_OR_DEV if spec.eval_protocol == 'heldout' else ''}"
        )


def sample_notes(experiment: ExperimentSpec, train_sizes: Mapping[str, int]) -> list[str]:
    """Notes for sample sizes at or above the training set: those runs train on all of it."""
    notes = {}
    for spec in experiment.runs:
        n = train_sizes.get(spec.task)
        if spec.sample_size is not None and n is not None and spec.sample_size >= n:
            notes[(spec.task, spec.sample_size)] = (
                f"sample_size = {spec.sample_size} is not below the {n} training examples of task {spec.task!r}: "
                "its runs train on the whole training set (sample_seed changes nothing)"
            )
    return list(notes.values())
