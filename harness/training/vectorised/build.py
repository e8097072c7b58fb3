"""The K models of a seed group, each built exactly as the loop builds its run's model, and the optimiser's
per-element vectors (LLRD lr multiplier, weight decay, prior WD) from the recipe's parameter groups.

The checkpoint is loaded once: when it lacks only the task head (which init_head redraws from each run's
init_seed) every other run starts from a copy of that load. Models are made one at a time, so the host holds
the template and one run's model, not K (the engine writes each into the stacked device buffer as it comes).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence

import torch

from harness.experiment.spec import ConfigError, Recipe, RunSpec
from harness.training import hashdropout, recipes
from harness.training.loop import seed_everything
from harness.training.models import init_head, load_classifier, load_classifier_with_missing
from harness.training.vectorised.model import Layout

HEAD_PREFIXES = ("classifier.", "score.")


def build_models(specs: Sequence[RunSpec]) -> Iterator[torch.nn.Module]:
    """One prepared model per spec, in order: pre-trained body, head from init_seed, the recipe's changes, hashed
    masks. Lazily: a model is made when the previous one has been consumed."""
    recipe, num_labels = specs[0].recipe, specs[0].task_def.num_labels
    template, copy_template = None, False  # template: the first load before its head is drawn
    for i, spec in enumerate(specs):
        seed_everything(spec.init_seed)  # weights the checkpoint lacks are drawn from init_seed
        if i == 0:
            model, missing = load_classifier_with_missing(spec.model, num_labels, spec.model_layers)
            copy_template = lacks_only_head(missing)
            template = copy.deepcopy(model) if copy_template and len(specs) > 1 else None
        elif copy_template:  # only the head is missing from the checkpoint and init_head redraws it: the same model
            model = copy.deepcopy(template)
        else:  # the checkpoint lacks body weights (drawn from this run's seed at load): load this run's own
            model = load_classifier(spec.model, num_labels, spec.model_layers)
        init_head(model, spec.init_seed)
        model = recipes.prepare_model(model, recipe, init_seed=spec.init_seed)
        hashdropout.install(model, spec.order_seed)  # as the loop: sites named, attention hashed
        yield model


def lacks_only_head(missing: Iterable[str]) -> bool:
    """True when every weight the checkpoint lacks is in the task head (which init_head redraws anyway)."""
    return all(name.startswith(HEAD_PREFIXES) for name in missing)


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
