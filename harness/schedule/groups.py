"""Seed groups: runs of one configuration trained K at a time in one worker (`[schedule] seeds_per_worker`).

`plan_groups` is the one place that decides the groups (the dry-run shows exactly what it returns):
balanced sizes, at least one group per slot, at most K runs and at most what fits a slot's GPU memory.
The core submits a GroupAttempt to one slot and keeps one live entry per member, so each run is
stored, early-stopped and counted as its own. A group is retried once all its members have reported:
the members that crashed go again together, in two halves after an out-of-memory error (K halved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.experiment.engines import group_key
from harness.experiment.spec import RunSpec, SchedulePolicy
from harness.schedule.backend import Attempt, Crashed, GroupAttempt
from harness.schedule.memory import max_seeds_for, specs_memory


def plan_groups(
    specs: Sequence[RunSpec], seeds_per_worker: int, slots: int = 1, memory_per_slot: int | None = None
) -> list[tuple[RunSpec, ...]]:
    """The seed groups `run_experiment` trains for `specs`, in launch order (runs of the loop engine are in none).

    Runs are grouped by configuration (`group_key`: never two configurations in a group). Each group holds at
    most `seeds_per_worker` runs, and at most as many as fit `memory_per_slot` bytes by the estimate of
    harness/schedule/memory.py (None: no limit). There are at least as many groups as `slots` (while there
    are runs to split), rounded up to whole waves of `slots` groups; the extra groups go to the configurations
    with the largest groups, and each configuration's runs are cut into groups whose sizes differ by at most
    one. Largest groups launch first. 150 runs of one configuration with K = 64 on 8 slots: 8 groups of 18-19.
    """
    by_config: dict[str, list[RunSpec]] = {}
    for spec in specs:
        if spec.engine == "vectorised":
            by_config.setdefault(group_key(spec), []).append(spec)
    k = max(1, seeds_per_worker)
    caps = {key: min(k, max_seeds_for(runs[0], memory_per_slot) or k) for key, runs in by_config.items()}
    counts = group_counts({key: len(runs) for key, runs in by_config.items()}, caps, slots)
    planned = [part for key, runs in by_config.items() for part in even_chunks(runs, counts[key])]
    return sorted(planned, key=len, reverse=True)  # stable: groups of equal size keep the configurations' order


def group_counts(sizes: Mapping[str, int], caps: Mapping[str, int], slots: int) -> dict[str, int]:
    """Groups per configuration: at least ceil(n / cap) each, in all a whole number of waves of `slots`
    (at most one group per run), each extra group given to the configuration whose groups are largest."""
    counts = {key: math.ceil(n / max(1, caps[key])) for key, n in sizes.items() if n > 0}
    slots = max(1, slots)
    waves = max(1, math.ceil(sum(counts.values()) / slots))
    target = min(waves * slots, sum(sizes[key] for key in counts))
    order = {key: i for i, key in enumerate(counts)}

    def largest_group(key: str) -> tuple[int, int]:
        return math.ceil(sizes[key] / counts[key]), -order[key]

    while sum(counts.values()) < target:
        counts[max((c for c in counts if counts[c] < sizes[c]), key=largest_group)] += 1
    return counts


def even_chunks(runs: Sequence[RunSpec], parts: int) -> list[tuple[RunSpec, ...]]:
    """`runs` in order, cut into `parts` consecutive chunks whose sizes differ by at most one (larger first)."""
    size, extra = divmod(len(runs), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(tuple(runs[start:end]))
        start = end
    return out


def describe_groups(planned: Sequence[tuple[RunSpec, ...]], slots: int, memory_per_slot: int | None) -> str:
    """One line for the events: how many groups of which sizes, and the memory limit when there is one."""
    if not planned:
        return ""
    sizes = sorted(len(g) for g in planned)
    configs = len({group_key(g[0]) for g in planned})
    line = (
        f"seed groups: {sum(sizes)} run(s) of {configs} configuration(s) in {len(sizes)} group(s) of "
        f"{sizes[0]}{'' if sizes[0] == sizes[-1] else f'-{sizes[-1]}'} run(s) for {slots} slot(s)"
    )
    if memory_per_slot is not None and (estimate := specs_memory(max(planned, key=len))) is not None:
        line += (
            f"; memory: the largest group needs ~{estimate.total / 2**30:.1f} GiB (estimate), "
            f"{memory_per_slot / 2**30:.1f} GiB per slot"
        )
    return line


def plan_attempts(
    todo: list[RunSpec],
    seeds_per_worker: int,
    rung_at: float | None,
    slots: int = 1,
    memory_per_slot: int | None = None,
) -> list[Attempt | GroupAttempt]:
    """First attempts: the seed groups of `plan_groups`, then the runs of the loop engine one by one."""
    grouped: list[Attempt | GroupAttempt] = [
        GroupAttempt(group, 1, rung_at) for group in plan_groups(todo, seeds_per_worker, slots, memory_per_slot)
    ]
    return grouped + [Attempt(spec, 1, None, rung_at) for spec in todo if spec.engine != "vectorised"]


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
