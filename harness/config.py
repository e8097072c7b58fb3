"""Experiment files (TOML) -> frozen RunSpecs with stable run ids.

An experiment is tasks x recipes x seeds. Every field is validated here, so a
typo in a TOML file fails at load time with the file, the field and the fix,
not an hour into training. The types themselves live in harness/spec.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from harness.engines import choose_engine
from harness.spec import (
    BACKENDS,
    EVAL_PROTOCOLS,
    NOISE_KINDS,
    SELECT_MODES,
    SPEC_VERSION,
    ConfigError,
    EarlyStopPolicy,
    ExperimentSpec,
    Recipe,
    RunSpec,
    SchedulePolicy,
    run_id_of,
    task_from_dict,
)
from harness.tasks import METRICS, TASKS, TaskDef

__all__ = [
    "BACKENDS",
    "EVAL_PROTOCOLS",
    "NOISE_KINDS",
    "SELECT_MODES",
    "SPEC_VERSION",
    "ConfigError",
    "EarlyStopPolicy",
    "ExperimentSpec",
    "Recipe",
    "RunSpec",
    "SchedulePolicy",
    "load_experiment",
    "parse_experiment",
    "run_id_of",
    "task_from_dict",
    "validate_run",
]


_TOP_KEYS = {
    "name", "description", "task", "tasks", "model", "model_layers", "sample_size",
    "eval_protocol", "eval_size", "split_seed", "max_seq_length", "num_evals", "select",
    "seeds", "sample_seed", "defaults", "recipes", "schedule", "early_stop", "data_dir",
    "degenerate_threshold", "paper", "scale", "only_recipes", "custom_tasks",
}  # fmt: skip
_SEED_KEYS = {"init", "order", "sample"}


def _expected_type(tp: Any) -> tuple[type, ...]:
    origin = get_origin(tp)
    if origin is None:
        return (tp,)
    return tuple(a for a in get_args(tp) if a is not type(None))


def _coerce(where: str, fieldname: str, value: Any, tp: Any) -> Any:
    """Check a TOML value against a dataclass field type (int accepted for float)."""
    allowed = _expected_type(tp)
    optional = type(None) in get_args(tp)
    if value is None and optional:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{where}: field '{fieldname}' = {value!r} must be {_type_names(allowed)}")
    if not isinstance(value, allowed):
        raise ConfigError(
            f"{where}: field '{fieldname}' = {value!r} ({type(value).__name__}) must be {_type_names(allowed)}"
        )
    return value


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {k: _coerce(where, k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _seed_grid(raw: Any, sample_seed: int, where: str) -> list[tuple[int, int, int]]:
    """(init, order, sample) triples: paired seeds from an int or list, or a grid from a table."""
    if isinstance(raw, bool):
        raise ConfigError(f"{where}: 'seeds' = {raw!r}; give a count, a list of ints or {{init=[..], order=[..]}}")
    if isinstance(raw, int):
        if raw < 1:
            raise ConfigError(f"{where}: 'seeds' = {raw}; must be >= 1")
        return [(s, s, sample_seed) for s in range(1, raw + 1)]
    if isinstance(raw, list):
        if not raw or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
            raise ConfigError(f"{where}: 'seeds' = {raw!r}; must be a non-empty list of ints")
        if len(set(raw)) != len(raw):
            raise ConfigError(f"{where}: 'seeds' = {raw!r} repeats a seed; each seed must be distinct")
        return [(s, s, sample_seed) for s in raw]
    if isinstance(raw, Mapping):
        unknown = set(raw) - _SEED_KEYS
        if unknown or not {"init", "order"} <= set(raw):
            raise ConfigError(
                f"{where}: 'seeds' table has keys {sorted(raw)}; needs 'init' and 'order' (and optionally 'sample')"
            )
        axes = []
        for key in ("init", "order", "sample"):
            value = raw.get(key, [sample_seed])
            if isinstance(value, int) and not isinstance(value, bool):
                value = list(range(1, value + 1)) if key != "sample" else [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
                raise ConfigError(f"{where}: 'seeds.{key}' = {value!r}; must be a count or a list of ints")
            axes.append(value)
        return list(itertools.product(*axes))
    raise ConfigError(f"{where}: 'seeds' = {raw!r}; give a count, a list of ints or {{init=[..], order=[..]}}")


def parse_experiment(data: Mapping[str, Any], source: str = "<experiment>", scale: str | None = None) -> ExperimentSpec:
    """Validate a parsed TOML table and expand it into RunSpecs."""
    where = source
    scales = data.get("scale", {})
    if scale is not None:
        if scale not in scales:
            raise ConfigError(f"{where}: no [scale.{scale}] section; available scales: {sorted(scales) or 'none'}")
        data = _deep_merge({k: v for k, v in data.items() if k != "scale"}, scales[scale])
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    for required in ("name", "model", "recipes", "seeds"):
        if required not in data:
            raise ConfigError(f"{where}: missing required key '{required}'")
    if ("task" in data) == ("tasks" in data):
        raise ConfigError(f"{where}: give exactly one of 'task = \"rte\"' or 'tasks = [\"rte\", ...]'")
    custom = _custom_tasks(data.get("custom_tasks", {}), where)
    tasks = [data["task"]] if "task" in data else data["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"{where}: 'tasks' = {tasks!r}; must be a non-empty list of task names")
    name = data["name"]
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"{where}: 'name' = {name!r}; must be a non-empty string usable as a folder name")

    run_fields = {
        k: data[k]
        for k in ("model", "model_layers", "sample_size", "eval_protocol", "eval_size", "split_seed",
                  "max_seq_length", "num_evals")
        if k in data
    }  # fmt: skip
    recipes_raw = data["recipes"]
    if not isinstance(recipes_raw, Mapping) or not recipes_raw:
        raise ConfigError(f"{where}: 'recipes' must be a table of named recipes, e.g. [recipes.standard]")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{where}: 'defaults' must be a table of recipe fields")
    if "select" in data:  # a top-level selection rule is every recipe's default
        defaults = {"select": data["select"], **defaults}
    only = data.get("only_recipes")
    if only is not None:  # a scale may run a subset of the recipes (e.g. fewer re-init depths on CPU)
        missing = [r for r in only if r not in recipes_raw] if isinstance(only, list) else only
        if not isinstance(only, list) or not only or missing:
            raise ConfigError(
                f"{where}: 'only_recipes' = {only!r}; must list recipes of [recipes.*]: {list(recipes_raw)}"
            )
        recipes_raw = {r: recipes_raw[r] for r in only}
    recipes = []
    for rname, overrides in recipes_raw.items():
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{where}: [recipes.{rname}] must be a table of recipe fields")
        recipe = _build(Recipe, {**defaults, **overrides, "name": rname}, f"{where} [recipes.{rname}]")
        recipe.validate(where)
        recipes.append(recipe)

    sample_seed = data.get("sample_seed", 0)
    seeds = _seed_grid(data["seeds"], sample_seed, where)
    runs = []
    for task, recipe, (init, order, sample) in itertools.product(tasks, recipes, seeds):
        spec = _build(
            RunSpec,
            {**run_fields, "task": task, "recipe": recipe, "init_seed": init, "order_seed": order,
             "sample_seed": sample, "experiment": name, "custom_task": custom.get(task)},
            where,
        )  # fmt: skip
        validate_run(spec, where)
        runs.append(spec)

    schedule_raw = dict(data.get("schedule", {}))
    early = data.get("early_stop", schedule_raw.pop("early_stop", None))
    early_policy = None
    if early is not None:
        early_policy = _build(EarlyStopPolicy, early, f"{where} [early_stop]")
        if not 0 < early_policy.at < 1:
            raise ConfigError(f"{where}: 'early_stop.at' = {early_policy.at}; must be in (0, 1), e.g. 0.25")
        if not early_policy.keep > 0:
            raise ConfigError(f"{where}: 'early_stop.keep' = {early_policy.keep}; a fraction in (0,1) or a count >= 1")
    schedule = _build(SchedulePolicy, {**schedule_raw, "early_stop": None}, f"{where} [schedule]")
    if schedule.backend not in BACKENDS:
        raise ConfigError(f"{where}: 'schedule.backend' = {schedule.backend!r}; allowed: {', '.join(BACKENDS)}")
    for key in ("runs_per_gpu", "threads_per_run", "seeds_per_worker"):
        if getattr(schedule, key) < 1:
            raise ConfigError(f"{where}: 'schedule.{key}' = {getattr(schedule, key)}; must be >= 1")
    if schedule.max_retries < 0:
        raise ConfigError(f"{where}: 'schedule.max_retries' = {schedule.max_retries}; must be >= 0")
    schedule = dataclasses.replace(schedule, early_stop=early_policy)
    runs = [choose_engine(spec, schedule.seeds_per_worker)[0] for spec in runs]  # seed groups train vectorised

    thresholds = data.get("degenerate_threshold", {})
    if not isinstance(thresholds, Mapping) or not all(isinstance(v, int | float) for v in thresholds.values()):
        raise ConfigError(f"{where}: 'degenerate_threshold' must map task names to numbers, e.g. {{stsb = 10.0}}")
    return ExperimentSpec(
        name=name,
        runs=tuple(runs),
        schedule=schedule,
        data_dir=data.get("data_dir"),
        degenerate_threshold={k: float(v) for k, v in thresholds.items()},
        paper=data.get("paper", {}),
        description=data.get("description", ""),
        source=source,
    )


_TASK_FORMATS = ("csv", "tsv", "jsonl")


def _custom_tasks(raw: Any, where: str) -> dict[str, TaskDef]:
    """[custom_tasks.<name>]: a user's own data set, declared as data like the registry's tasks."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'custom_tasks' must be a table of tasks, e.g. [custom_tasks.reviews]")
    out = {}
    for name, fields_ in raw.items():
        at = f"{where} [custom_tasks.{name}]"
        if not isinstance(fields_, Mapping):
            raise ConfigError(f"{at}: must be a table (folder, text_columns, label_column, labels, metric)")
        if name in TASKS:
            raise ConfigError(f"{at}: {name!r} is a built-in task; give your task another name")
        values = {"fmt": "csv", "train_file": "train.csv", "dev_file": "dev.csv", **fields_, "name": name}
        for key in ("text_columns", "labels", "verbalizers"):
            if key in values and not isinstance(values[key], list):
                raise ConfigError(f"{at}: '{key}' = {values[key]!r} must be a list")
        missing = [k for k in ("folder", "text_columns", "label_column", "metric") if k not in values]
        if missing:
            raise ConfigError(f"{at}: missing field(s) {missing}")
        try:
            task = task_from_dict(values)
        except TypeError as exc:
            allowed = sorted(f.name for f in fields(TaskDef))
            raise ConfigError(f"{at}: {exc}; allowed fields: {allowed}") from None
        if task.fmt not in _TASK_FORMATS:
            raise ConfigError(f"{at}: 'fmt' = {task.fmt!r}; allowed: {', '.join(_TASK_FORMATS)}")
        if task.metric not in METRICS:
            raise ConfigError(f"{at}: 'metric' = {task.metric!r}; allowed: {', '.join(METRICS)}")
        regression = task.metric in ("spearman", "pearson")
        if regression == bool(task.labels):
            fix = "omit 'labels' for a regression metric" if regression else "list the label values in 'labels'"
            raise ConfigError(f"{at}: metric {task.metric!r} with labels {list(task.labels)}; {fix}")
        if not 1 <= len(task.text_columns) <= 2:
            raise ConfigError(f"{at}: 'text_columns' must name one or two columns")
        out[name] = task
    return out


def validate_run(spec: RunSpec, where: str) -> None:
    if spec.custom_task is None and spec.task not in TASKS:
        raise ConfigError(
            f"{where}: task {spec.task!r} is unknown; known tasks: {', '.join(sorted(TASKS))} "
            f"(or declare it under [custom_tasks.{spec.task}])"
        )
    if spec.recipe.intermediate_task is not None and spec.recipe.intermediate_task not in TASKS:
        raise ConfigError(
            f"{where}: recipe '{spec.recipe.name}' field 'intermediate_task' = {spec.recipe.intermediate_task!r}; "
            f"known tasks: {', '.join(sorted(TASKS))}"
        )
    task = spec.task_def
    if spec.recipe.cloze and (task.is_regression or not task.cloze_pattern or len(task.verbalizers) != task.num_labels):
        why = "is a regression task (no labels to verbalise)" if task.is_regression else "has no pattern/verbalizers"
        raise ConfigError(
            f"{where}: recipe '{spec.recipe.name}' field 'cloze' = true but task {spec.task!r} {why}; "
            f"set cloze = false for {spec.task!r} (or give the task a pattern and verbalizers in harness/tasks.py)"
        )
    if spec.eval_protocol not in EVAL_PROTOCOLS:
        raise ConfigError(f"{where}: 'eval_protocol' = {spec.eval_protocol!r}; allowed: {', '.join(EVAL_PROTOCOLS)}")
    for key in ("sample_size", "eval_size", "model_layers"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            raise ConfigError(f"{where}: '{key}' = {value}; must be >= 1 or omitted")
    if spec.max_seq_length < 8:
        raise ConfigError(f"{where}: 'max_seq_length' = {spec.max_seq_length}; must be >= 8")
    if spec.num_evals < 1:
        raise ConfigError(f"{where}: 'num_evals' = {spec.num_evals}; must be >= 1")
    if spec.model_layers is not None and spec.recipe.reinit_layers > spec.model_layers:
        raise ConfigError(
            f"{where}: recipe '{spec.recipe.name}' has reinit_layers = {spec.recipe.reinit_layers} "
            f"but the model keeps only model_layers = {spec.model_layers}; use at most {spec.model_layers}"
        )


def load_experiment(path: str | Path, scale: str | None = None) -> ExperimentSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {path} does not exist; see experiments/ for examples")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_experiment(data, str(path), scale)
