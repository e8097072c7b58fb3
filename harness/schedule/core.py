"""The shared core: what to run, retries and failures, early-stop rungs, the store. Backend-agnostic.

The driver is the only writer of the store: workers send results back and
the driver writes each finished run atomically (harness.storage.store.write_run), so
killing the driver at any moment loses only runs still in flight, and a
restart runs exactly the run ids not yet stored.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.experiment.spec import BACKENDS, ExperimentSpec, RunSpec
from harness.schedule import groups
from harness.schedule.backend import (
    Attempt,
    Backend,
    Crashed,
    Evaluated,
    Finished,
    GroupAttempt,
    Message,
    ScheduleError,
    Started,
)
from harness.schedule.early_stop import Decision, RungTracker, compute_saved, rung_score_of_curve
from harness.schedule.lock import ExperimentLock
from harness.schedule.progress import Progress
from harness.schedule.worker import GROUP_FN
from harness.storage.records import RunResult, base_row, failed_row
from harness.storage.store import (
    StoreError,
    copy_run,
    experiment_dir,
    load_curves,
    load_runs,
    part_stats,
    stored_run_ids,
    write_events,
    write_predictions,
    write_run,
)


@dataclass(frozen=True)
class RunSummary:
    """What one `run_experiment` call did."""

    experiment: str
    backend: str
    slots: int
    total: int  # distinct runs in the experiment
    skipped: int  # already stored before this call
    reused: int = 0  # copied from an identical run stored by another experiment
    done: int = 0
    diverged: int = 0
    stopped: int = 0
    failed: int = 0
    retries: int = 0
    wall_time_s: float = 0.0
    compute_saved_runs: float = 0.0  # run-equivalents of training not done thanks to early stopping
    compute_saved_s: float = 0.0  # the same in estimated seconds of slot time

    @property
    def finished(self) -> int:
        return self.done + self.diverged + self.stopped + self.failed

    def __str__(self) -> str:
        return (
            f"{self.experiment}: {self.finished} run(s) in {self.wall_time_s:.1f} s on {self.backend} "
            f"({self.slots} slot(s)): {self.done} done, {self.diverged} diverged, {self.stopped} stopped, "
            f"{self.failed} failed, {self.retries} retr(ies); {self.skipped} already stored, "
            f"{self.reused} reused from other experiments; "
            f"early stopping saved {self.compute_saved_runs:.2f} run(s) (~{self.compute_saved_s:.0f} s)"
        )


def check_train_fn(path: str) -> None:
    """Fail in the driver, before any worker starts, if the train function's module cannot be found."""
    module, sep, attr = path.partition(":")
    try:
        found = bool(sep and attr and importlib.util.find_spec(module))
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ScheduleError(f"train function {path!r} not found; give 'package.module:function' importable here")


def make_backend(
    name: str,
    experiment: ExperimentSpec,
    train_fn: str,
    ctx_fields: dict[str, Any],
    max_workers: int | None,
    ray_address: str | None,
    group_fn: str = GROUP_FN,
) -> Backend:
    policy = experiment.schedule
    if name == "local":
        from harness.schedule.local import LocalBackend

        return LocalBackend(
            train_fn,
            ctx_fields,
            runs_per_gpu=policy.runs_per_gpu,
            threads_per_run=policy.threads_per_run,
            max_workers=max_workers,
            group_fn=group_fn,
        )
    if name == "ray":
        from harness.schedule.ray_backend import RayBackend

        return RayBackend(
            train_fn,
            ctx_fields,
            address=ray_address,  # the command line or $RAY_ADDRESS only, never the experiment file
            runs_per_gpu=policy.runs_per_gpu,
            threads_per_run=policy.threads_per_run,
            max_workers=max_workers,
            group_fn=group_fn,
        )
    if name == "slurm":
        from harness.schedule.slurm_backend import SlurmBackend

        return SlurmBackend(
            train_fn,
            ctx_fields,
            folder=Path(ctx_fields["cache_dir"]).parent / experiment.name / "slurm",
            policy=policy.slurm,
            threads_per_run=policy.threads_per_run,
            max_workers=max_workers,
            group_fn=group_fn,
        )
    raise ScheduleError(f"backend {name!r} is unknown; allowed: {', '.join(BACKENDS)}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a job scheduler) stops the driver as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_experiment(
    experiment: ExperimentSpec,
    results_root: str | Path = "results",
    *,
    backend: str | None = None,
    train_fn: str = "harness.training.pipeline:train_run",
    data_dir: str | None = None,
    max_workers: int | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    on_locked: Callable[[], None] | None = None,
    retry_failed: bool = False,
    group_fn: str = GROUP_FN,
) -> RunSummary:
    """Run every run of `experiment` not yet stored under results_root/<name>; resumable, one driver at a time.

    retry_failed: also run again the runs stored as `failed` (their new record replaces the old one).

    Ctrl-C (or SIGTERM) terminates the running workers and re-raises KeyboardInterrupt; every run
    finished before it is stored, nothing is half-written. `on_locked` runs once the lock is held (e.g. to
    copy the experiment file beside its results: only the driver that runs may replace it).
    """
    name = backend or experiment.schedule.backend
    if name not in BACKENDS:
        raise ScheduleError(f"backend {name!r} is unknown; allowed: {', '.join(BACKENDS)}")
    check_train_fn(train_fn)
    exp_dir = experiment_dir(results_root, experiment.name)
    started = time.monotonic()
    with ExperimentLock(exp_dir), _sigterm_as_interrupt():
        if on_locked is not None:
            on_locked()
        specs = list({s.run_id: s for s in experiment.runs}.values())
        stored = stored_run_ids(exp_dir)
        if retry_failed:
            stored -= failed_run_ids(exp_dir)
        skipped = sum(s.run_id in stored for s in specs)
        reused = reuse_identical_runs(Path(results_root), exp_dir, [s for s in specs if s.run_id not in stored])
        stored |= reused
        todo = [s for s in specs if s.run_id not in stored]
        summary = RunSummary(experiment.name, name, 0, total=len(specs), skipped=skipped, reused=len(reused))
        if not todo:
            return dataclasses.replace(summary, wall_time_s=time.monotonic() - started)
        tracker = _tracker(experiment, exp_dir, specs, stored, todo)
        ctx_fields = {
            "data_dir": data_dir or experiment.data_dir,
            "threads": experiment.schedule.threads_per_run,
            "cache_dir": str(Path(results_root) / ".cache"),
            "progress": False,
            "deterministic": experiment.schedule.deterministic,
        }
        with make_backend(name, experiment, train_fn, ctx_fields, max_workers, ray_address, group_fn) as be:
            driver = _Driver(experiment, exp_dir, be, tracker, summary, progress)
            summary = driver.run(todo)
    return dataclasses.replace(summary, wall_time_s=time.monotonic() - started)


def failed_run_ids(exp_dir: Path) -> set[str]:
    """Ids of the runs stored as `failed` (what --retry-failed runs again)."""
    runs = load_runs(exp_dir)
    return set(runs.loc[runs["status"] == "failed", "run_id"])


def reusable_runs(results_root: Path, exp_dir: Path, run_ids: Collection[str]) -> dict[str, Path]:
    """Which of `run_ids` another experiment under the same root stored as `done` or `diverged` with its curve, and
    where (the first such folder by name). Reads only those parts' status and moves nothing: `harness run
    --dry-run` counts these, reuse_identical_runs copies them."""
    wanted = set(run_ids)
    found: dict[str, Path] = {}
    if not wanted or not results_root.is_dir():
        return found
    for other in sorted(p for p in results_root.iterdir() if p.is_dir() and p.resolve() != exp_dir.resolve()):
        for name in sorted(part_stats(other, "runs")):
            run_id = name[: -len(".parquet")]
            if run_id not in wanted or run_id in found or not (other / "curves" / name).is_file():
                continue
            if _status_of(other / "runs" / name) in REUSED_STATUSES:
                found[run_id] = other
    return found


REUSED_STATUSES = ("done", "diverged")


def _status_of(part: Path) -> str | None:
    try:
        status = pq.read_table(part, columns=["status"]).column("status").to_pylist()
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None
    return str(status[0]) if len(status) == 1 else None


def reuse_identical_runs(results_root: Path, exp_dir: Path, specs: list[RunSpec]) -> set[str]:
    """Copy runs that another experiment under the same root already finished with the identical spec.

    A run_id hashes everything that shapes the result (not the experiment's name), so a `done` or
    `diverged` run is the same result wherever it was stored. Early-stopped runs are not reused: their
    fate depended on the other seeds of their own experiment.
    """
    wanted = {s.run_id: s for s in specs}
    reused: set[str] = set()
    for run_id, other in reusable_runs(results_root, exp_dir, wanted).items():
        identity = {k: v for k, v in base_row(wanted[run_id]).items() if k != "finished_at"}
        if copy_run(other, exp_dir, run_id, identity, statuses=REUSED_STATUSES):
            reused.add(run_id)
    if reused:
        write_events(exp_dir, [{"run_id": r, "kind": "reused", "message": "identical run from another experiment"}
                               for r in sorted(reused)])  # fmt: skip
    return reused


def _tracker(
    experiment: ExperimentSpec, exp_dir: Path, specs: list[RunSpec], stored: set[str], todo: list[RunSpec]
) -> RungTracker | None:
    policy = experiment.schedule.early_stop
    if policy is None:
        return None
    tracker = RungTracker(policy.at, policy.keep)
    config_of = {s.run_id: s.config_key for s in specs}
    mine = stored & set(config_of)
    if mine:  # runs stored by earlier sessions count in the ranking
        curves = load_curves(exp_dir)
        curves = curves[curves["run_id"].isin(mine)]
        stored_runs = load_runs(exp_dir)
        stopped = set(stored_runs.loc[stored_runs["status"].astype(str) == "stopped", "run_id"].astype(str))
        for run_id, group in curves.groupby("run_id"):
            score = rung_score_of_curve(zip(group["fraction"], group["val_metric"], strict=True), policy.at)
            if score is not None:
                tracker.add_prior(config_of[run_id], run_id, score, kept=run_id not in stopped)
    tracker.expect((s.config_key, s.run_id) for s in todo)
    return tracker


@dataclass
class _Live:
    attempt: Attempt
    device: str = ""
    started: float = 0.0
    fraction: float = 0.0
    waiting: bool = False
    group: GroupAttempt | None = None  # trained in this seed group (one worker for all its members)


class _Driver:
    def __init__(
        self,
        experiment: ExperimentSpec,
        exp_dir: Path,
        backend: Backend,
        tracker: RungTracker | None,
        summary: RunSummary,
        progress: bool,
    ):
        self.experiment = experiment
        self.policy = experiment.schedule
        self.exp_dir = exp_dir
        self.backend = backend
        self.tracker = tracker
        self.counts = collections.Counter[str]()
        self.retries = 0
        self.saved_runs = 0.0
        self.saved_s = 0.0
        self.summary = dataclasses.replace(summary, slots=backend.slots)
        self.queue: collections.deque[Attempt] = collections.deque()
        self.live: dict[str, _Live] = {}
        self.events: list[dict[str, str]] = []
        self.groups = groups.GroupBook()
        self.progress = Progress(
            self.summary.total - self.summary.skipped - self.summary.reused, backend.describe(), enabled=progress
        )

    def run(self, todo: list[RunSpec]) -> RunSummary:
        rung_at = self.tracker.at if self.tracker else None
        slots, memory = self.backend.slots, self.backend.memory_per_slot
        attempts = groups.plan_attempts(todo, self.policy.seeds_per_worker, rung_at, slots, memory)
        self.queue.extend(attempts)
        self.event("", "start", f"{len(todo)} run(s) to do, {self.summary.skipped} stored; {self.backend.describe()}")
        planned = [a.specs for a in attempts if isinstance(a, GroupAttempt)]
        if planned:
            self.event("", "groups", groups.describe_groups(planned, slots, memory))
        try:
            while self.queue or self.live:
                while self.queue and self.groups.busy(self.live) < self.backend.slots:
                    attempt = self.queue.popleft()
                    self.backend.submit(attempt)
                    if isinstance(attempt, GroupAttempt):  # one slot, one live entry per member
                        for member in self.groups.submitted(attempt):
                            self.live[member.key] = _Live(member, started=time.monotonic(), group=attempt)
                    else:
                        self.live[attempt.key] = _Live(attempt, started=time.monotonic())
                for message in self.backend.messages(timeout=0.5):
                    self.handle(message)
                self.decide_rungs()
                self.flush()
                self.progress.update(self.counts, running=len(self.live))
        finally:
            self.flush()
            self.progress.close()
        return dataclasses.replace(
            self.summary,
            done=self.counts["done"],
            diverged=self.counts["diverged"],
            stopped=self.counts["stopped"],
            failed=self.counts["failed"],
            retries=self.retries,
            compute_saved_runs=self.saved_runs,
            compute_saved_s=self.saved_s,
        )

    # -- messages ----------------------------------------------------------

    def handle(self, message: Message) -> None:
        live = self.live.get(message.key)
        if live is None:  # a late eval of an attempt already ended
            return
        spec = live.attempt.spec
        if isinstance(message, Started):
            live.device = message.device
        elif isinstance(message, Evaluated):
            live.fraction = max(live.fraction, message.point.fraction)
            if message.at_rung:
                self.at_rung(live, message)
        elif isinstance(message, Finished):
            del self.live[message.key]
            self.finished(live, message)
        elif isinstance(message, Crashed):
            del self.live[message.key]
            if self.tracker and live.waiting:
                self.tracker.withdraw(spec.config_key, spec.run_id)
            self.crashed(live, message)

    def at_rung(self, live: _Live, message: Evaluated) -> None:
        spec = live.attempt.spec
        if self.tracker is None:
            self.backend.answer(message.key, True)
            return
        sticky = self.tracker.arrive(spec.config_key, spec.run_id, message.point.val_metric)
        if sticky is None:
            live.waiting = True
        else:
            self.backend.answer(message.key, sticky)

    def finished(self, live: _Live, message: Finished) -> None:
        attempt, spec = live.attempt, live.attempt.spec
        row = {**message.result.run, "run_id": spec.run_id, "attempts": attempt.number}
        row.setdefault("device", live.device)
        row["notes"] = groups.fallback_note(spec, row.get("notes"))
        if live.group is not None:
            self.groups.member_done(live.group, spec.run_id)
        row["experiment"] = row.get("experiment") or self.experiment.name
        try:
            if message.result.predictions:  # before the run part, like the curve
                write_predictions(self.exp_dir, spec.run_id, message.result.predictions)
            write_run(self.exp_dir, row, message.result.curve)
        except StoreError as exc:  # a malformed result is this attempt's failure
            self.crashed(live, Crashed(message.key, f"StoreError: {exc}"))
            return
        status = row["status"]
        self.counts[status] += 1
        if self.tracker and spec.run_id not in self.tracker.decided:
            self.tracker.leave(spec.config_key, spec.run_id)
        if status == "stopped":
            self.stopped(live, message.result, float(row.get("wall_time_s") or (time.monotonic() - live.started)))
        self.progress.note(f"{status}: {spec.config_key} seed {spec.init_seed}/{spec.order_seed}")

    def stopped(self, live: _Live, result: RunResult, elapsed: float) -> None:
        """Count what stopping this run saved: nothing for a group member its engine kept in the batch."""
        spec = live.attempt.spec
        fractions = [p.get("fraction", 0.0) for p in result.curve] or [live.fraction]
        f = min(max(max(fractions), 0.0), 1.0)
        saved = compute_saved(f, live.group is not None, result.dropped_at)
        used = 1 - saved
        saved_s = elapsed * saved / used if used > 0 else 0.0
        self.saved_runs += saved
        self.saved_s += saved_s
        how = ""
        if live.group is not None:
            how = (
                f"; dropped from its seed group's batch at {result.dropped_at:.2f}"
                if result.dropped_at is not None
                else "; its seed group kept computing it (frozen in the batch)"
            )
        self.event(
            spec.run_id,
            "early_stop",
            f"{spec.config_key} stopped at {f:.2f} of training{how}; saved {saved:.2f} run (~{saved_s:.1f} s)",
        )

    def crashed(self, live: _Live, message: Crashed) -> None:
        if live.group is not None:  # the group is retried (split in two on OOM) once all its members reported
            for retry, note in self.groups.member_crashed(live.group, live, message, self.policy):
                self.retries += 1
                self.queue.appendleft(retry)
                self.event("", "retry", note)
            for failed, error in self.groups.take_failed(live.group):
                self.fail(failed, error)
            return
        attempt, spec = live.attempt, live.attempt.spec
        last_line = (message.error.strip().splitlines() or ["?"])[0][:300]
        if attempt.number <= self.policy.max_retries:
            micro = attempt.micro_batch_size
            if message.oom and self.policy.oom_halve_batch:
                micro = max(1, (micro or spec.recipe.batch_size) // 2)
            retry = dataclasses.replace(attempt, number=attempt.number + 1, micro_batch_size=micro)
            self.queue.appendleft(retry)
            self.retries += 1
            how = f" with micro_batch_size={micro} (gradient accumulation)" if micro != attempt.micro_batch_size else ""
            self.event(
                spec.run_id,
                "retry",
                f"attempt {attempt.number} failed: {last_line}; retrying as attempt "
                f"{retry.number}/{self.policy.max_retries + 1}{how}",
            )
            return
        self.fail(live, message)

    def fail(self, live: _Live, message: Crashed) -> None:
        attempt, spec = live.attempt, live.attempt.spec
        last_line = (message.error.strip().splitlines() or ["?"])[0][:300]
        write_run(self.exp_dir, failed_row(spec, message.error, attempt.number, live.device), [])
        self.counts["failed"] += 1
        if self.tracker:
            self.tracker.leave(spec.config_key, spec.run_id)
        self.event(spec.run_id, "failed", f"failed after {attempt.number} attempt(s): {last_line}")
        self.progress.note(f"failed: {spec.config_key} seed {spec.init_seed}/{spec.order_seed}: {last_line}")

    # -- early stopping ----------------------------------------------------

    def decide_rungs(self) -> None:
        if self.tracker is None:
            return
        configs = self.tracker.ready()
        stuck = self.queue and len(self.live) >= self.backend.slots and all(x.waiting for x in self.live.values())
        if stuck:  # every slot waits at a rung while runs are queued: decide the cohort that is here
            configs = self.tracker.waiting_configs()
        for config_key in configs:
            decisions = self.tracker.resolve(config_key)
            self.apply(config_key, decisions, partial=bool(stuck))

    def apply(self, config_key: str, decisions: list[Decision], partial: bool) -> None:
        by_run = {d.run_id: d for d in decisions}
        for key, live in self.live.items():
            decision = by_run.get(live.attempt.run_id)
            if decision is not None and live.waiting:
                live.waiting = False
                self.backend.answer(key, decision.keep)
        if decisions:
            d0 = decisions[0]
            stopped = [f"{d.run_id}({d.score:.2f},#{d.rank})" for d in decisions if not d.keep]
            kept = [f"{d.run_id}({d.score:.2f},#{d.rank})" for d in decisions if d.keep]
            self.event(
                "",
                "rung",
                f"{config_key} rung at {self.tracker.at:g}{' (partial cohort)' if partial else ''}:"
                f" {d0.n} known score(s), keep best {d0.k}; stop {stopped}; keep {kept}",
            )

    # -- events ------------------------------------------------------------

    def event(self, run_id: str, kind: str, message: str) -> None:
        self.events.append({"run_id": run_id, "kind": kind, "message": message})

    def flush(self) -> None:
        if self.events:
            write_events(self.exp_dir, self.events)
            self.events = []
