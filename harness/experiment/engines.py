"""Training engines: the one-run loop (harness.training.loop) or the seed group (harness.training.vectorised).

One definition of a run: both engines draw the same dropout and Mixout masks from one counter hash and
run the same modules, so a run's numbers do not depend on its engine, and the engine is not part of its
identity (RunSpec.engine is how it is scheduled, like `experiment`, outside the run id). The experiment
parser picks the engine from `[schedule] seeds_per_worker`, the recipe and the model's family, and says
why in `RunSpec.engine_note` when a run asked for a group trains in the loop. No torch here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from harness.experiment.fingerprint import PACKAGED_ALIASES
from harness.experiment.spec import Recipe, RunSpec

ENGINES = ("loop", "vectorised")
SEED_FIELDS = ("init_seed", "order_seed", "sample_seed")

# transformers `model_type`s the seed-group engine stacks, each tested against the loop
# (tests/test_engine_families.py); any other family trains in the loop.
VECTORISED_FAMILIES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "electra",
    "deberta-v2",
    "distilbert",
    "mpnet",
    "modernbert",
)


PACKAGED_MODEL_TYPE = "bert"  # the packaged MiniLM (tests/test_models.py checks its config.json)


def model_type(name: str) -> str | None:
    """A model's transformers `model_type` from its config.json, read without torch; None when unknown here
    (a hub id: the worker finds out, and trains a family the engine cannot stack in the loop)."""
    if name in PACKAGED_ALIASES:
        return PACKAGED_MODEL_TYPE
    config = Path(name).expanduser() / "config.json"
    try:
        value = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


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


def family_unsupported(model_type: str | None) -> str:
    """Why a model of this transformers `model_type` cannot train vectorised ("" when it can or is unknown)."""
    if model_type is None or model_type in VECTORISED_FAMILIES:
        return ""
    return f"model family {model_type!r} (vectorised: {', '.join(VECTORISED_FAMILIES)})"


def choose_engine(spec: RunSpec, seeds_per_worker: int, model_type: str | None = None) -> RunSpec:
    """The spec with its engine set; with seeds_per_worker > 1 but a recipe or family that falls back, the
    loop and a note saying why (`model_type` None: not known before the worker loads the model)."""
    if seeds_per_worker <= 1:
        return dataclasses.replace(spec, engine="loop", engine_note="")
    reason = ", ".join(r for r in (vectorised_unsupported(spec.recipe), family_unsupported(model_type)) if r)
    if reason:
        note = f"seeds_per_worker = {seeds_per_worker} but trained one run per worker: {reason} is not vectorised"
        return dataclasses.replace(spec, engine="loop", engine_note=note)
    return dataclasses.replace(spec, engine="vectorised", engine_note="")


def group_key(spec: RunSpec) -> str:
    """The configuration a run is one seed of, in full (everything in its id but the seeds)."""
    data = spec.canonical()
    for name in SEED_FIELDS:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
