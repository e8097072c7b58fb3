"""The K models of a seed group, each built exactly as the loop builds its run's model, and the optimiser's
per-element vectors (LLRD lr multiplier, weight decay, prior WD) from the recipe's parameter groups."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from harness.experiment.spec import ConfigError, Recipe, RunSpec
from harness.training import hashdropout, recipes
from harness.training.loop import seed_everything
from harness.training.models import init_head, load_classifier, resolve_model
from harness.training.vectorised.model import Layout


def build_models(specs: Sequence[RunSpec]) -> list[torch.nn.Module]:
    """One prepared model per spec: pre-trained body, head from init_seed, the recipe's changes, hashed masks."""
    recipe, num_labels = specs[0].recipe, specs[0].task_def.num_labels
    copy_template = checkpoint_lacks_only_head(specs[0], num_labels)  # before seeding: it loads a model (draws)
    template = None
    models = []
    for spec in specs:
        seed_everything(spec.init_seed)  # weights the checkpoint lacks are drawn from init_seed
        if template is None or not copy_template:
            model = load_classifier(spec.model, num_labels, spec.model_layers)
            if template is None:
                template = copy.deepcopy(model)
        else:  # only the head is missing from the checkpoint and init_head redraws it: a copy is the same model
            model = copy.deepcopy(template)
        init_head(model, spec.init_seed)
        model = recipes.prepare_model(model, recipe, init_seed=spec.init_seed)
        hashdropout.install(model, spec.order_seed)  # as the loop: sites named, attention hashed
        models.append(model)
    return models


def parameter_vectors(model: torch.nn.Module, recipe: Recipe, layout: Layout) -> dict[str, torch.Tensor | None]:
    """Per-element lr multiplier, weight decay and prior WD from the recipe's parameter groups."""
    groups = recipes.parameter_groups(model, recipe, recipe.lr)
    name_of = {id(p): n for n, p in model.named_parameters()}
    lr_scale = torch.ones(layout.size)
    wd = torch.zeros(layout.size)
    prior = torch.zeros(layout.size)
    covered = set()
    for group in groups:
        for param in group["params"]:
            name = name_of[id(param)]
            where = layout.slice_of(name)
            lr_scale[where] = group["lr"] / recipe.lr
            wd[where] = group["weight_decay"]
            prior[where] = group["prior_wd"]
            covered.add(name)
    missing = set(layout.names) - covered
    if missing:
        raise ConfigError(f"train_group: frozen parameters {sorted(missing)[:3]} are not supported vectorised")
    return {
        "lr_scale": lr_scale,
        "weight_decay": wd if recipe.weight_decay > 0 else None,
        "prior_wd": prior if recipe.prior_wd > 0 else None,
    }


def checkpoint_lacks_only_head(spec: RunSpec, num_labels: int) -> bool:
    """True when every weight the checkpoint lacks is in the task head (which init_head redraws anyway)."""
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": num_labels, "output_loading_info": True}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if spec.model_layers is not None:
        kwargs["num_hidden_layers"] = spec.model_layers
    try:
        _, info = AutoModelForSequenceClassification.from_pretrained(resolve_model(spec.model), **kwargs)
    except (OSError, ValueError):
        return False
    missing = set(info.get("missing_keys", ())) | set(info.get("mismatched_keys", ()))
    return all(str(key).startswith(("classifier.", "score.")) for key in missing)
