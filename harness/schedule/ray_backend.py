"""Ray backend (optional extra `harness[ray]`): the same attempts as Ray tasks with fractional GPUs.

Each attempt, or seed group (one task trains all its members; each reports under its own attempt key),
is one Ray task (max_retries=0: retries belong to the core) asking for `threads_per_run` CPUs and
`1/runs_per_gpu` GPU; Ray pins it through CUDA_VISIBLE_DEVICES, so the run trains on "cuda:0". Eval points
and rung answers go through one small actor (`_Channel`). Results return to the driver, which writes the
store exactly as with the local backend. A dead worker shows as a Ray error on the task's result and becomes
a `Crashed` message (one per member of a group).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from harness.schedule.backend import (
    Attempt,
    Backend,
    Crashed,
    Evaluated,
    GroupAttempt,
    Message,
    ScheduleError,
    Started,
)
from harness.schedule.worker import GROUP_FN, is_oom, run_attempt, run_group_attempt, thread_env

try:
    import ray
except ImportError:  # the optional extra is not installed
    ray = None


class _Channel:
    """Worker -> driver messages and driver -> worker rung answers."""

    def __init__(self) -> None:
        self.inbox: list[Any] = []
        self.answers: dict[str, bool] = {}

    def put(self, message: Any) -> None:
        self.inbox.append(message)

    def drain(self) -> list[Any]:
        out, self.inbox = self.inbox, []
        return out

    def answer(self, key: str, keep: bool) -> None:
        self.answers[key] = keep

    def decision(self, key: str) -> bool | None:
        return self.answers.pop(key, None)

    def first_decision(self, keys: list[str]) -> tuple[str, bool] | None:
        """An answer for any of `keys` (a seed group waits for its members' answers in any order)."""
        for key in keys:
            if key in self.answers:
                return key, self.answers.pop(key)
        return None


def _ray_main(
    attempt: Attempt | GroupAttempt, train_fn: str, ctx_fields: dict[str, Any], channel: Any, group_fn: str = GROUP_FN
) -> Message | list[Message]:
    os.environ.update(thread_env(ctx_fields.get("threads")))
    device = "cuda:0" if ray.get_gpu_ids() else "cpu"
    ctx = {**ctx_fields, "device": device}
    if isinstance(attempt, GroupAttempt):
        return _ray_group(attempt, group_fn, ctx, channel)
    channel.put.remote(Started(attempt.key, device))

    def ask() -> bool:
        while True:
            answer = ray.get(channel.decision.remote(attempt.key))
            if answer is not None:
                return answer
            time.sleep(0.05)

    return run_attempt(attempt, train_fn, ctx, lambda m: channel.put.remote(m), ask)


def _ray_group(group: GroupAttempt, group_fn: str, ctx: dict[str, Any], channel: Any) -> list[Message]:
    """A seed group in one task: its members' messages through the channel, answers polled for those asked."""
    for spec in group.specs:
        channel.put.remote(Started(group.member_key(spec.run_id), ctx["device"]))
    asked: list[str] = []

    def send(message: Message) -> None:
        if isinstance(message, Evaluated) and message.at_rung:
            asked.append(message.key)
        channel.put.remote(message)

    def ask() -> tuple[str, bool]:
        while True:
            found = ray.get(channel.first_decision.remote(asked))
            if found is not None:
                asked.remove(found[0])
                return found
            time.sleep(0.05)

    return run_group_attempt(group, group_fn, ctx, send, ask)


def _local_pythonpath() -> str:
    """sys.path entries outside the interpreter (the repo, tests): what local Ray workers must import."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    paths = [os.getcwd(), *(p for p in sys.path if p and not p.startswith(prefixes) and os.path.isdir(p))]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(dict.fromkeys(paths))


class RayBackend(Backend):
    name = "ray"

    def __init__(
        self,
        train_fn: str,
        ctx_fields: dict[str, Any],
        *,
        address: str | None = None,
        runs_per_gpu: int = 1,
        threads_per_run: int = 1,
        max_workers: int | None = None,
        group_fn: str = GROUP_FN,
    ):
        if ray is None:
            raise ScheduleError("backend 'ray' needs Ray: pip install 'harness[ray]' (or choose --backend local)")
        self.train_fn = train_fn
        self.group_fn = group_fn
        self.ctx_fields = dict(ctx_fields)
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:  # a local instance: its workers must import what the driver imports
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": _local_pythonpath()}}
            ray.init(address=address, **kwargs)
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 1))
        options: dict[str, Any] = {"num_cpus": threads_per_run, "max_retries": 0}
        if self.gpus:
            options["num_gpus"] = 1.0 / runs_per_gpu
            n = self.gpus * runs_per_gpu
        else:
            n = max(1, self.cpus // threads_per_run)
        self._slots = min(n, max_workers) if max_workers else n
        self._task = ray.remote(_ray_main).options(**options)
        self._channel = ray.remote(_Channel).options(num_cpus=0).remote()
        self._live: dict[str, Any] = {}  # attempt or group key -> ObjectRef
        self._members: dict[str, list[str]] = {}  # group key -> its members' attempt keys

    @property
    def slots(self) -> int:
        return self._slots

    def describe(self) -> str:
        return f"ray: {self.cpus} CPU(s), {self.gpus} GPU(s), {self.slots} slot(s)"

    def submit(self, attempt: Attempt) -> None:
        if isinstance(attempt, GroupAttempt):
            self._members[attempt.key] = [attempt.member_key(s.run_id) for s in attempt.specs]
        ref = self._task.remote(attempt, self.train_fn, self.ctx_fields, self._channel, self.group_fn)
        self._live[attempt.key] = ref

    def messages(self, timeout: float) -> list[Message]:
        out: list[Message] = list(ray.get(self._channel.drain.remote()))
        if not self._live:
            return out
        refs = list(self._live.values())
        ready, _ = ray.wait(refs, num_returns=1, timeout=0 if out else timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out.extend(ray.get(self._channel.drain.remote()))  # evals sent before those results
        key_of = {ref: key for key, ref in self._live.items()}
        for ref in ready:
            key = key_of[ref]
            del self._live[key]
            members = self._members.pop(key, None) or [key]
            try:
                result = ray.get(ref)
                out.extend(result if isinstance(result, list) else [result])
            except Exception as exc:  # worker died (WorkerCrashedError) or Ray failed the task
                out.extend(Crashed(m, f"{type(exc).__name__}: {exc}", oom=is_oom(exc)) for m in members)
        return out

    def answer(self, key: str, keep: bool) -> None:
        self._channel.answer.remote(key, keep)

    def cancel(self, key: str) -> None:
        """Cancel an attempt (a group member's key cancels its whole group)."""
        key = next((group for group, members in self._members.items() if key in members), key)
        self._members.pop(key, None)
        ref = self._live.pop(key, None)
        if ref is not None:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        for key in list(self._live):
            self.cancel(key)
        if self._owns and ray.is_initialized():
            ray.shutdown()
