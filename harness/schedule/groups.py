"""Seed groups: runs of one configuration trained K at a time in one worker (`[schedule] seeds_per_worker`).

The core submits a GroupAttempt to one slot and keeps one live entry per member, so each run is
stored, early-stopped and counted as its own. A group is retried once all its members have reported:
the members that crashed go again together, in two halves after an out-of-memory error (K halved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.experiment.engines import group_key
from harness.experiment.spec import ExperimentSpec, RunSpec, SchedulePolicy
from harness.schedule.backend import Attempt, Crashed, GroupAttempt

GROUP_FN = "harness.training.vectorised.engine:train_group"
GROUP_BACKENDS = ("local",)


def plan_attempts(todo: list[RunSpec], seeds_per_worker: int, rung_at: float | None) -> list[Attempt | GroupAttempt]:
    """First attempts: vectorised runs in groups of at most K per configuration, the others one by one."""
    by_config: dict[str, list[RunSpec]] = {}
    singles: list[Attempt | GroupAttempt] = []
    for spec in todo:
        if spec.engine == "vectorised":
            by_config.setdefault(group_key(spec), []).append(spec)
        else:
            singles.append(Attempt(spec, 1, None, rung_at))
    k = max(1, seeds_per_worker)
    grouped: list[Attempt | GroupAttempt] = [
        GroupAttempt(tuple(specs[i : i + k]), 1, rung_at)
        for specs in by_config.values()
        for i in range(0, len(specs), k)
    ]
    return grouped + singles


def backend_problem(experiment: ExperimentSpec, backend: str) -> str:
    """Why `backend` cannot run this experiment's seed groups ("" when it can)."""
    if backend in GROUP_BACKENDS or all(s.engine != "vectorised" for s in experiment.runs):
        return ""
    return (
        f"experiment '{experiment.name}' trains seed groups (seeds_per_worker = "
        f"{experiment.schedule.seeds_per_worker}), which backend {backend!r} does not run yet; "
        f"use backend 'local' or set seeds_per_worker = 1"
    )


def fallback_note(spec: RunSpec, notes: Any) -> str:
    """The run's notes, plus why it trained alone when the experiment asked for seed groups (set by the parser)."""
    text = notes if isinstance(notes, str) else ""
    if not spec.engine_note or spec.engine_note in text:
        return text
    return f"{text}; {spec.engine_note}" if text else spec.engine_note


class GroupBook:
    """Which members of each live group have not reported, and the crashes collected until they all have."""

    def __init__(self) -> None:
        self.pending: dict[str, set[str]] = {}
        self.crashes: dict[str, list[tuple[Any, Crashed]]] = {}
        self.failed: dict[str, list[tuple[Any, Crashed]]] = {}

    @staticmethod
    def busy(live: Mapping[str, Any]) -> int:
        """Slots in use: a group counts once, whatever its size."""
        return len({entry.group.key if entry.group is not None else key for key, entry in live.items()})

    def submitted(self, group: GroupAttempt) -> tuple[Attempt, ...]:
        self.pending[group.key] = {s.run_id for s in group.specs}
        return group.members

    def member_done(self, group: GroupAttempt, run_id: str) -> None:
        self.pending.get(group.key, set()).discard(run_id)

    def member_crashed(
        self, group: GroupAttempt, live: Any, message: Crashed, policy: SchedulePolicy
    ) -> list[tuple[GroupAttempt, str]]:
        """Record a member's crash; once no member is pending, the retries to queue (with an event note each)."""
        self.crashes.setdefault(group.key, []).append((live, message))
        pending = self.pending.get(group.key, set())
        pending.discard(live.attempt.spec.run_id)
        if pending:
            return []
        self.pending.pop(group.key, None)
        crashed = self.crashes.pop(group.key, [])
        if group.number > policy.max_retries:
            self.failed[group.key] = crashed
            return []
        specs = tuple(entry.attempt.spec for entry, _ in crashed)
        oom = any(m.oom for _, m in crashed)
        half = math.ceil(len(specs) / 2)
        parts = [specs[:half], specs[half:]] if oom and len(specs) > 1 else [specs]
        last_line = (crashed[0][1].error.strip().splitlines() or ["?"])[0][:300]
        how = f" in groups of {half} (out of memory: K halved)" if len(parts) > 1 else ""
        note = (
            f"group of {len(group.specs)} attempt {group.number} failed: {last_line}; retrying {len(specs)} run(s) "
            f"as attempt {group.number + 1}/{policy.max_retries + 1}{how}"
        )
        return [(GroupAttempt(part, group.number + 1, group.rung_at), note) for part in parts]

    def take_failed(self, group: GroupAttempt) -> list[tuple[Any, Crashed]]:
        return self.failed.pop(group.key, [])
