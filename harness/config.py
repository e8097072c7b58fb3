"""Experiment files (TOML) -> frozen RunSpecs with stable run ids.

An experiment is tasks x recipes x seeds. Every field is validated here, so a
typo in a TOML file fails at load time with the file, the field and the fix,
not an hour into training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from harness.tasks import METRICS, TASKS, TaskDef


class ConfigError(ValueError):
    """A bad experiment file or spec: the message names the field and the fix."""


# Bumped when a change to training would make old results incomparable.
SPEC_VERSION = 1

EVAL_PROTOCOLS = ("dev", "heldout")
SELECT_MODES = ("best", "final")
NOISE_KINDS = ("uniform", "normal")
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Recipe:
    """How one run fine-tunes: optimiser, schedule and the papers' remedies."""

    name: str = "standard"
    # Optimiser: Adam with decoupled weight decay; bias_correction=False is BERTAdam.
    lr: float = 2e-5
    bias_correction: bool = True
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    prior_wd: float = 0.0  # decay toward the pre-trained weights instead of zero
    grad_clip: float = 1.0  # 0 disables clipping
    # Length and schedule: max_steps wins over epochs when set.
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 16
    warmup_ratio: float = 0.1
    select: str = "best"  # report the checkpoint best on validation ("best", Zhang/Mosbach) or the last ("final")
    dropout: float | None = None  # None keeps the model's own
    # Zhang et al. 2021
    reinit_layers: int = 0  # re-init the pooler and the top L encoder blocks
    reinit_pooler: bool = False  # re-init the pooler alone (implied by reinit_layers > 0)
    llrd: float | None = None  # layer-wise lr decay factor in (0, 1]
    mixout: float = 0.0  # Mixout probability p (Lee et al. 2020); dropout 0 unless set explicitly
    intermediate_task: str | None = None  # first stage on this task (e.g. "mnli")
    intermediate_size: int | None = None  # examples in the first stage (None = all)
    intermediate_epochs: float = 1.0
    # Parameter-efficient
    bitfit: bool = False
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    # Ruder 2021 survey mitigations
    r3f_lambda: float = 0.0
    r3f_eps: float = 1e-5
    r3f_noise: str = "uniform"
    head_warmup_steps: int = 0  # LP-FT: train only the head for this many steps first
    head_warmup_lr: float | None = None
    cloze: bool = False  # PET-style pattern + verbaliser through the MLM head
    tapt_steps: int = 0  # task-adaptive MLM pre-training steps on the task's text
    tapt_lr: float = 1e-4
    tapt_mlm_probability: float = 0.15

    def validate(self, where: str) -> None:
        def bad(name: str, value: object, allowed: str) -> ConfigError:
            return ConfigError(f"{where}: recipe '{self.name}' field '{name}' = {value!r}; {allowed}")

        positive = ("lr", "adam_eps", "epochs", "intermediate_epochs", "tapt_lr", "lora_alpha")
        for name in positive:
            if not getattr(self, name) > 0:
                raise bad(name, getattr(self, name), "must be > 0")
        for name in ("weight_decay", "prior_wd", "grad_clip", "r3f_lambda", "r3f_eps"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "must be >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "must be in [0, 1)")
        for name in ("warmup_ratio", "mixout", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "must be in [0, 1)")
        if not 0 < self.tapt_mlm_probability < 1:
            raise bad("tapt_mlm_probability", self.tapt_mlm_probability, "must be in (0, 1)")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise bad("dropout", self.dropout, "must be in [0, 1) or omitted")
        if self.batch_size < 1:
            raise bad("batch_size", self.batch_size, "must be >= 1")
        for name in ("max_steps", "intermediate_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(name, value, "must be >= 1 or omitted")
        for name in ("reinit_layers", "lora_r", "head_warmup_steps", "tapt_steps"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "must be >= 0")
        if self.llrd is not None and not 0 < self.llrd <= 1:
            raise bad("llrd", self.llrd, "must be in (0, 1] (e.g. 0.95) or omitted")
        if self.head_warmup_lr is not None and self.head_warmup_lr <= 0:
            raise bad("head_warmup_lr", self.head_warmup_lr, "must be > 0 or omitted")
        if self.select not in SELECT_MODES:
            raise bad("select", self.select, f"allowed: {', '.join(SELECT_MODES)}")
        if self.r3f_noise not in NOISE_KINDS:
            raise bad("r3f_noise", self.r3f_noise, f"allowed: {', '.join(NOISE_KINDS)}")
        self._check_combinations(where)

    def _check_combinations(self, where: str) -> None:
        """Pairs of switches that contradict each other, named together."""
        reinit = self.reinit_layers > 0 or self.reinit_pooler
        conflicts = [
            (
                self.bitfit and reinit,
                "bitfit",
                "reinit_layers/reinit_pooler",
                "BitFit freezes the weights that re-init would reset",
            ),
            (self.bitfit and self.lora_r > 0, "bitfit", "lora_r", "choose one parameter-efficient method"),
            (self.lora_r > 0 and self.mixout > 0, "lora_r", "mixout", "Mixout mixes full weights; LoRA freezes them"),
            (self.bitfit and self.mixout > 0, "bitfit", "mixout", "Mixout needs trainable weights"),
            (
                self.cloze and reinit,
                "cloze",
                "reinit_layers/reinit_pooler",
                "cloze tuning reuses the pre-trained MLM head",
            ),
            (
                self.cloze and self.head_warmup_steps > 0,
                "cloze",
                "head_warmup_steps",
                "cloze tuning has no new head to warm up",
            ),
            (
                self.cloze and self.intermediate_task is not None,
                "cloze",
                "intermediate_task",
                "the intermediate stage trains a classification head",
            ),
            (
                self.cloze and self.r3f_lambda > 0,
                "cloze",
                "r3f_lambda",
                "R3F compares classifier outputs; the cloze head's outputs are the MLM vocabulary",
            ),
            (
                self.tapt_steps > 0 and self.intermediate_task is not None,
                "tapt_steps",
                "intermediate_task",
                "both stages replace the pre-trained encoder and one would silently discard the other",
            ),
            (
                self.lora_r > 0 and reinit,
                "lora_r",
                "reinit_layers/reinit_pooler",
                "LoRA would freeze the re-initialised weights at their random values",
            ),
            (
                self.prior_wd > 0 and self.weight_decay > 0,
                "prior_wd",
                "weight_decay",
                "decay toward zero and toward the pre-trained weights at once is ambiguous",
            ),
        ]
        for clash, a, b, why in conflicts:
            if clash:
                raise ConfigError(f"{where}: recipe '{self.name}' sets both '{a}' and '{b}': {why}; drop one")


@dataclass(frozen=True)
class RunSpec:
    """One seeded fine-tuning run; its run_id is a hash of everything that shapes the result."""

    task: str
    model: str
    recipe: Recipe
    init_seed: int
    order_seed: int
    sample_seed: int = 0
    experiment: str = ""  # provenance only: not part of run_id
    custom_task: TaskDef | None = None  # a task declared in the experiment file ([custom_tasks.<name>])
    model_layers: int | None = None  # keep only the first N pre-trained layers
    sample_size: int | None = None  # few-sample training set size (None = all)
    eval_protocol: str = "heldout"
    eval_size: int | None = None  # cap on dev examples (stratified, fixed seed)
    split_seed: int = 0  # fixed, independent of the run seeds (Zhang et al.)
    max_seq_length: int = 128
    num_evals: int = 10

    @property
    def run_id(self) -> str:
        return run_id_of(self)

    @property
    def task_def(self) -> TaskDef:
        """The task's definition: the experiment's own, else the registry's."""
        return self.custom_task or TASKS[self.task]

    @property
    def config_key(self) -> str:
        """The configuration this run is one seed of (task x recipe)."""
        return f"{self.task}/{self.recipe.name}"

    def canonical(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("experiment")
        if data["custom_task"] is None:
            data.pop("custom_task")  # keeps the ids of registry tasks what they were
        data["recipe"].pop("name")  # renaming a recipe does not change its runs
        data["spec_version"] = SPEC_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> RunSpec:
        data = json.loads(text)
        data["recipe"] = Recipe(**data["recipe"])
        if data.get("custom_task"):
            data["custom_task"] = task_from_dict(data["custom_task"])
        return RunSpec(**data)


def run_id_of(spec: RunSpec) -> str:
    text = json.dumps(spec.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EarlyStopPolicy:
    """Dodge et al. 2020: at fraction `at` of training keep the best `keep` of each configuration."""

    at: float = 0.25
    keep: float = 0.5  # a fraction in (0, 1) or, when >= 1, a count of seeds to keep


@dataclass(frozen=True)
class SchedulePolicy:
    backend: str = "local"
    runs_per_gpu: int = 1
    threads_per_run: int = 1
    max_retries: int = 2
    oom_halve_batch: bool = True
    ray_address: str | None = None
    early_stop: EarlyStopPolicy | None = None


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    runs: tuple[RunSpec, ...]
    schedule: SchedulePolicy = field(default_factory=SchedulePolicy)
    data_dir: str | None = None
    degenerate_threshold: Mapping[str, float] = field(default_factory=dict)
    paper: Mapping[str, Any] = field(default_factory=dict)  # reference numbers, free-form
    description: str = ""
    source: str = ""  # the TOML path

    @property
    def recipes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.recipe.name for r in self.runs))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.task for r in self.runs))


# ---------------------------------------------------------------------------
# Parsing

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
    for key in ("runs_per_gpu", "threads_per_run"):
        if getattr(schedule, key) < 1:
            raise ConfigError(f"{where}: 'schedule.{key}' = {getattr(schedule, key)}; must be >= 1")
    if schedule.max_retries < 0:
        raise ConfigError(f"{where}: 'schedule.max_retries' = {schedule.max_retries}; must be >= 0")
    schedule = dataclasses.replace(schedule, early_stop=early_policy)

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


def task_from_dict(data: Mapping[str, Any]) -> TaskDef:
    tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
    return TaskDef(**{**data, **tuples})


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
