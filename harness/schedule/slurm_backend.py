"""SLURM backend (optional extra `harness[slurm]`): each attempt or seed group a submitit job, or an array
per configuration.

Jobs run `_SlurmTask`, a submitit Checkpointable: on preemption (or a timeout, up to
`max_requeues`) submitit requeues the job and the attempt starts again from the beginning.
Workers and driver share the results folder (as on any cluster with a shared filesystem):
a worker appends its Started / Evaluated messages as JSON lines to
`<exp>/slurm/messages/<key>.jsonl` and waits at an early-stop rung for
`<exp>/slurm/answers/<key>`; the final Finished / Crashed message is the job's result
(submitit's result pickle). A job that dies without a result (kill -9, node failure,
OOM kill) becomes a `Crashed` message, so retries stay in core.py like every backend.
A seed group is one job: its members' messages share the group's file under their own
keys, each member's rung answer is its own file, and the job's result is the list of the
members' final messages (a dead group job: a `Crashed` per member).

Resume: each submitted job is recorded in `<exp>/slurm/jobs/<run_id>.json`. A driver that
starts again after its predecessor died collects the result of a job that finished in the
meantime, and re-attaches to a SLURM job still pending or running, instead of training the
run again. Members of a seed group are taken from their old group job's result when it
finished; a group job still running is cancelled and its members train again in the new
driver's groups (which may be cut differently). `cluster = "local"` runs the same code path
on this machine through submitit's LocalExecutor (a workstation, and the tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.experiment.spec import SlurmPolicy
from harness.schedule.backend import Attempt, Backend, Crashed, Evaluated, Finished, GroupAttempt, Message, Started
from harness.schedule.worker import GROUP_FN, run_attempt, run_group_attempt, thread_env
from harness.storage.records import EvalPoint
from harness.storage.safe_files import open_no_follow, real_folder, replace_file

try:
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # the optional extra is not installed
    submitit = None
    Checkpointable = object

LIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


class _SlurmTask(Checkpointable):  # type: ignore[misc,valid-type]
    """One attempt or seed group inside a job; requeued from the start on preemption (checkpoint = resubmit)."""

    def __call__(
        self,
        attempt: Attempt | GroupAttempt,
        train_fn: str,
        ctx_fields: dict[str, Any],
        channel: str,
        group_fn: str = GROUP_FN,
    ) -> Message | list[Message]:
        os.environ.update(thread_env(ctx_fields.get("threads")))
        folder = Path(channel)
        out = folder / "messages" / f"{_safe(attempt.key)}.jsonl"
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        device = "cuda:0" if gpus and not gpus.startswith("-") and ctx_fields.get("gpus") else "cpu"
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or "?"
        asked: list[str] = []  # member keys waiting at the rung (a seed group)

        def send(message: Message) -> None:
            if isinstance(message, Evaluated) and message.at_rung:
                asked.append(message.key)
            fd = open_no_follow(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            with os.fdopen(fd, "a") as handle:
                handle.write(json.dumps(_encode(message)) + "\n")

        def answer_of(key: str) -> bool | None:
            path = folder / "answers" / _safe(key)
            return path.read_text().strip() == "1" if path.exists() else None

        def ask() -> bool:
            while (keep := answer_of(attempt.key)) is None:
                time.sleep(0.1)
            return keep

        def ask_member() -> tuple[str, bool]:
            while True:
                for key in list(asked):
                    if (keep := answer_of(key)) is not None:
                        asked.remove(key)
                        return key, keep
                time.sleep(0.1)

        where = f"{device} (job {job}, pid {os.getpid()}, {os.uname().nodename})"
        fields = {**{k: v for k, v in ctx_fields.items() if k != "gpus"}, "device": device}
        if isinstance(attempt, GroupAttempt):
            for spec in attempt.specs:
                send(Started(attempt.member_key(spec.run_id), where))
            return run_group_attempt(attempt, group_fn, fields, send, ask_member)
        send(Started(attempt.key, where))
        return run_attempt(attempt, train_fn, fields, send, ask)


def _finished_member(job: Any, run_id: str) -> Finished | None:
    """`run_id`'s Finished message in a finished group job's result (None: not finished, or not there)."""
    if not job.paths.result_pickle.exists():
        return None
    try:
        result = job.result()
    except Exception:  # a failed earlier job: its runs train again
        return None
    found = [m for m in (result if isinstance(result, list) else [result]) if isinstance(m, Finished)]
    return next((m for m in found if m.key.partition("#")[0] == run_id), None)


def _safe(key: str) -> str:
    return key.replace("#", "-").replace("/", "_")


def _encode(message: Message) -> dict[str, Any]:
    if isinstance(message, Started):
        return {"kind": "started", "key": message.key, "device": message.device}
    if isinstance(message, Evaluated):
        return {"kind": "eval", "key": message.key, "point": dataclasses.asdict(message.point), "rung": message.at_rung}
    raise TypeError(f"only Started and Evaluated travel through the channel, not {type(message).__name__}")


def _decode(data: dict[str, Any]) -> Message:
    if data["kind"] == "started":
        return Started(data["key"], data["device"])
    return Evaluated(data["key"], EvalPoint(**data["point"]), bool(data["rung"]))


def slurm_parameters(policy: SlurmPolicy, threads: int) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (sbatch options) from [schedule.slurm]."""
    params: dict[str, Any] = {
        "time": policy.time_min,
        "cpus_per_task": max(policy.cpus_per_run, threads),
        "gpus_per_node": policy.gpus_per_run or None,
        "partition": policy.partition,
        "account": policy.account,
        "qos": policy.qos,
        "constraint": policy.constraint,
        "mem": f"{policy.mem_gb:g}GB" if policy.mem_gb else None,
        "job_name": "harness",
        "array_parallelism": policy.max_jobs,
    }
    return {k: v for k, v in params.items() if v is not None}


@dataclasses.dataclass
class _Live:
    attempt: Attempt | GroupAttempt
    job: Any  # submitit Job
    offset: int = 0


def _member_keys(attempt: Attempt | GroupAttempt) -> list[str]:
    """The attempt keys its messages carry: its own, or each member's of a group."""
    if isinstance(attempt, GroupAttempt):
        return [attempt.member_key(s.run_id) for s in attempt.specs]
    return [attempt.key]


def _config_of(attempt: Attempt | GroupAttempt) -> str:
    return (attempt.specs[0] if isinstance(attempt, GroupAttempt) else attempt.spec).config_key


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(
        self,
        train_fn: str,
        ctx_fields: dict[str, Any],
        *,
        folder: str | Path,
        policy: SlurmPolicy,
        threads_per_run: int = 1,
        max_workers: int | None = None,
        group_fn: str = GROUP_FN,
    ):
        if submitit is None:
            from harness.schedule.backend import ScheduleError

            raise ScheduleError("backend 'slurm' needs submitit: pip install 'harness[slurm]' (or --backend local)")
        self.train_fn = train_fn
        self.group_fn = group_fn
        self.policy = policy
        for sub in ("messages", "answers", "jobs", "logs"):  # inside a results folder: real folders, never links
            real_folder(Path(folder).parent, Path(folder).name, sub)
        self.folder = Path(folder).resolve()
        self.ctx_fields = {**ctx_fields, "threads": threads_per_run, "gpus": policy.gpus_per_run}
        self.executor = self._executor(policy, threads_per_run)
        self._slots = min(policy.max_jobs, max_workers) if max_workers else policy.max_jobs
        self._pending: list[Attempt] = []
        self._live: dict[str, _Live] = {}
        self._ready: list[Message] = []
        self._rekey: dict[str, str] = {}  # attempt key -> the key a re-attached job reports under

    def _executor(self, policy: SlurmPolicy, threads: int) -> Any:
        logs = self.folder / "logs"
        if policy.cluster == "local":
            executor = submitit.LocalExecutor(folder=logs, max_num_timeout=policy.max_requeues)
            executor.update_parameters(timeout_min=policy.time_min, gpus_per_node=policy.gpus_per_run)
            return executor
        try:
            executor = submitit.SlurmExecutor(folder=logs, max_num_timeout=policy.max_requeues)
        except RuntimeError as exc:  # no srun/sbatch on this machine
            from harness.schedule.backend import ScheduleError

            raise ScheduleError(
                f"backend 'slurm': {exc}; run the driver on a SLURM login node, or set "
                '[schedule.slurm] cluster = "local" to run the jobs on this machine'
            ) from None
        executor.update_parameters(**slurm_parameters(policy, threads))
        return executor

    @property
    def slots(self) -> int:
        return self._slots

    def describe(self) -> str:
        where = "submitit local executor" if self.policy.cluster == "local" else f"slurm {self.policy.partition or ''}"
        shape = "an array per configuration" if self.policy.array else "one job per run"
        return f"{where.strip()}: {self.slots} job(s) at once, {shape}, {self.policy.gpus_per_run} GPU(s) per run"

    def submit(self, attempt: Attempt) -> None:
        if isinstance(attempt, GroupAttempt):
            rest = self._reattach_group(attempt)
            if rest is not None:
                self._pending.append(rest)
        elif not self._reattach(attempt):
            self._pending.append(attempt)

    def _flush(self) -> None:
        """Submit the attempts queued since the last poll: one job each, or one array per configuration."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        groups: dict[str, list[Attempt | GroupAttempt]] = defaultdict(list)
        for attempt in pending:
            groups[_config_of(attempt) if self.policy.array else attempt.key].append(attempt)
        for group in groups.values():
            jobs = []
            if self.policy.array and len(group) > 1:
                with self.executor.batch():
                    for attempt in group:
                        jobs.append(self.executor.submit(_SlurmTask(), *self._args(attempt)))
            else:
                jobs = [self.executor.submit(_SlurmTask(), *self._args(attempt)) for attempt in group]
            for attempt, job in zip(group, jobs, strict=True):
                self._live[attempt.key] = _Live(attempt, job)
                record = {"key": attempt.key, "job_id": str(job.job_id), "cluster": self.policy.cluster}
                specs = attempt.specs if isinstance(attempt, GroupAttempt) else [attempt.spec]
                for spec in specs:
                    replace_file(self.folder / "jobs" / f"{spec.run_id}.json", json.dumps(record))

    def _args(self, attempt: Attempt | GroupAttempt) -> tuple[Any, ...]:
        (self.folder / "messages" / f"{_safe(attempt.key)}.jsonl").unlink(missing_ok=True)
        for key in _member_keys(attempt):
            (self.folder / "answers" / _safe(key)).unlink(missing_ok=True)
        return attempt, self.train_fn, self.ctx_fields, str(self.folder), self.group_fn

    def _old_job(self, run_id: str) -> tuple[dict[str, Any], Any] | None:
        """The job record of `run_id` written by an earlier driver, and its submitit job."""
        try:
            record = json.loads((self.folder / "jobs" / f"{run_id}.json").read_text())
        except (OSError, ValueError):
            return None
        job_class = submitit.LocalJob if record.get("cluster") == "local" else submitit.SlurmJob
        return record, job_class(folder=self.folder / "logs", job_id=record["job_id"])

    def _reattach_group(self, group: GroupAttempt) -> GroupAttempt | None:
        """Take the members an earlier driver's group job finished; the group of the others to submit (or None)."""
        rest = []
        for spec in group.specs:
            old = self._old_job(spec.run_id)
            finished = None
            if old is not None:
                record, job = old
                finished = _finished_member(job, spec.run_id)
                if finished is None and record.get("cluster") != "local" and job.state in LIVE_STATES:
                    job.cancel(check=False)  # its group is cut anew below: never two jobs training one run
            if finished is None:
                rest.append(spec)
            else:
                self._ready.append(Finished(group.member_key(spec.run_id), finished.result))
        return dataclasses.replace(group, specs=tuple(rest)) if rest else None

    def _reattach(self, attempt: Attempt) -> bool:
        """A job of this run submitted by an earlier driver: take its result, or follow it while it runs."""
        old = self._old_job(attempt.run_id)
        if old is None:
            return False
        record, job = old
        if record["key"].startswith("group-"):  # an earlier driver trained it in a seed group
            finished = _finished_member(job, attempt.run_id)
            if finished is not None:
                self._ready.append(Finished(attempt.key, finished.result))
            return finished is not None
        if job.paths.result_pickle.exists():
            try:
                value = job.result()
            except Exception:  # a failed earlier job: run the attempt again
                return False
            if isinstance(value, Finished):
                self._ready.append(Finished(attempt.key, value.result))
                return True
            return False
        if record.get("cluster") != "local" and job.state in LIVE_STATES:
            self._live[attempt.key] = _Live(attempt, job)  # its messages keep the old key's file
            self._rekey[attempt.key] = record["key"]
            return True
        return False

    def messages(self, timeout: float) -> list[Message]:
        self._flush()
        deadline = time.monotonic() + timeout
        while True:
            out, self._ready = self._ready, []
            for key, live in list(self._live.items()):
                out.extend(self._read_channel(key, live))
                if live.job.done():
                    out.extend(self._read_channel(key, live))
                    del self._live[key]
                    out.extend(self._final(key, live))
            if out or time.monotonic() >= deadline or not self._live:
                return out
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _read_channel(self, key: str, live: _Live) -> list[Message]:
        path = self.folder / "messages" / f"{_safe(self._rekey.get(key, key))}.jsonl"
        try:
            with open(path, "rb") as handle:
                handle.seek(live.offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        live.offset += end
        group = isinstance(live.attempt, GroupAttempt)  # members' messages keep their own keys
        messages = [_decode(json.loads(line)) for line in data[:end].splitlines()]
        return messages if group else [dataclasses.replace(m, key=key) for m in messages]

    def _final(self, key: str, live: _Live) -> list[Message]:
        """The job's result: one message, or a group's list; Crashed for every member without one."""
        members = _member_keys(live.attempt)
        try:
            result = live.job.result()
        except Exception as exc:  # no result: the job was killed, timed out too often, or its node died
            text = f"{type(exc).__name__}: job {live.job.job_id}: {exc}"
            oom = "out of memory" in text.lower() or "oom" in text.lower()
            return [Crashed(m, text[-4000:], oom=oom) for m in members]
        if isinstance(live.attempt, GroupAttempt) and isinstance(result, list):
            return result
        if isinstance(result, Finished | Crashed):
            return [dataclasses.replace(result, key=key)]
        text = f"job {live.job.job_id} returned {type(result).__name__}, not a result message"
        return [Crashed(m, text) for m in members]

    def answer(self, key: str, keep: bool) -> None:
        replace_file(self.folder / "answers" / _safe(self._rekey.get(key, key)), "1" if keep else "0")

    def cancel(self, key: str) -> None:
        """Cancel a job (a group member's key cancels its whole group)."""
        key = next((k for k, live in self._live.items() if key in _member_keys(live.attempt)), key)
        live = self._live.pop(key, None)
        if live is not None:
            try:
                live.job.cancel(check=False)
            except Exception:  # already gone
                traceback.print_exc(limit=0)

    def close(self) -> None:
        self._pending = []
        for key in list(self._live):
            self.cancel(key)
