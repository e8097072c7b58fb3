"""Training engines: the one-run loop (harness.training.loop) or the seed group (harness.training.vectorised).

The engine is part of a run's identity (RunSpec.engine): the vectorised engine draws its dropout from
a counter hash and runs other kernels, so the same seeds give other numbers than the loop. No torch here:
the experiment parser decides the engine from `[schedule] seeds_per_worker` and the recipe.
"""

from __future__ import annotations

import dataclasses
import json

from harness.experiment.spec import Recipe, RunSpec

ENGINES = ("loop", "vectorised")
SEED_FIELDS = ("init_seed", "order_seed", "sample_seed")


def vectorised_unsupported(recipe: Recipe) -> str:
    """Why `recipe` cannot train vectorised ("" when it can): these fall back to one run per worker."""
    reasons = [
        (recipe.intermediate_task is not None, "intermediate_task (a two-stage run)"),
        (recipe.tapt_steps > 0, "tapt_steps (a TAPT stage)"),
        (recipe.cloze, "cloze (the MLM head)"),
        (recipe.lora_r > 0, "lora_r (peft modules)"),
        (recipe.bitfit, "bitfit (frozen weights)"),
        (recipe.r3f_lambda > 0, "r3f_lambda (a second noised forward)"),
        (recipe.head_warmup_steps > 0, "head_warmup_steps (LP-FT phases)"),
        (getattr(recipe, "precision", "fp32") == "fp16", "precision fp16 (needs a loss scaler)"),
    ]
    return ", ".join(why for clash, why in reasons if clash)


def choose_engine(spec: RunSpec, seeds_per_worker: int) -> tuple[RunSpec, str]:
    """The spec with its engine set, and a note when seeds_per_worker > 1 but the recipe falls back."""
    if seeds_per_worker <= 1:
        return spec, ""
    reason = vectorised_unsupported(spec.recipe)
    if reason:
        note = f"seeds_per_worker = {seeds_per_worker} but trained one run per worker: {reason} is not vectorised"
        return spec, note
    return dataclasses.replace(spec, engine="vectorised"), ""


def group_key(spec: RunSpec) -> str:
    """The configuration a run is one seed of, in full (everything in its id but the seeds)."""
    data = spec.canonical()
    for name in SEED_FIELDS:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
