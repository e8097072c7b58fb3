"""The spec types: Recipe, RunSpec (and its run id), schedule policies, ExperimentSpec.

Frozen and hashable; parsing experiment files into them lives in harness/experiment/config.py.

A run id is a hash of RunSpec.canonical(): every field that shapes the result, the fingerprints of
the data and of the weights (harness/experiment/fingerprint.py) and SPEC_VERSION. When to bump SPEC_VERSION:
whenever the same canonical spec would now train or score differently (a change to the training
loop, a recipe's formula, data subsetting or splitting, evaluation or checkpoint selection, the
status rules such as diverged/failed), or when the meaning of a spec field changes. Bumping gives
every run a new id, so old stored runs are neither resumed into nor pooled with new ones. Adding a
field whose default keeps old behaviour needs no bump. History: 1 = first release; 2 = data and
weight fingerprints in the id, after training and the failed-run rule changed under version 1;
3 = dropout and Mixout masks from the counter hash in the loop too (one definition of a run in both
engines), so the engine left the id.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.experiment.tasks import TASKS, TaskDef


class ConfigError(ValueError):
    """A bad experiment file or spec: the message names the field and the fix."""


# Bumped when a change would make old results incomparable: the rule is in the module docstring.
SPEC_VERSION = 3

EVAL_PROTOCOLS = ("dev", "heldout")
SELECT_MODES = ("best", "final")
NOISE_KINDS = ("uniform", "normal")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
BACKENDS = ("local", "ray", "slurm")
SLURM_CLUSTERS = ("slurm", "local")


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
    # Numerics: autocast dtype of forward/backward ("fp16" adds a grad scaler, as Zhang et al. trained);
    # "tf32": fp32 weights and activations, matmuls in TensorFloat-32 (CUDA only); "fp32" is strict IEEE.
    precision: str = "fp32"

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
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"allowed: {', '.join(PRECISIONS)}")
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
    # Identity of what the run trains on, resolved when the experiment is loaded (harness/experiment/fingerprint.py):
    # (task, fingerprint of its train/dev data) for every task the run trains on, and the weights'.
    data_fingerprints: tuple[tuple[str, str], ...] = ()
    model_fingerprint: str = ""
    # How it is scheduled, not what it is (outside run_id, like `experiment`): both engines give the same numbers.
    engine: str = "loop"  # "vectorised": trained in a seed group (harness.training.vectorised)
    engine_note: str = ""  # why a run asked for a seed group trains in the loop (harness.experiment.engines)

    @functools.cached_property
    def run_id(self) -> str:  # cached: status and the scheduler ask for it many times per run
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
        data = dataclasses.asdict(dataclasses.replace(self, recipe=None))
        data["recipe"] = dict(_recipe_dict(self.recipe))  # one deep copy per recipe, not per run
        for name in ("experiment", "engine", "engine_note"):
            data.pop(name)
        if data["custom_task"] is None:
            data.pop("custom_task")  # keeps the ids of registry tasks what they were
        data["recipe"].pop("name")  # renaming a recipe does not change its runs
        if self.model_fingerprint.startswith("sha256:"):
            data.pop("model")  # weights known by content: moving or aliasing the folder does not change its runs
        if data["recipe"]["precision"] == "fp32":
            data["recipe"].pop("precision")  # fp32 runs keep the ids they had before the field existed
        data["spec_version"] = SPEC_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> RunSpec:
        data = json.loads(text)
        data["recipe"] = Recipe(**data["recipe"])
        data["data_fingerprints"] = tuple(tuple(pair) for pair in data.get("data_fingerprints", ()))
        if data.get("custom_task"):
            data["custom_task"] = task_from_dict(data["custom_task"])
        return RunSpec(**data)


@functools.lru_cache(maxsize=1024)
def _recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


def run_id_of(spec: RunSpec) -> str:
    text = json.dumps(spec.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# seeds = { adaptive = { target = "ci_width<=W" } }: the interval width a configuration stops at
CI_TARGET = re.compile(r"^\s*ci_width\s*<=\s*([0-9]*\.?[0-9]+)\s*$")


@dataclass(frozen=True)
class AdaptiveSeeds:
    """`seeds = { adaptive = {...} }`: seeds 1..max declared, run `min` first, then `step` more per look."""

    min: int = 5
    max: int = 50
    step: int = 5
    target: str = "ci_width<=1.0"
    alpha: float = 0.05
    spending: str = "obrien-fleming"

    @property
    def looks(self) -> tuple[int, ...]:
        """Seeds per configuration at each look: min, min + step, ..., max (max always the last)."""
        counts = list(range(self.min, self.max + 1, self.step))
        return tuple(counts if counts[-1] == self.max else [*counts, self.max])

    @property
    def ci_width(self) -> float | None:
        """The width of a "ci_width<=W" target; None for the sequential target."""
        match = CI_TARGET.match(self.target)
        return float(match.group(1)) if match else None


@dataclass(frozen=True)
class EarlyStopPolicy:
    """Dodge et al. 2020: at fraction `at` of training keep the best `keep` of each configuration."""

    at: float = 0.25
    keep: float = 0.5  # a fraction in (0, 1) or, when >= 1, a count of seeds to keep


@dataclass(frozen=True)
class SlurmPolicy:
    """[schedule.slurm]: how each attempt is submitted through submitit (one job per run, or an array per config)."""

    partition: str | None = None
    time_min: int = 60  # wall-clock limit of one job, minutes
    gpus_per_run: int = 1  # 0: CPU jobs
    cpus_per_run: int = 2
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    max_jobs: int = 64  # jobs queued or running at once (the driver's slots)
    array: bool = False  # one job array per configuration instead of one job per run
    max_requeues: int = 3  # timeouts requeued; preemptions are always requeued
    cluster: str = "slurm"  # "local": submitit's local executor (a workstation, or tests)


@dataclass(frozen=True)
class SchedulePolicy:
    backend: str = "local"
    runs_per_gpu: int = 1
    threads_per_run: int = 1
    max_retries: int = 2
    oom_halve_batch: bool = True
    early_stop: EarlyStopPolicy | None = None
    slurm: SlurmPolicy = field(default_factory=SlurmPolicy)
    deterministic: bool = False  # torch deterministic algorithms + cuBLAS workspace in every worker
    seeds_per_worker: int = 1  # > 1: runs of one configuration trained K at a time in one process


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
    scale: str | None = None  # the [scale.<name>] section applied, if any
    adaptive: AdaptiveSeeds | None = (
        None  # seeds = { adaptive = {...} }: added in steps (harness/experiment/seed_budget.py)
    )

    @property
    def recipes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.recipe.name for r in self.runs))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.task for r in self.runs))


def task_from_dict(data: Mapping[str, Any]) -> TaskDef:
    tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
    return TaskDef(**{**data, **tuples})
