"""The import schema: the fields a run-log row may carry, their common spellings, and column mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from harness.experiment.spec import Recipe
from harness.importer.files import ImportFileError

IDENTITY_FIELDS = ("task", "recipe", "seed", "init_seed", "order_seed", "sample_seed", "model", "sample_size")
SCORE_FIELDS = ("score", "val_best", "val_final", "test_best", "test_final", "majority")
OTHER_FIELDS = (
    "status", "metric", "best_step", "steps_done", "total_steps", "epochs_done", "loss_first", "loss_last",
    "loss_min", "loss_mean", "wall_time_s", "peak_mem_mb", "flops", "error", "notes", "device", "finished_at",
)  # fmt: skip
FIELDS = (*IDENTITY_FIELDS, *SCORE_FIELDS, *OTHER_FIELDS)
# Recipe settings a row may carry (as `lr` or `recipe.lr`); they land in the run's spec JSON.
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "select", "epochs"))
# Common spellings of the same field; `--map COLUMN=FIELD` covers everything else.
ALIASES = {
    "condition": "recipe", "method": "recipe", "dataset": "task", "random_seed": "seed",
    "best": "val_best", "last": "val_final", "final": "val_final", "score_best": "val_best",
    "score_last": "val_final", "val_last": "val_final", "test_last": "test_final", "steps": "steps_done",
    "epochs": "epochs_done", "wall_time": "wall_time_s", "majority_baseline": "majority",
}  # fmt: skip
CURVE_FIELDS = ("step", "val_metric", "test_metric", "fraction", "epoch", "train_loss")
CURVE_ALIASES = {
    "condition": "recipe", "method": "recipe", "dataset": "task", "random_seed": "seed",
    "val": "val_metric", "dev": "val_metric", "test": "test_metric", "loss": "train_loss", "global_step": "step",
}  # fmt: skip
IGNORE = "ignore"  # --map COLUMN=ignore drops a column


def canonical_columns(
    columns: Sequence[str],
    mapping: Mapping[str, str],
    aliases: Mapping[str, str],
    path: str,
    extra: Sequence[str] = (),
    elsewhere: Sequence[str] = (),
) -> dict[str, str]:
    """File column -> field: --map first, then the field's own name (any case), then a known alias;
    other columns keep their name (recipe fields, or extra columns kept in the spec JSON). A --map key
    may name a column of the other file (`elsewhere`: the runs file and the curves file share --map)."""
    missing = sorted(set(mapping) - set(columns) - set(elsewhere))
    if missing:
        raise ImportFileError(f"{path}: --map names column(s) {missing} that the file lacks; columns: {list(columns)}")
    known = {*FIELDS, *extra, "measure", "value"}
    out = {}
    for col in columns:
        name = str(mapping.get(col) or col).strip()
        low = name.lower()
        out[col] = low if low in known or low == IGNORE else aliases.get(low, name)
    targets = [t for t in out.values() if t != IGNORE]
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        cols = [c for c, t in out.items() if t in dup]
        raise ImportFileError(f"{path}: columns {cols} all map to {dup}; drop one with --map COLUMN=ignore")
    return out


def parse_assignments(items: Sequence[str], what: str) -> dict[str, str]:
    """['a=b', ...] -> {'a': 'b'}; `what` names the flag in the error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ImportFileError(f"{what} {item!r}: write it as NAME=VALUE")
        out[key.strip()] = value.strip()
    return out
