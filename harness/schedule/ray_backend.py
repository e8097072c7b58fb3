"""Ray backend (optional extra `harness[ray]`): the same attempts as Ray tasks with fractional GPUs.

Each attempt is one Ray task (max_retries=0: retries belong to the core) asking
for `threads_per_run` CPUs and `1/runs_per_gpu` GPU; Ray pins it through
CUDA_VISIBLE_DEVICES, so the run trains on "cuda:0". Eval points and rung
answers go through one small actor (`_Channel`). Results return to the driver,
which writes the store exactly as with the local backend. A dead worker shows
as a Ray error on the task's result and becomes a `Crashed` message.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from harness.schedule.backend import Attempt, Backend, Crashed, Message, ScheduleError, Started
from harness.schedule.worker import is_oom, run_attempt, thread_env

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


def _ray_main(attempt: Attempt, train_fn: str, ctx_fields: dict[str, Any], channel: Any) -> Message:
    os.environ.update(thread_env(ctx_fields.get("threads")))
    device = "cuda:0" if ray.get_gpu_ids() else "cpu"
    ctx = {**ctx_fields, "device": device}
    channel.put.remote(Started(attempt.key, device))

    def ask() -> bool:
        while True:
            answer = ray.get(channel.decision.remote(attempt.key))
            if answer is not None:
                return answer
            time.sleep(0.05)

    return run_attempt(attempt, train_fn, ctx, lambda m: channel.put.remote(m), ask)


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
    ):
        if ray is None:
            raise ScheduleError("backend 'ray' needs Ray: pip install 'harness[ray]' (or choose --backend local)")
        self.train_fn = train_fn
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
        self._live: dict[str, Any] = {}  # key -> ObjectRef

    @property
    def slots(self) -> int:
        return self._slots

    def describe(self) -> str:
        return f"ray: {self.cpus} CPU(s), {self.gpus} GPU(s), {self.slots} slot(s)"

    def submit(self, attempt: Attempt) -> None:
        self._live[attempt.key] = self._task.remote(attempt, self.train_fn, self.ctx_fields, self._channel)

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
            try:
                out.append(ray.get(ref))
            except Exception as exc:  # worker died (WorkerCrashedError) or Ray failed the task
                out.append(Crashed(key, f"{type(exc).__name__}: {exc}", oom=is_oom(exc)))
        return out

    def answer(self, key: str, keep: bool) -> None:
        self._channel.answer.remote(key, keep)

    def cancel(self, key: str) -> None:
        ref = self._live.pop(key, None)
        if ref is not None:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        for key in list(self._live):
            self.cancel(key)
        if self._owns and ray.is_initialized():
            ray.shutdown()
