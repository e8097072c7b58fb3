"""Deviations from the paper's setting: the `[paper.setting]` an experiment file declares, field by field
against what its stored runs actually used (their RunSpec JSON), one row per deviation.

Format (docs/reports.md): `[paper.setting]` holds the paper's values of run and recipe fields (`model`,
`sample_size`, `eval_protocol`, `eval_size`, `max_seq_length`, `num_evals`, `engine`, `lr`, `batch_size`,
`epochs`, `max_steps`, `reinit_layers`, `select`, `bias_correction`, `precision`, ... any Recipe field),
plus `tasks` and `seeds`; `[paper.setting.recipes.<name>]` the values of one arm where they differ; and
`[paper.setting.effects]` what a deviation of a field is known to do to the claims (else "not known").
A value is a number, a boolean or a string; "not stated" where the paper does not say. The values come
from the paper, never from our runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from harness.experiment.spec import Recipe, RunSpec
from harness.report.paper import ReportError
from harness.report.provenance import is_packaged, specs
from harness.report.tables import md_table

NOT_STATED = "not stated"
RUN_FIELDS = ("model", "sample_size", "eval_protocol", "eval_size", "max_seq_length", "num_evals", "engine")
RECIPE_FIELDS = tuple(f.name for f in fields(Recipe) if f.name not in ("name", "epochs", "max_steps"))
SPECIAL = ("tasks", "seeds", "epochs", "max_steps")
ALLOWED = (*SPECIAL, *RUN_FIELDS, *RECIPE_FIELDS)
NAMES = {
    "model": "model",
    "tasks": "tasks",
    "sample_size": "training examples",
    "eval_protocol": "evaluation protocol",
    "eval_size": "evaluation split sizes",
    "max_seq_length": "max sequence length",
    "num_evals": "evaluations per run",
    "engine": "training engine",
    "seeds": "seeds per arm",
    "length": "training length",
    "lr": "learning rate",
    "batch_size": "batch size",
    "reinit_layers": "re-initialised top layers (L)",
    "select": "checkpoint reported",
    "bias_correction": "Adam bias correction",
    "precision": "precision",
    "weight_decay": "weight decay",
    "grad_clip": "gradient clipping",
    "warmup_ratio": "warm-up share",
    "mixout": "Mixout p",
    "llrd": "layer-wise lr decay",
    "prior_wd": "weight decay toward the pre-trained weights",
    "intermediate_task": "intermediate task",
    "intermediate_size": "intermediate-task examples",
    "intermediate_epochs": "intermediate-task epochs",
}
ENGINES = {
    "loop": "one run per process (a standard training loop)",
    "vectorised": "seed groups (vectorised engine)",
}
DEFAULT_EFFECTS = {
    "engine": "none on a run's numbers: the loop and seed groups train the same runs (both draw dropout and Mixout "
    "masks from one counter hash, not torch's generator; a GPU's batched kernels round differently, within the "
    "tolerance of `make gpu-check`), docs/vectorised.md",
}
ORDER = (
    "model", "tasks", "sample_size", "eval_protocol", "eval_size", "max_seq_length", "lr", "batch_size", "length",
    "bias_correction", "reinit_layers", "select", "num_evals", "precision", "engine", "seeds",
)  # fmt: skip


@dataclass(frozen=True)
class PaperSetting:
    """The paper's setting as the experiment file declares it: common values, per-arm values, known effects."""

    values: Mapping[str, Any] = field(default_factory=dict)
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    effects: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str, recipe: str) -> Any:
        """The paper's value of `key` for the arm `recipe` (None when the setting does not declare it)."""
        return self.recipes.get(recipe, {}).get(key, self.values.get(key))

    def declares(self, key: str) -> bool:
        return key in self.values or any(key in r for r in self.recipes.values())


@dataclass(frozen=True)
class Deviation:
    setting: str
    arms: str
    paper: str
    ours: str
    effect: str


def _check_values(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    bad = sorted(set(table) - set(ALLOWED))
    if bad:
        raise ReportError(f"[{where}] unknown field(s) {bad}; allowed: {sorted(ALLOWED)}")
    for key, value in table.items():
        ok = isinstance(value, bool | int | float | str) or (
            key == "tasks" and isinstance(value, list) and all(isinstance(t, str) for t in value)
        )
        if not ok:
            raise ReportError(f'[{where}] {key} = {value!r}; a number, true/false or a string ("{NOT_STATED}")')
    return dict(table)


def parse_setting(raw: Mapping[str, Any] | None) -> PaperSetting | None:
    """Validate `[paper.setting]`; None when the experiment declares none."""
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise ReportError("[paper.setting] must be a table of the paper's values, e.g. lr = 2e-5")
    recipes_raw = raw.get("recipes", {})
    effects = raw.get("effects", {})
    if not isinstance(recipes_raw, Mapping) or not all(isinstance(v, Mapping) for v in recipes_raw.values()):
        raise ReportError("[paper.setting.recipes] must map recipe names to tables, e.g. [paper.setting.recipes.x]")
    if not isinstance(effects, Mapping) or not all(isinstance(v, str) for v in effects.values()):
        raise ReportError("[paper.setting.effects] must map field names to sentences")
    bad = sorted(set(effects) - {*ALLOWED, "length"})
    if bad:
        raise ReportError(f"[paper.setting.effects] unknown field(s) {bad}; allowed: {sorted({*ALLOWED, 'length'})}")
    values = _check_values({k: v for k, v in raw.items() if k not in ("recipes", "effects")}, "paper.setting")
    recipes = {str(n): _check_values(r, f"paper.setting.recipes.{n}") for n, r in recipes_raw.items()}
    return PaperSetting(values, recipes, dict(effects))


# ---------------------------------------------------------------------------
# Our values, from the stored specs


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model(spec: Mapping[str, Any]) -> str:
    model = str(spec.get("model", "?"))
    layers = spec.get("model_layers")
    if is_packaged(model):
        return (
            f"all-MiniLM-L6-v2 (packaged; the first {layers} of its 6 layers)"
            if layers
            else ("all-MiniLM-L6-v2 (packaged, 6 layers, 22.7M parameters)")
        )
    return model + (f" (first {layers} layers)" if layers else "")


def _length(spec: Mapping[str, Any], updates: float | None) -> str:
    recipe = spec.get("recipe") or {}
    done = f" ({updates:.0f} updates)" if updates is not None and math.isfinite(updates) else ""
    if recipe.get("max_steps"):
        return f"{recipe['max_steps']} updates (max_steps)"
    return f"{_num(recipe.get('epochs', 3.0))} epochs{done}"


def _eval_size(spec: Mapping[str, Any], sizes: Mapping[str, Mapping[str, int]] | None) -> str:
    cap = spec.get("eval_size")
    text = "full dev set" if cap is None else f"dev capped at {cap} (stratified)"
    per_task = [
        f"{task} " + " / ".join(f"{split} {n}" for split, n in sorted(splits.items(), key=lambda kv: kv[0] != "val"))
        for task, splits in (sizes or {}).items()
        if splits
    ]
    return text + (f"; examples per split: {'; '.join(per_task)}" if per_task else "")


def _ours(
    key: str, spec: Mapping[str, Any], updates: float | None, sizes: Mapping[str, Mapping[str, int]] | None
) -> str:
    recipe = spec.get("recipe") or {}
    if key == "model":
        return _model(spec)
    if key == "length":
        return _length(spec, updates)
    if key == "sample_size":
        return "full training set" if spec.get("sample_size") is None else f"{spec['sample_size']} (class-balanced)"
    if key == "eval_size":
        return _eval_size(spec, sizes)
    if key == "engine":
        return ENGINES.get(str(spec.get("engine", "loop")), str(spec.get("engine")))
    if key in RUN_FIELDS:
        value = spec.get(key, RunSpec.__dataclass_fields__[key].default)
    else:
        value = recipe.get(key, Recipe.__dataclass_fields__[key].default)
    return "–" if value is None else str(value).lower() if isinstance(value, bool) else _num(value)


def _paper(key: str, setting: PaperSetting, recipe: str) -> str | None:
    """The paper's value as text, None when the setting does not declare the field for this arm."""
    if key == "length":
        epochs, steps = setting.value("epochs", recipe), setting.value("max_steps", recipe)
        if steps is not None:
            return f"{_num(steps)} updates" if not isinstance(steps, str) else steps
        if epochs is not None:
            return f"{_num(epochs)} epochs" if not isinstance(epochs, str) else epochs
        return None
    value = setting.value(key, recipe)
    if value is None:
        return None
    if key == "engine":
        return ENGINES.get(str(value), str(value))
    if key == "sample_size" and not isinstance(value, str):
        return f"{value}"
    return _num(value) if not isinstance(value, bool) else str(value).lower()


def _same(key: str, paper: str, spec: Mapping[str, Any], ours: str) -> bool:
    """Whether our value is the paper's (a "not stated" never matches: the reader must see it)."""
    if paper == NOT_STATED:
        return False
    recipe = spec.get("recipe") or {}
    if key == "length":
        if recipe.get("max_steps"):
            return paper == f"{recipe['max_steps']} updates"
        return paper == f"{_num(recipe.get('epochs', 3.0))} epochs"
    if key == "model":
        return paper.lower() == str(spec.get("model", "")).lower() and not spec.get("model_layers")
    if key == "sample_size":
        ours_raw = spec.get("sample_size")
        return (ours_raw is None and paper == "full training set") or paper == str(ours_raw)
    if key == "eval_size":
        return spec.get("eval_size") is None and paper == "full dev set"
    if key == "bias_correction":
        return paper == str(bool(recipe.get("bias_correction", True))).lower()
    try:
        return math.isclose(float(paper), float(ours), rel_tol=1e-9)
    except ValueError:
        return paper.strip().lower() == ours.strip().lower()


# ---------------------------------------------------------------------------
# The table


def _arms(recipes: Sequence[str], all_recipes: Sequence[str]) -> str:
    return "all arms" if list(recipes) == list(all_recipes) and len(all_recipes) > 1 else ", ".join(recipes)


def _selection_effect(spec_by_recipe: Mapping[str, Mapping[str, Any]]) -> str:
    selects = {r: (s.get("recipe") or {}).get("select", "best") for r, s in spec_by_recipe.items()}
    if len(set(selects.values())) < 2:
        return ""
    protocol = {s.get("eval_protocol") for s in spec_by_recipe.values()}
    best = ", ".join(r for r, v in selects.items() if v == "best")
    where = "the dev set it is scored on" if protocol == {"dev"} else "the validation half"
    return (
        f"asymmetric between arms: {best} report the best of several checkpoints on {where}, the others their "
        "last; a comparison of these arms mixes the recipe with the selection"
    )


def _spec_by_recipe(runs: pd.DataFrame) -> dict[str, Mapping[str, Any]]:
    """The recorded spec of one run of each recipe, in the runs' order."""
    out: dict[str, Mapping[str, Any]] = {}
    for spec, name in zip(specs(runs), runs["recipe"].astype(str), strict=True):
        out.setdefault(name, spec)
    return out


def _median_updates(runs: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(runs.get("total_steps"), errors="coerce").groupby(runs["recipe"].astype(str)).median()


def _ours_for(key: str, recipe: str, spec_by_recipe: Mapping[str, Mapping[str, Any]], updates: pd.Series,
              sizes: Mapping[str, Mapping[str, int]] | None) -> str:  # fmt: skip
    upd = updates.get(recipe) if len(updates) else None
    return _ours(key, spec_by_recipe[recipe], None if upd is None or pd.isna(upd) else float(upd), sizes)


def _declared_keys(setting: PaperSetting) -> list[str]:
    keys = [k for k in ORDER if k not in ("tasks", "seeds")]
    keys += [k for k in RECIPE_FIELDS if k not in ORDER and setting.declares(k)]
    length = setting.declares("epochs") or setting.declares("max_steps")
    return [k for k in keys if (length if k == "length" else setting.declares(k))]


def arm_confounds(setting: PaperSetting | None, runs: pd.DataFrame, claims: pd.DataFrame) -> list[str]:
    """Per claim (a row of a verdict frame), the settings in which its two arms differ while the paper's same two
    arms do not, e.g. "learning rate 3e-05 vs 0.0001": the comparison then measures the recipe together with
    them, and the first screen says so. "" for none, for a one-recipe claim, an arm without stored runs, or
    where the file declares no paper setting (a "not stated" paper value is no evidence either way)."""
    if setting is None or runs.empty:
        return [""] * len(claims)
    spec_by_recipe, updates = _spec_by_recipe(runs), _median_updates(runs)
    out = []
    for a, b in zip(claims["a"].astype(str), claims["b"].fillna("").astype(str), strict=True):
        if not b or a not in spec_by_recipe or b not in spec_by_recipe:
            out.append("")
            continue
        found = []
        for key in _declared_keys(setting):
            pa, pb = _paper(key, setting, a), _paper(key, setting, b)
            if pa is None or pa != pb or pa == NOT_STATED:
                continue
            oa, ob = (_ours_for(key, r, spec_by_recipe, updates, None) for r in (a, b))
            if oa != ob:
                found.append(f"{NAMES.get(key, key)} {oa} vs {ob}")
        out.append("; ".join(found))
    return out


def deviations(
    setting: PaperSetting,
    runs: pd.DataFrame,
    eval_sizes: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[list[Deviation], list[str]]:
    """(one Deviation per field and group of arms where ours differs from the paper, the fields that match)."""
    spec_by_recipe, updates = _spec_by_recipe(runs), _median_updates(runs)
    recipes = list(spec_by_recipe)
    sizes = eval_sizes or None
    out: list[Deviation] = []
    matched: list[str] = []
    if setting.declares("tasks"):
        paper_tasks = [str(t) for t in setting.values.get("tasks", [])]
        ours_tasks = list(dict.fromkeys(runs["task"].astype(str)))
        if set(ours_tasks) <= set(paper_tasks) and ours_tasks == [t for t in paper_tasks if t in ours_tasks]:
            extra = "" if set(ours_tasks) == set(paper_tasks) else " (a subset)"
            if extra:
                out.append(Deviation(NAMES["tasks"], "all arms", ", ".join(paper_tasks), ", ".join(ours_tasks) + extra,
                                     setting.effects.get("tasks", "not known")))  # fmt: skip
            else:
                matched.append(NAMES["tasks"])
        else:
            substituted = [t for t in ours_tasks if t not in paper_tasks]
            ours = ", ".join(ours_tasks) + (f" ({', '.join(substituted)} not in the paper)" if substituted else "")
            out.append(Deviation(NAMES["tasks"], "all arms", ", ".join(paper_tasks), ours,
                                 setting.effects.get("tasks", "not known")))  # fmt: skip
    for key in _declared_keys(setting):
        groups: dict[tuple[str, str, bool], list[str]] = {}
        for recipe in recipes:
            paper = _paper(key, setting, recipe)
            if paper is None:
                continue
            ours = _ours_for(key, recipe, spec_by_recipe, updates, sizes)
            groups.setdefault((paper, ours, _same(key, paper, spec_by_recipe[recipe], ours)), []).append(recipe)
        name = NAMES.get(key, key)
        effect = setting.effects.get(key) or DEFAULT_EFFECTS.get(key, "not known")
        if key == "select" and (asym := _selection_effect(spec_by_recipe)):
            effect = asym if effect == "not known" else f"{effect}; {asym}"
        if groups and all(same for (_, _, same) in groups):
            matched.append(name)
            continue
        for (paper, ours, same), arms in groups.items():
            if not same:
                out.append(Deviation(name, _arms(arms, recipes), paper, ours, effect))
    if setting.declares("seeds"):
        counts = runs[runs["status"].astype(str).isin(("done", "diverged"))].groupby(
            [runs["task"].astype(str), runs["recipe"].astype(str)]).size()  # fmt: skip
        low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
        ours = f"{low}" if low == high else f"{low}-{high}"
        paper = _num(setting.values.get("seeds"))
        if paper != ours:
            out.append(Deviation(NAMES["seeds"], "all arms", paper, ours, setting.effects.get("seeds", "not known")))
        else:
            matched.append(NAMES["seeds"])
    return out, matched


def deviations_table(devs: Sequence[Deviation]) -> str:
    rows = [[d.setting, d.arms, d.paper, d.ours, d.effect] for d in devs]
    return md_table(["setting", "arms", "paper", "ours", "effect on the claims"], rows, "lllll")


def deviations_section(
    setting: PaperSetting | None, runs: pd.DataFrame, eval_sizes: Mapping[str, Mapping[str, int]] | None = None
) -> list[str]:
    """Markdown lines of the deviations section ([] when the experiment declares no paper setting)."""
    if setting is None:
        return []
    devs, matched = deviations(setting, runs, eval_sizes)
    md = ["## Deviations from the paper's setting", ""]
    if devs:
        md += [deviations_table(devs), ""]
    else:
        md += ["None: every declared field of the paper's setting matches the runs.", ""]
    if matched:
        md += [f"As in the paper: {', '.join(matched)}.", ""]
    md += [
        "Paper: the paper's setting as declared in the experiment file's `[paper.setting]` (\"not stated\" where "
        "the paper does not say); ours: what the stored runs used (their recorded spec).",
        "",
    ]
    return md


def eval_split_sizes(predictions: pd.DataFrame, runs: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per task, the number of examples in each evaluation split, read off one run's stored predictions."""
    if predictions.empty:
        return {}
    out: dict[str, dict[str, int]] = {}
    for task, rows in runs.groupby(runs["task"].astype(str), sort=False):
        ids = set(rows["run_id"].astype(str))
        mine = predictions[predictions["run_id"].astype(str).isin(ids)]
        if mine.empty:
            continue
        first = mine[mine["run_id"] == mine["run_id"].iloc[0]]
        out[task] = {str(s): int(g["example"].nunique()) for s, g in first.groupby("split", sort=True)}
    return out
