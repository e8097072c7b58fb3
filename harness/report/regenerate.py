"""The command that regenerates exactly the runs of a store: `harness run FILE --scale S [--set ...]`.

A committed report must name a command whose planned run ids are the store's, no more: a run stopped at
its time budget holds a subset (two of three tasks, say), and re-running the file as written would train
runs the report never had. The command keeps the `--set` overrides the store was run with and, when the
stored runs are a subset, adds the restriction that plans exactly them (`tasks`, `only_recipes`, `seeds`);
it is then checked by planning it again. No training and no torch: experiment files are only parsed.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.config import load_experiment
from harness.experiment.spec import ExperimentSpec, RunSpec


@dataclass(frozen=True)
class Regenerate:
    """A `harness run` command, how many runs it plans, and whether they are exactly the stored ones."""

    experiment: str
    scale: str | None
    sets: Mapping[str, Any] = field(default_factory=dict)
    planned: int = 0
    stored: int = 0
    exact: bool = False

    def command(self) -> str:
        parts = ["harness", "run", self.experiment, *(["--scale", self.scale] if self.scale else [])]
        for key, value in self.sets.items():
            parts += ["--set", f"{key}={toml_value(value)}"]
        return shlex.join(parts)


def toml_value(value: Any) -> str:
    """A value as TOML writes it inline, so `--set` parses it back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _task_key(path: Path, scale: str | None) -> str:
    """Whether the file (at `scale`) names its tasks as `task` or `tasks`: an override must use the same key."""
    raw = tomllib.loads(path.read_text())
    keys = set(raw) | set(raw.get("scale", {}).get(scale, {}) if scale else ())
    return "tasks" if "tasks" in keys else "task"


def _restriction(spec: ExperimentSpec, kept: list[RunSpec], task_key: str) -> dict[str, Any]:
    """The `--set` overrides that plan only the kept runs' tasks, recipes and seeds (empty when all are kept)."""
    sets: dict[str, Any] = {}
    tasks = list(dict.fromkeys(r.task for r in kept))
    if len(tasks) < len(spec.tasks):
        sets[task_key] = tasks if task_key == "tasks" else tasks[0]
    recipes = list(dict.fromkeys(r.recipe.name for r in kept))
    if len(recipes) < len(spec.recipes):
        sets["only_recipes"] = recipes
    planned = {(r.init_seed, r.order_seed) for r in spec.runs}
    seeds = {(r.init_seed, r.order_seed) for r in kept}
    if seeds != planned:
        if all(i == o for i, o in seeds):
            sets["seeds"] = sorted(i for i, _ in seeds)
        else:
            sets["seeds"] = {"init": sorted({i for i, _ in seeds}), "order": sorted({o for _, o in seeds})}
    return sets


def regenerate(
    experiment: str | Path,
    scale: str | None,
    stored_ids: Collection[str],
    overrides: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    shown_as: str | None = None,
) -> Regenerate:
    """The command that plans exactly `stored_ids` from `experiment` at `scale` (with the store's overrides).

    `shown_as`: the file's path as the command names it (repo-relative). `exact` is False when no
    restriction of the file plans exactly the stored runs (e.g. runs of an edited recipe)."""
    path = Path(experiment)
    name = shown_as or str(experiment)
    overrides = dict(overrides or {})
    stored = set(stored_ids)
    spec = load_experiment(path, scale=scale, data_dir=data_dir, overrides=overrides or None)
    planned = {r.run_id for r in spec.runs}
    if planned == stored:
        return Regenerate(name, scale, overrides, len(planned), len(stored), exact=True)
    kept = [r for r in spec.runs if r.run_id in stored]
    if len(kept) == len(stored) and kept:
        sets = {**overrides, **_restriction(spec, kept, _task_key(path, scale))}
        again = load_experiment(path, scale=scale, data_dir=data_dir, overrides=sets)
        ids = {r.run_id for r in again.runs}
        return Regenerate(name, scale, sets, len(ids), len(stored), exact=ids == stored)
    return Regenerate(name, scale, overrides, len(planned), len(stored), exact=False)
