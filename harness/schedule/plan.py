"""`harness run --dry-run`: what `harness run` would do, in about a second, without training or importing torch.

Per configuration (task x recipe, in the experiment's order): its runs and seed axes, how many are stored,
stored as failed, reusable from another experiment's identical runs, and left to run; the engine and the seed
groups the scheduler's own `plan_attempts` makes of them (so the plan cannot disagree with a run), and why a
recipe falls back to one run per worker; the worker slots; the checks made before any run starts; and the wall
time, estimated from the stored runs of the same configuration (their `wall_time_s`, else their `phases`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.experiment.engines import group_key, vectorised_unsupported
from harness.experiment.spec import BACKENDS, ExperimentSpec, RunSpec
from harness.schedule import groups
from harness.schedule.backend import GroupAttempt
from harness.schedule.core import reusable_runs
from harness.schedule.local import discover_gpus, gpu_free_bytes, memory_per_slot, plan_slots
from harness.schedule.lock import is_locked
from harness.schedule.progress import format_seconds
from harness.storage.store import experiment_dir, load_runs

STORED = ("done", "diverged", "stopped")


@dataclass(frozen=True)
class ConfigPlan:
    """One configuration's share of the run."""

    task: str
    recipe: str
    runs: int
    seeds: tuple[int, int, int]  # distinct init, order, sample seeds
    stored: int  # done, diverged or stopped: skipped
    failed: int  # stored as failed: skipped unless --retry-failed
    reused: int  # copied from another experiment's identical run instead of trained
    todo: int
    engine: str  # "loop" or "vectorised"
    attempts: tuple[int, ...]  # size of each first attempt (a seed group, or 1)
    fallback: str  # why seeds_per_worker > 1 still trains one run per worker ("" otherwise)
    run_s: float  # mean seconds of slot time per run, from stored runs of this configuration (NaN: none)
    timed: int  # stored runs that timed it


@dataclass(frozen=True)
class RunPlan:
    experiment: str
    source: str
    scale: str | None
    backend: str
    slots: int
    slot_text: str
    configs: tuple[ConfigPlan, ...]
    checks: tuple[tuple[str, str], ...]  # (check, what was found), in the order they ran
    problems: tuple[str, ...]  # why it would not run (empty: it would)
    notes: tuple[str, ...] = ()

    @property
    def eta_s(self) -> float:
        """Slot time of the runs to do / slots; NaN when a configuration with runs to do has no timed run."""
        todo = [c for c in self.configs if c.todo]
        if any(np.isnan(c.run_s) for c in todo):
            return float("nan")
        return sum(c.todo * c.run_s for c in todo) / max(1, self.slots)


def plan_slots_text(experiment: ExperimentSpec, backend: str, max_workers: int | None) -> tuple[int, str, int | None]:
    """(slots, how they come about, GPU memory per slot) as the driver would plan them here: the local backend's
    own plan_slots and memory_per_slot; other backends ask their cluster (no memory estimate)."""
    policy = experiment.schedule
    if backend != "local":
        n = max_workers or 0
        return n, f"{backend}: slots from the cluster" + (f", at most {n} (--workers)" if n else ""), None
    gpus = discover_gpus()
    slots = plan_slots(gpus, policy.runs_per_gpu, policy.threads_per_run, max_workers)
    if gpus:
        text = f"{len(gpus)} GPU(s) x runs_per_gpu {policy.runs_per_gpu}"
    else:
        text = f"no GPU visible: {os.cpu_count() or 1} CPU core(s) / threads_per_run {policy.threads_per_run}"
    if max_workers:
        text += f", --workers {max_workers}"
    memory = memory_per_slot(slots, gpu_free_bytes(gpus)) if gpus else None
    if memory:
        text += f", ~{memory / 2**30:.1f} GiB of GPU memory per slot"
    return len(slots), text, memory


def run_checks(
    experiment: ExperimentSpec, backend: str, root: Path, exp_dir: Path
) -> tuple[list[tuple[str, str]], list[str]]:
    """(passed checks, problems) of what run_experiment refuses before the first run: the backend and its seed
    groups, a driver holding the lock, a results folder that cannot be written."""
    checks, problems = [], []
    if backend not in BACKENDS:
        problems.append(f"backend {backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
    else:
        checks.append(("backend", f"{backend}: the experiment's seed groups and runs can run there"))
    driver = is_locked(exp_dir)
    if driver:
        problems.append(f"{exp_dir} is locked by a running driver (pid {driver.get('pid')}); wait for it or stop it")
    else:
        checks.append(("lock", f"no driver running on {exp_dir}"))
    writable = next((p for p in (exp_dir, root, *root.resolve().parents) if p.exists()), root)
    if os.access(writable, os.W_OK):
        checks.append(("results folder", f"{writable} is writable"))
    else:
        problems.append(f"cannot write {writable}: the results folder is read-only; use --results DIR")
    return checks, problems


def _run_seconds(row: Mapping[str, Any]) -> float:
    """A stored run's slot time: wall_time_s (a seed group's member holds its share), else the sum of its phases."""
    wall = row.get("wall_time_s")
    if wall is not None and pd.notna(wall) and wall > 0:
        return float(wall)
    try:
        return float(sum(json.loads(str(row.get("phases") or "{}")).values())) or float("nan")
    except (ValueError, TypeError, AttributeError):
        return float("nan")


def _timings(stored: pd.DataFrame) -> dict[str, list[float]]:
    """Seconds per finished stored run, by configuration (group_key: everything in a run's id but its seeds)."""
    out: dict[str, list[float]] = {}
    for row in stored[stored["status"].astype(str).isin(("done", "diverged"))].to_dict("records"):
        seconds = _run_seconds(row)
        if np.isnan(seconds):
            continue
        try:
            key = group_key(RunSpec.from_json(str(row["spec"])))
        except (TypeError, ValueError, KeyError):
            continue  # an imported run: no spec to match
        out.setdefault(key, []).append(seconds)
    return out


def plan_run(
    experiment: ExperimentSpec,
    results_root: str | Path,
    *,
    backend: str | None = None,
    max_workers: int | None = None,
    retry_failed: bool = False,
    checks: Sequence[tuple[str, str]] = (),
    problems: Sequence[str] = (),
) -> RunPlan:
    """The plan of `harness run` for `experiment` under results_root. It reads the store as `harness status` does
    (which refreshes its load snapshot) and writes nothing else: another experiment's reusable runs are counted,
    not copied. checks, problems: the preflight's outcome (harness.preflight.preflight_checks); the plan adds
    its own."""
    root = Path(results_root)
    name = backend or experiment.schedule.backend
    exp_dir = experiment_dir(root, experiment.name)
    more_checks, more_problems = run_checks(experiment, name, root, exp_dir)
    checks, problems = [*checks, *more_checks], [*problems, *more_problems]

    specs = list({s.run_id: s for s in experiment.runs}.values())
    stored = load_runs(exp_dir) if (exp_dir / "runs").is_dir() else pd.DataFrame(columns=["run_id", "status"])
    status = dict(zip(stored["run_id"].astype(str), stored["status"].astype(str), strict=True))
    failed = {r for r, s in status.items() if s == "failed"}
    skip = {r for r, s in status.items() if s in STORED or (s == "failed" and not retry_failed)}
    reused = set(reusable_runs(root, exp_dir, [s.run_id for s in specs if s.run_id not in skip]))
    todo = [s for s in specs if s.run_id not in skip and s.run_id not in reused]
    policy = experiment.schedule
    rung_at = policy.early_stop.at if policy.early_stop else None
    slots, slot_text, memory = plan_slots_text(experiment, name, max_workers)
    attempts: dict[str, list[int]] = {}
    for attempt in groups.plan_attempts(todo, policy.seeds_per_worker, rung_at, max(1, slots), memory):
        members = attempt.specs if isinstance(attempt, GroupAttempt) else (attempt.spec,)
        attempts.setdefault(members[0].config_key, []).append(len(members))
    timings = _timings(stored) if todo else {}

    configs = []
    by_config: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_config.setdefault(spec.config_key, []).append(spec)
    for key, members in by_config.items():
        first = members[0]
        ids = {s.run_id for s in members}
        seconds = [t for k in dict.fromkeys(group_key(s) for s in members) for t in timings.get(k, [])]
        fallback = vectorised_unsupported(first.recipe) if policy.seeds_per_worker > 1 else ""
        seeds = tuple(len({getattr(s, f) for s in members}) for f in ("init_seed", "order_seed", "sample_seed"))
        counts = {"stored": sum(status.get(r) in STORED for r in ids), "failed": len(ids & failed),
                  "reused": len(ids & reused), "todo": sum(1 for s in todo if s.run_id in ids)}  # fmt: skip
        run_s = float(np.mean(seconds)) if seconds else float("nan")
        configs.append(
            ConfigPlan(first.task, first.recipe.name, len(members), seeds, **counts, engine=first.engine,
                       attempts=tuple(attempts.get(key, ())), fallback=fallback, run_s=run_s, timed=len(seconds))
        )  # fmt: skip
    notes = []
    if experiment.adaptive is not None:
        a = experiment.adaptive
        notes.append(f"adaptive seed budget: {a.min} seeds per configuration first, then {a.step} more per look up to "
                     f"{a.max} until `{a.target}` holds; the plan counts the maximum")  # fmt: skip
    if policy.early_stop is not None:
        notes.append(f"early stopping at {policy.early_stop.at:g} of training keeps {policy.early_stop.keep:g} of "
                     "each configuration's seeds: runs stopped there take less time than estimated")  # fmt: skip
    return RunPlan(
        experiment.name, experiment.source, experiment.scale, name, slots, slot_text, tuple(configs), tuple(checks),
        tuple(problems), tuple(notes),
    )  # fmt: skip


def _attempts_text(sizes: Sequence[int]) -> str:
    if not sizes:
        return "-"
    counts: dict[int, int] = {}
    for k in sizes:
        counts[k] = counts.get(k, 0) + 1
    return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items(), reverse=True))


def format_plan(plan: RunPlan) -> str:
    """The plan as the terminal shows it: one row per configuration, totals, the estimate, the checks."""
    scale = f" at --scale {plan.scale}" if plan.scale else ""
    lines = [f"dry run of {plan.source or plan.experiment}{scale}: experiment '{plan.experiment}', nothing is trained"]
    lines.append(f"backend {plan.backend}: {plan.slots or '?'} slot(s) ({plan.slot_text})")
    header = ["task", "recipe", "runs", "init", "order", "sample", "stored", "failed", "reuse", "to run", "engine",
              "attempts (n x size)", "s/run (timed)"]  # fmt: skip
    body = []
    for c in plan.configs:
        timed = f"{c.run_s:.1f} ({c.timed})" if c.timed else "no estimate"
        body.append([c.task, c.recipe, str(c.runs), *map(str, c.seeds), str(c.stored), str(c.failed), str(c.reused),
                     str(c.todo), c.engine, _attempts_text(c.attempts), timed])  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    left = {0, 1, 10, 11}
    for row in [header, ["-" * w for w in widths], *body]:
        cells = (v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        lines.append("  ".join(cells).rstrip())
    total = {f: sum(getattr(c, f) for c in plan.configs) for f in ("runs", "stored", "failed", "reused", "todo")}
    n_attempts = sum(len(c.attempts) for c in plan.configs)
    lines.append(
        f"total: {total['runs']} run(s); {total['stored']} stored, {total['failed']} stored as failed, "
        f"{total['reused']} reused from other experiments; {total['todo']} to run in {n_attempts} attempt(s)"
    )
    for c in plan.configs:
        if c.fallback:
            lines.append(f"{c.task}/{c.recipe}: one run per worker: {c.fallback} is not vectorised")
    lines += plan.notes
    untimed = [f"{c.task}/{c.recipe}" for c in plan.configs if c.todo and not c.timed]
    if not total["todo"]:
        lines.append("estimated wall time: 0 (nothing to run)")
    elif untimed:
        lines.append(f"estimated wall time: no estimate (no stored run of {len(untimed)} of these configurations)")
    elif not plan.slots:
        lines.append(f"estimated wall time: no estimate ({plan.slot_text}; give --workers)")
    else:
        lines.append(
            f"estimated wall time: {format_seconds(plan.eta_s)} (runs to do x mean s/run of the stored runs of "
            f"the same configuration / {plan.slots} slot(s))"
        )
    lines.append("checks:")
    lines += [f"  {name}: {found}" for name, found in plan.checks]
    lines += [f"  FAILED: {problem}" for problem in plan.problems]
    lines.append("would run" if not plan.problems else "would NOT run")
    return "\n".join(lines)
