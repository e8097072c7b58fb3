"""File rows -> store rows: validation, identity, scores, statuses, degenerate bars (curves: curves.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.analysis.seeds.degenerate import constant_predictor_score
from harness.experiment.spec import Recipe
from harness.experiment.tasks import TASKS
from harness.importer.files import ImportFileError, row_label
from harness.importer.schema import FIELDS, RECIPE_FIELDS
from harness.importer.values import MAX_SEED, PERCENT_METRICS, Rows, is_missing, short
from harness.storage.store import RUN_STATUSES

REGRESSION_METRICS = ("spearman", "pearson")
_INT_FIELDS = ("best_step", "steps_done", "total_steps")
_FLOAT_FIELDS = ("epochs_done", "loss_first", "loss_last", "loss_min", "loss_mean", "wall_time_s", "peak_mem_mb",
                 "flops")  # fmt: skip
_SCORE_FIELDS = ("score", "val_best", "val_final", "test_best", "test_final", "majority")
_FLOAT_RANGE = {c: (0.0, math.inf) for c in ("epochs_done", "wall_time_s", "peak_mem_mb", "flops")}


@dataclass
class Built:
    """What the rows of one file became."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    bars: dict[str, str] = field(default_factory=dict)  # task -> source of its degenerate bar
    recipe_fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe -> fields equal in all rows
    factor: float = 1.0  # x100 applied to fractional scores


def run_id_of_identity(identity: Mapping[str, Any]) -> str:
    """An imported run's id: a hash of its identity fields, prefixed so it never equals a native id."""
    text = json.dumps({"imported": dict(identity)}, sort_keys=True, separators=(",", ":"), default=str)
    return "imp-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _percent_example(frame: pd.DataFrame, lines: list[int], cols: list[str]) -> tuple[float, int, str] | None:
    """The first score above 1 in absolute value (a percentage), with its line and column, or None."""
    for col in cols:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(float)
        above = [i for i, v in enumerate(values) if math.isfinite(v) and abs(v) > 1]
        if above:
            return float(values[above[0]]), lines[above[0]], col
    return None


def _scale_factor(frame: pd.DataFrame, cols: list[str], how: str) -> float:
    if how != "auto":
        return 100.0 / float(how)
    values = pd.concat([pd.to_numeric(frame[c], errors="coerce") for c in cols]) if cols else pd.Series([])
    values = values[values.notna()]
    return 100.0 if len(values) and values.abs().max() <= 1.0 and (values != 0).any() else 1.0


def _recipe_value(value: Any) -> Any:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value and "e" not in low else number
    return value.item() if hasattr(value, "item") else value


def majority_from_data(task: str, data_dir: str | None, protocol: str = "dev") -> tuple[float, str] | None:
    """The built-in task's constant-predictor bar (x100) on the split the scores are of: the whole dev set
    ("dev"), or its test half under "heldout" (the harness's own split, seed 0: the majority class of the
    half that is scored, not of the whole dev set); None when the data cannot be read."""
    from harness.experiment.data import DataError, eval_splits, load_split, majority_baseline

    try:
        dev = load_split(task, "dev", data_dir)
        train = load_split(task, "train", data_dir) if TASKS[task].is_regression else []
        scored = eval_splits(task, dev, "heldout", 0, None).test if protocol == "heldout" else dev
    except (DataError, OSError, ImportError, ValueError, RuntimeError):
        return None
    if protocol == "heldout":
        where = f"the test half ({len(scored)} examples, split seed 0) of the {task} dev set"
    else:
        where = f"the {task} dev set ({len(dev)} examples)"
    return 100.0 * majority_baseline(task, train, scored), f"majority class of {where}"


def build_rows(
    frame: pd.DataFrame,
    lines: list[int],
    path: str,
    options: Any,
    select: str,
    score_col: str,
    provenance: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
) -> Built:
    """The store rows of the file's rows (`names`: file column -> field, for messages in the file's words)."""
    conv = Rows(path, names)
    built = Built()
    score_cols = [c for c in _SCORE_FIELDS if c in frame.columns]
    built.factor = _scale_factor(frame, score_cols, options.score_scale)
    # auto scale and percentages: a fraction among them (0.80 beside 81.0) is an error, not a silent 0.8%
    percent = _percent_example(frame, lines, score_cols) if options.score_scale == "auto" else None
    recipe_cols = _recipe_cols(frame)
    extra_cols = [c for c in frame.columns if c not in FIELDS and c not in recipe_cols]
    majority_of: dict[str, float | None] = {}
    unexplained: list[int] = []
    seen: dict[str, int] = {}
    observed_fields: dict[str, list[dict[str, Any]]] = {}
    for record, line in zip(frame.to_dict("records"), lines, strict=True):
        task = conv.label(record, "task", line)
        recipe = conv.label(record, "recipe", line)
        seed = conv.integer(record, "seed", line, 0, MAX_SEED) if "seed" in record else None
        init = conv.integer(record, "init_seed", line, 0, MAX_SEED) if "init_seed" in record else None
        order = conv.integer(record, "order_seed", line, 0, MAX_SEED) if "order_seed" in record else None
        init = init if init is not None else seed
        order = order if order is not None else (seed if seed is not None else init)
        if init is None:
            raise conv.fail(line, "seed" if "seed" in record else "init_seed", "empty; every row needs a seed")
        sample = (conv.integer(record, "sample_seed", line, 0, MAX_SEED) if "sample_seed" in record else None) or 0
        model = conv.text(record, "model", line, default=options.model or "unknown")
        sample_size = conv.integer(record, "sample_size", line, 1) if "sample_size" in record else None
        metric = conv.text(record, "metric", line, default=options.metric or _task_metric(task) or "")
        if not metric:
            raise conv.fail(line, "metric", f"task {task!r} is not built in; give --metric NAME or a metric column")
        if percent is not None and metric in PERCENT_METRICS:
            for c in score_cols:
                raw = conv.number(record, c, line)
                if 0 < raw <= 1:
                    raise conv.fail(
                        line, c, f"{short(record[c])} looks like a fraction, but the file's scores are percentages "
                        f"({percent[0]:g} on {row_label(path, [percent[1]])}, column '{percent[2]}'); write it as a "
                        f"percentage, or pass --score-scale 100 if it means {raw:g}%"
                    )  # fmt: skip
        scores = {c: conv.score(record, c, line, built.factor, metric) for c in _SCORE_FIELDS if c in record}
        score = scores.get(score_col, math.nan)
        status = conv.text(record, "status", line, default="done").lower()
        if status not in RUN_STATUSES:
            raise conv.fail(line, "status", f"{status!r} is not one of {', '.join(RUN_STATUSES)}")
        missing_rule = ""
        if math.isnan(score) and status in ("done", "stopped"):
            if options.missing is None:
                unexplained.append(line)
                continue
            if options.missing == "drop":
                built.dropped += 1
                continue
            missing_rule = options.missing
            status = status if missing_rule == "constant" else missing_rule
        if status in ("diverged", "failed"):
            score = math.nan
        identity = {"task": task, "recipe": recipe, "model": model, "init_seed": init, "order_seed": order,
                    "sample_seed": sample, "sample_size": sample_size}  # fmt: skip
        run_id = run_id_of_identity(identity)
        if run_id in seen:
            raise ImportFileError(
                f"{path}: {row_label(path, [seen[run_id], line])} are the same run ({task}, {recipe}, seed "
                f"{init}/{order}/{sample}, {model}); add the column that tells them apart (e.g. sample_seed) "
                "or drop one row"
            )
        seen[run_id] = line
        protocol = "heldout" if score_col.startswith("test_") else "dev"
        bar = _bar(path, task, metric, scores, options, majority_of, protocol)
        if missing_rule == "constant":  # an undefined metric: the constant predictor's, on every split left empty
            score = constant_predictor_score(metric, bar)
            if math.isnan(score):
                raise conv.fail(line, score_col, f"--missing constant needs the constant predictor's {metric} for "
                                f"{task!r}: give a majority column or the GLUE data (--data-dir)")  # fmt: skip
            scores = {c: (score if c != "majority" and math.isnan(v) else v) for c, v in scores.items()}
        recipe_fields = {
            c.removeprefix("recipe."): _recipe_value(record[c]) for c in recipe_cols if not is_missing(record.get(c))
        }
        observed_fields.setdefault(recipe, []).append(recipe_fields)
        extra = {c: _recipe_value(record[c]) for c in extra_cols if not is_missing(record.get(c))}
        chosen = {"select": select} if select in ("best", "final") else {}  # where native runs keep it
        spec = {
            "imported": True, "task": task, "model": model, "init_seed": init, "order_seed": order,
            "sample_seed": sample, "sample_size": sample_size, "eval_protocol": protocol,
            "recipe": {"name": recipe, **recipe_fields, **chosen}, "extra": extra,
        }  # fmt: skip
        marked = {"missing_score": missing_rule} if missing_rule else {}  # how a missing score was read (--missing)
        row: dict[str, Any] = {
            **identity,
            "run_id": run_id,
            "experiment": options.name,
            "config_key": f"{task}/{recipe}",
            "status": status,
            "metric": metric,
            "score": score,
            **{c: scores.get(c, math.nan) for c in ("val_best", "val_final", "test_best", "test_final")},
            "majority_val": bar if protocol == "dev" else math.nan,
            "majority_test": bar if protocol == "heldout" else math.nan,
            **{c: conv.integer(record, c, line) if c in record else None for c in _INT_FIELDS},
            **{c: conv.number(record, c, line, *_FLOAT_RANGE.get(c, ())) for c in _FLOAT_FIELDS if c in record},
            "attempts": 1,
            "error": conv.text(record, "error", line, default=""),
            "notes": conv.text(record, "notes", line, default="") or f"imported from {path}",
            "device": conv.text(record, "device", line, default=""),
            "provenance": json.dumps({**provenance, "line": line, **marked}, sort_keys=True, default=str),
            "phases": "{}",  # no phase timings in an external log
            "spec": json.dumps(spec, sort_keys=True, default=str),
            "finished_at": conv.text(record, "finished_at", line, default=provenance["imported_at"]),
        }
        row["steps_done"] = row["steps_done"] or 0
        row["total_steps"] = row["total_steps"] or row["steps_done"]
        built.rows.append(row)
    if unexplained:
        raise ImportFileError(
            f"{path}: {row_label(path, unexplained)} have no score in column '{score_col}'; say what a missing "
            "score means: --missing constant (an undefined metric of constant predictions: scored as the constant "
            "predictor, degenerate) | diverged (no score, degenerate) | failed (left out of the statistics) | drop"
        )
    built.bars = {t: _bar_source(t, majority_of, options) for t in dict.fromkeys(r["task"] for r in built.rows)}
    built.recipe_fields = {r: _common(fs) for r, fs in observed_fields.items()}
    return built


def _recipe_cols(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("recipe.") or c in RECIPE_FIELDS]


def _task_metric(task: str) -> str | None:
    return TASKS[task].metric if task in TASKS else None


def _bar(
    path: str,
    task: str,
    metric: str,
    scores: Mapping[str, float],
    options: Any,
    majority_of: dict[str, Any],
    protocol: str = "dev",
) -> float:
    """This run's majority baseline (x100): its own column, else the task's dev-set majority; NaN when a
    threshold or the regression default decides instead."""
    if "majority" in scores and not math.isnan(scores["majority"]):
        majority_of.setdefault(task, "column")
        return scores["majority"]
    if task in options.thresholds or metric in REGRESSION_METRICS:
        return math.nan
    if task not in majority_of:
        found = majority_from_data(task, options.data_dir, protocol) if task in TASKS else None
        if found is None:
            raise ImportFileError(
                f"{path}: task {task!r} has no degenerate bar: give --threshold {task}=VALUE (x100), "
                f"a majority column{', or the GLUE data (--data-dir / $HARNESS_DATA_DIR)' if task in TASKS else ''}"
            )
        majority_of[task] = found
    value = majority_of[task]
    return value[0] if isinstance(value, tuple) else math.nan


def _bar_source(task: str, majority_of: Mapping[str, Any], options: Any) -> str:
    if task in options.thresholds:
        return f"--threshold {options.thresholds[task]:g}"
    value = majority_of.get(task)
    if value == "column":
        return "the file's majority column"
    if isinstance(value, tuple):
        return f"{value[1]}: {value[0]:.2f}"
    return "regression default (< 10)"


def _common(observed: list[dict[str, Any]]) -> dict[str, Any]:
    """Recipe fields with one value in every row of the recipe (those can go into the experiment file)."""
    keys = set.intersection(*(set(o) for o in observed)) if observed else set()
    return {k: observed[0][k] for k in sorted(keys) if all(o[k] == observed[0][k] for o in observed)}


def valid_recipe_fields(name: str, fields_: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `fields_` that builds a valid Recipe (the rest stays in each run's spec JSON only)."""
    known = {f.name: f for f in dataclasses.fields(Recipe)}
    keep: dict[str, Any] = {}
    for key, value in fields_.items():
        if key not in known or key == "name":
            continue
        try:
            Recipe(**{**keep, key: value, "name": name}).validate("import")
        except (TypeError, ValueError):
            continue
        default = getattr(Recipe(), key)
        if type(default) is type(value) or (isinstance(default, float) and isinstance(value, int)) or default is None:
            keep[key] = float(value) if isinstance(default, float) and isinstance(value, int) else value
    return keep
