"""Experiment files (TOML) -> frozen RunSpecs with stable run ids.

An experiment is tasks x recipes x seeds. Every field is validated here, so a
typo in a TOML file fails at load time with the file, the field and the fix,
not an hour into training. The types themselves live in harness/experiment/spec.py.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from harness.experiment.engines import choose_engine, model_type
from harness.experiment.fingerprint import data_fingerprint, data_root, model_fingerprint
from harness.experiment.names import folder_name_problem, label_problem
from harness.experiment.overrides import apply_overrides
from harness.experiment.seed_budget import parse_adaptive
from harness.experiment.spec import (
    BACKENDS,
    EVAL_PROTOCOLS,
    NOISE_KINDS,
    SELECT_MODES,
    SLURM_CLUSTERS,
    SPEC_VERSION,
    ConfigError,
    EarlyStopPolicy,
    ExperimentSpec,
    Recipe,
    RunSpec,
    SchedulePolicy,
    SlurmPolicy,
    run_id_of,
    task_from_dict,
)
from harness.experiment.tasks import METRICS, TASKS, TaskDef

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
    "degenerate_threshold", "paper", "scale", "only_recipes", "custom_tasks", "imported_from", "deterministic",
}  # fmt: skip
_SEED_KEYS = {"init", "order", "sample"}

# Sanity bounds, checked at load time so a typo fails in the loader instead of running away in every run
# (documented in README.md, "The experiment file": Limits).
MAX_RUNS = 100_000  # runs one experiment file may expand to (tasks x recipes x seeds)
MAX_SEED = 2**32 - 1  # seeds are in [0, 2**32 - 1] (numpy's range)
MAX_EPOCHS = 1_000.0  # epochs, intermediate_epochs
MAX_STEPS = 10_000_000  # max_steps, tapt_steps, head_warmup_steps
MAX_NUM_EVALS = 10_000
MAX_LR = 1.0  # lr, tapt_lr, head_warmup_lr: Adam above 1 only diverges


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
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: field '{fieldname}' = {value!r}; must be a finite number")
    if float in allowed and isinstance(value, float):
        return value
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{where}: field '{fieldname}' = {value!r} must be {_type_names(allowed)}")
    if not isinstance(value, allowed):
        raise ConfigError(
            f"{where}: field '{fieldname}' = {value!r} ({type(value).__name__}) must be {_type_names(allowed)}"
        )
    return value


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


MIXOUT_KEEP_DROPOUT = "mixout_keep_dropout"


def check_mixout_dropout(recipe: Recipe, keep_dropout: object, own: bool, where: str) -> None:
    """Mixout replaces dropout (Lee et al. 2020; the official code sets dropout 0): a recipe with Mixout and an
    explicit dropout > 0 (its own, or from [defaults]) is refused unless it sets `mixout_keep_dropout = true`."""
    if not isinstance(keep_dropout, bool):
        raise ConfigError(f"{where} [recipes.{recipe.name}]: {MIXOUT_KEEP_DROPOUT} = {keep_dropout!r}; use true/false")
    if recipe.mixout > 0 and recipe.dropout and not keep_dropout:
        source = f"[recipes.{recipe.name}]" if own else "[defaults]"
        raise ConfigError(
            f"{where} [recipes.{recipe.name}]: mixout = {recipe.mixout} with dropout = {recipe.dropout} "
            f"(from {source}); Mixout runs without dropout. Set dropout = 0.0 in [recipes.{recipe.name}] "
            f"(or drop it from {source}),"
            f" or set {MIXOUT_KEEP_DROPOUT} = true in [recipes.{recipe.name}] to keep both on purpose"
        )


@functools.cache
def _hints(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A class's field types and names, resolved once (resolving per run made 100k runs take minutes)."""
    return get_type_hints(cls), frozenset(f.name for f in fields(cls))


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints, names = _hints(cls)
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
        if not 1 <= raw <= MAX_RUNS:
            raise ConfigError(f"{where}: 'seeds' = {raw}; must be >= 1 and <= {MAX_RUNS}")
        return [(s, s, sample_seed) for s in range(1, raw + 1)]
    if isinstance(raw, list):
        if not raw or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
            raise ConfigError(f"{where}: 'seeds' = {_short(raw)}; must be a non-empty list of ints")
        if len(set(raw)) != len(raw):
            raise ConfigError(f"{where}: 'seeds' = {_short(raw)} repeats a seed; each seed must be distinct")
        _check_seeds(raw, "seeds", where)
        return [(s, s, sample_seed) for s in raw]
    if isinstance(raw, Mapping):
        unknown = set(raw) - _SEED_KEYS
        if unknown or not {"init", "order"} <= set(raw):
            raise ConfigError(
                f"{where}: 'seeds' table has keys {sorted(raw)}; needs 'init' and 'order' (and optionally 'sample')"
            )
        axes = [_seed_axis(raw[key], f"{where}: 'seeds.{key}'") for key in ("init", "order")]
        axes.append(_seed_axis(raw["sample"], f"{where}: 'seeds.sample'") if "sample" in raw else [sample_seed])
        for key, axis in zip(("init", "order", "sample"), axes, strict=True):
            _check_seeds(axis, f"seeds.{key}", where)
        if math.prod(len(a) for a in axes) > MAX_RUNS:
            sizes = " x ".join(str(len(a)) for a in axes)
            raise ConfigError(f"{where}: 'seeds' grid has {sizes} seeds; at most {MAX_RUNS} runs per experiment")
        return list(itertools.product(*axes))
    raise ConfigError(f"{where}: 'seeds' = {raw!r}; give a count, a list of ints or {{init=[..], order=[..]}}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_seeds(seeds: list[int], key: str, where: str) -> None:
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ConfigError(f"{where}: '{key}' has {bad[0]}; seeds must be in [0, {MAX_SEED}]")


def _check_bounds(recipe: Recipe, where: str) -> None:
    """The documented caps (MAX_*) on the fields that size a run or can only diverge beyond them."""

    def cap(name: str, value: float | None, limit: float) -> None:
        if value is not None and value > limit:
            raise ConfigError(f"{where}: recipe '{recipe.name}' field '{name}' = {value!r}; must be <= {limit:g}")

    for name in ("epochs", "intermediate_epochs"):
        cap(name, getattr(recipe, name), MAX_EPOCHS)
    for name in ("max_steps", "tapt_steps", "head_warmup_steps"):
        cap(name, getattr(recipe, name), MAX_STEPS)
    for name in ("lr", "tapt_lr", "head_warmup_lr"):
        cap(name, getattr(recipe, name), MAX_LR)


def _seed_axis(value: Any, where: str) -> list[int]:
    """One axis of a seed table: a count N means seeds 1..N, a list gives the seeds themselves."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_RUNS:
            raise ConfigError(f"{where} = {value}; a count must be >= 1 and <= {MAX_RUNS} (or give a list of seeds)")
        return list(range(1, value + 1))
    ints = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not value or not ints:
        raise ConfigError(f"{where} = {value!r}; must be a count (seeds 1..N) or a non-empty list of ints")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} = {value!r} repeats a seed; each seed must be distinct")
    return value


def _check_distinct_recipes(recipes: list[Recipe], where: str) -> None:
    """Two recipes with identical fields would share every run id, and one would end with no runs."""
    seen: dict[Recipe, str] = {}
    for recipe in recipes:
        key = dataclasses.replace(recipe, name="")
        if key in seen:
            raise ConfigError(
                f"{where}: recipes '{seen[key]}' and '{recipe.name}' have identical fields (after defaults), so "
                f"their runs would be the same runs; change a field of one or delete it"
            )
        seen[key] = recipe.name


def parse_experiment(
    data: Mapping[str, Any],
    source: str = "<experiment>",
    scale: str | None = None,
    data_dir: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentSpec:
    """Validate a parsed TOML table (after its scale section and `--set` overrides) and expand it into RunSpecs.

    The runs' data fingerprints are taken from `data_dir` (e.g. --data-dir), else the file's data_dir,
    else $HARNESS_DATA_DIR, else the hub: the same folder the runs will read.
    """
    where = source
    scales = data.get("scale", {})
    if not isinstance(scales, Mapping) or not all(isinstance(v, Mapping) for v in scales.values()):
        raise ConfigError(f"{where}: 'scale' must be a table of tables, e.g. [scale.cpu]")
    if scale is not None:
        if scale not in scales:
            raise ConfigError(f"{where}: no [scale.{scale}] section; available scales: {sorted(scales) or 'none'}")
        data = _deep_merge({k: v for k, v in data.items() if k != "scale"}, scales[scale])
    if overrides:
        where = f"{source} (with --set {' '.join(f'{k}={v!r}' for k, v in overrides.items())})"
        data = apply_overrides(data, overrides, source)
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
    problem = folder_name_problem(name)
    if problem:
        raise ConfigError(f"{where}: 'name' = {_short(name)} {problem}; it names the results folder")

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
        valid = isinstance(only, list) and all(isinstance(r, str) for r in only)
        missing = [r for r in only if r not in recipes_raw] if valid else only
        if not isinstance(only, list) or not only or missing:
            raise ConfigError(
                f"{where}: 'only_recipes' = {only!r}; must list recipes of [recipes.*]: {list(recipes_raw)}"
            )
        recipes_raw = {r: recipes_raw[r] for r in only}
    recipes = []
    for rname, overrides in recipes_raw.items():
        problem = label_problem(rname)
        if problem:
            raise ConfigError(f"{where}: recipe name {_short(rname)} {problem}")
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{where}: [recipes.{rname}] must be a table of recipe fields")
        merged = {**defaults, **overrides, "name": rname}
        keep_dropout = merged.pop(MIXOUT_KEEP_DROPOUT, False)
        recipe = _build(Recipe, merged, f"{where} [recipes.{rname}]")
        recipe.validate(where)
        check_mixout_dropout(recipe, keep_dropout, "dropout" in overrides, where)
        _check_bounds(recipe, where)
        recipes.append(recipe)
    if "imported_from" not in data:  # imported runs are named by their log's conditions, not made from fields
        _check_distinct_recipes(recipes, where)

    sample_seed = data.get("sample_seed", 0)
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int):
        raise ConfigError(f"{where}: 'sample_seed' = {_short(sample_seed)}; must be an int")
    _check_seeds([sample_seed], "sample_seed", where)
    adaptive = parse_adaptive(data["seeds"], where)  # seeds 1..max declared; the scheduler adds them in steps
    seeds = _seed_grid(adaptive.max if adaptive else data["seeds"], sample_seed, where)
    if len(tasks) * len(recipes) * len(seeds) > MAX_RUNS:
        raise ConfigError(
            f"{where}: {len(tasks)} task(s) x {len(recipes)} recipe(s) x {len(seeds)} seed(s) is more than "
            f"{MAX_RUNS} runs; split the experiment into several files"
        )
    runs = []
    for task, recipe, (init, order, sample) in itertools.product(tasks, recipes, seeds):
        spec = _build(
            RunSpec,
            {**run_fields, "task": task, "recipe": recipe, "init_seed": init, "order_seed": order,
             "sample_seed": sample, "experiment": name, "custom_task": custom.get(task)},
            where,
        )  # fmt: skip
        validate_run(spec, where)
        if "imported_from" not in data:  # imported runs were trained elsewhere, on what they were trained on
            _check_sample_size(spec, where)
        runs.append(spec)
    runs = _with_fingerprints(runs, data_dir or data.get("data_dir"))

    schedule_raw = data.get("schedule", {})
    if not isinstance(schedule_raw, Mapping):
        raise ConfigError(f"{where}: 'schedule' must be a table, e.g. [schedule]")
    schedule_raw = dict(schedule_raw)
    if "ray_address" in schedule_raw:  # the driver unpickles what that cluster returns: never from a shared file
        raise ConfigError(
            f"{where}: 'schedule.ray_address' is not read from experiment files; give the cluster on the command "
            "line (`harness run --ray-address ADDRESS`) or in the environment ($RAY_ADDRESS)"
        )
    if "deterministic" in data:  # top level or [schedule]: the same switch
        schedule_raw.setdefault("deterministic", data["deterministic"])
    early = data.get("early_stop", schedule_raw.pop("early_stop", None))
    slurm = _slurm_policy(schedule_raw.pop("slurm", {}), where)
    early_policy = None
    if early is not None and not isinstance(early, Mapping):
        raise ConfigError(f"{where}: 'early_stop' must be a table, e.g. [early_stop] at = 0.25, keep = 0.5")
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
    schedule = dataclasses.replace(schedule, early_stop=early_policy, slurm=slurm)
    families = {model: model_type(model) for model in dict.fromkeys(spec.model for spec in runs)}
    runs = [choose_engine(spec, schedule.seeds_per_worker, families[spec.model]) for spec in runs]  # seed groups

    thresholds = data.get("degenerate_threshold", {})
    if not isinstance(thresholds, Mapping) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in thresholds.values()
    ):
        raise ConfigError(f"{where}: 'degenerate_threshold' must map task names to numbers, e.g. {{stsb = 10.0}}")
    return ExperimentSpec(
        name=name,
        runs=tuple(runs),
        schedule=schedule,
        data_dir=data.get("data_dir"),
        degenerate_threshold={k: float(v) for k, v in thresholds.items()},
        paper=data.get("paper", {}),
        description=data.get("description", ""),
        adaptive=adaptive,
        source=source,
        scale=scale,
    )


def _with_fingerprints(runs: list[RunSpec], data_dir: str | None) -> list[RunSpec]:
    """Each run with the fingerprints of the data of every task it trains on and of its weights."""
    root = data_root(data_dir)
    data: dict[str, str] = {}
    models: dict[str, str] = {}
    out = []
    for spec in runs:
        tasks = {spec.task: spec.task_def}
        if spec.recipe.intermediate_task is not None:
            tasks.setdefault(spec.recipe.intermediate_task, TASKS[spec.recipe.intermediate_task])
        prints = tuple(sorted((name, data.get(name) or data.setdefault(name, data_fingerprint(task, root)))
                              for name, task in tasks.items()))  # fmt: skip
        model = models.get(spec.model) or models.setdefault(spec.model, model_fingerprint(spec.model))
        out.append(dataclasses.replace(spec, data_fingerprints=prints, model_fingerprint=model))
    return out


def _slurm_policy(raw: Any, where: str) -> SlurmPolicy:
    """[schedule.slurm]: validated here so a typo fails before anything is queued."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'schedule.slurm' must be a table, e.g. [schedule.slurm] partition = \"gpu\"")
    policy = _build(SlurmPolicy, raw, f"{where} [schedule.slurm]")
    for key, low in (("time_min", 1), ("gpus_per_run", 0), ("cpus_per_run", 1), ("max_jobs", 1), ("max_requeues", 0)):
        if getattr(policy, key) < low:
            raise ConfigError(f"{where}: 'schedule.slurm.{key}' = {getattr(policy, key)}; must be >= {low}")
    if policy.mem_gb is not None and policy.mem_gb <= 0:
        raise ConfigError(f"{where}: 'schedule.slurm.mem_gb' = {policy.mem_gb}; must be > 0 or omitted")
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(policy, key)
        if value is not None and not value.strip():
            raise ConfigError(f"{where}: 'schedule.slurm.{key}' is empty; give a name or omit it")
    if policy.cluster not in SLURM_CLUSTERS:
        raise ConfigError(
            f"{where}: 'schedule.slurm.cluster' = {policy.cluster!r}; allowed: {', '.join(SLURM_CLUSTERS)}"
        )
    return policy


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
        problem = label_problem(name)
        if problem:
            raise ConfigError(f"{where}: custom task name {_short(name)} {problem}")
        for key in ("folder", "train_file", "dev_file"):
            value = fields_.get(key)
            if value is not None and (not isinstance(value, str) or not _inside_data_dir(value)):
                raise ConfigError(
                    f"{at}: '{key}' = {_short(value)}; must be a path under the data directory (relative, no '..'); "
                    "to read data elsewhere, point --data-dir (or data_dir) at the folder that holds it"
                )
        # `labels` omitted means a regression task (the README's recipe); the metric check below enforces it
        values = {"fmt": "csv", "train_file": "train.csv", "dev_file": "dev.csv", "labels": [], **fields_}
        values["name"] = name
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
        repeated = sorted({str(x) for x in task.labels if list(map(str, task.labels)).count(str(x)) > 1})
        if repeated:
            raise ConfigError(f"{at}: 'labels' = {list(task.labels)} repeats {repeated}; list each label value once")
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
            f"set cloze = false for {spec.task!r} "
            "(or give the task a pattern and verbalizers in harness/experiment/tasks.py)"
        )
    if spec.eval_protocol not in EVAL_PROTOCOLS:
        raise ConfigError(f"{where}: 'eval_protocol' = {spec.eval_protocol!r}; allowed: {', '.join(EVAL_PROTOCOLS)}")
    for key in ("sample_size", "eval_size", "model_layers"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            raise ConfigError(f"{where}: '{key}' = {value}; must be >= 1 or omitted")

    if spec.max_seq_length < 8:
        raise ConfigError(f"{where}: 'max_seq_length' = {spec.max_seq_length}; must be >= 8")
    if not 1 <= spec.num_evals <= MAX_NUM_EVALS:
        raise ConfigError(f"{where}: 'num_evals' = {spec.num_evals}; must be in [1, {MAX_NUM_EVALS}]")
    if not 0 <= spec.split_seed <= MAX_SEED:
        raise ConfigError(f"{where}: 'split_seed' = {spec.split_seed}; must be in [0, {MAX_SEED}]")
    if spec.eval_size is not None and spec.eval_size < min_eval_size(spec):
        raise ConfigError(
            f"{where}: 'eval_size' = {spec.eval_size} is too small for task {spec.task!r} "
            f"({spec.task_def.metric}, {spec.eval_protocol} protocol); use at least {min_eval_size(spec)}"
        )
    if spec.model_layers is not None and spec.recipe.reinit_layers > spec.model_layers:
        raise ConfigError(
            f"{where}: recipe '{spec.recipe.name}' has reinit_layers = {spec.recipe.reinit_layers} "
            f"but the model keeps only model_layers = {spec.model_layers}; use at most {spec.model_layers}"
        )


def min_sample_size(spec: RunSpec) -> int:
    """One training example per class (two for a regression task: a constant cannot be regressed on)."""
    return max(2, spec.task_def.num_labels)


def _check_sample_size(spec: RunSpec, where: str) -> None:
    if spec.sample_size is not None and spec.sample_size < min_sample_size(spec):
        raise ConfigError(
            f"{where}: 'sample_size' = {spec.sample_size} is too small for task {spec.task!r}: a stratified "
            f"sample needs at least one example per class (two for regression); use at least {min_sample_size(spec)}"
        )


def _inside_data_dir(path: str) -> bool:
    """A relative path that stays under the folder it is joined to."""
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts and "\0" not in path


def min_eval_size(spec: RunSpec) -> int:
    """Two examples per class (two for a correlation) in every evaluation split: the held-out protocol
    halves the dev set, so it needs twice as many."""
    per_split = 2 * spec.task_def.num_labels
    return per_split * (2 if spec.eval_protocol == "heldout" else 1)


def load_experiment(
    path: str | Path,
    scale: str | None = None,
    data_dir: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {path} does not exist; see experiments/ for examples")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_experiment(data, str(path), scale, data_dir, overrides)
