"""Local backend: one spawned process per attempt, pinned to a GPU slot or a CPU slot.

Slots are GPUs x runs_per_gpu (each worker sees only its GPU through
CUDA_VISIBLE_DEVICES and trains on "cuda:0"), or, without a GPU, CPU slots of
threads_per_run threads. A process per attempt (not a persistent pool) means a
segfault, kill -9, CUDA OOM or leaked CUDA context ends with that attempt and
never touches another run. The start-up cost (a fresh interpreter and the
torch import) is hidden by pre-starting the next worker of a slot while the
current one trains (`prestart`): each worker still serves exactly one attempt.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.schedule.backend import Attempt, Backend, Crashed, Finished, GroupAttempt, Message, Started
from harness.schedule.worker import (
    GROUP_FN,
    describe_exit,
    die_with_parent,
    load_train_fn,
    run_attempt,
    run_group_attempt,
    thread_env,
)


def discover_gpus() -> list[str]:
    """Visible GPU ids: CUDA_VISIBLE_DEVICES when set (empty or -1 = none), else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return [] if not ids or ids[0].startswith("-") else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


@dataclass(frozen=True)
class Slot:
    index: int
    device: str  # what the run sees: "cpu" or "cuda:0"
    label: str  # what the user sees: "cpu" or "gpu3"
    env: dict[str, str] = field(default_factory=dict)


def plan_slots(
    gpus: list[str], runs_per_gpu: int, threads_per_run: int, max_workers: int | None, cpus: int | None = None
) -> list[Slot]:
    """GPU slots (runs_per_gpu per GPU, round-robin over GPUs) or CPU slots of threads_per_run threads."""
    threads = thread_env(threads_per_run)
    if gpus:
        order = [gpu for _ in range(runs_per_gpu) for gpu in gpus]  # spread over GPUs before packing
        slots = [
            Slot(i, "cuda:0", f"gpu{gpu}", {"CUDA_VISIBLE_DEVICES": gpu, **threads}) for i, gpu in enumerate(order)
        ]
        return slots[:max_workers] if max_workers else slots
    n = max_workers or max(1, (cpus or os.cpu_count() or 1) // threads_per_run)
    return [Slot(i, "cpu", "cpu", {"CUDA_VISIBLE_DEVICES": "", **threads}) for i in range(n)]


BAD_FORK = "HARNESS_BAD_FORK"


def _worker_main(
    train_fn: str, ctx_fields: dict[str, Any], env: dict[str, str], conn: Connection, group_fn: str = GROUP_FN
) -> None:
    """A worker for exactly one attempt (or one seed group): import the training stack, then wait for it."""
    die_with_parent()  # our parent is the forkserver (or the driver under spawn); it dies with the driver
    if os.getppid() == 1:  # orphaned before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it terminates us
    os.environ.clear()
    os.environ.update(env)  # the driver's environment now, and this slot's device and threads
    with contextlib.suppress(Exception):  # warm up; an import error is reported by run_attempt
        load_train_fn(train_fn)
    try:
        attempt = conn.recv()
    except (EOFError, OSError):  # the driver is gone
        return
    if attempt is None:
        return
    if isinstance(attempt, GroupAttempt):
        _group_main(attempt, group_fn, ctx_fields, conn)
        return
    conn.send(Started(attempt.key, ctx_fields["device"]))
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda._is_in_bad_fork():
        conn.send(Crashed(attempt.key, f"{BAD_FORK}: CUDA was initialised in the forkserver; retrying under spawn"))
        return
    message = run_attempt(attempt, train_fn, ctx_fields, conn.send, conn.recv)
    conn.send(message)
    conn.close()


def _group_main(group: GroupAttempt, group_fn: str, ctx_fields: dict[str, Any], conn: Connection) -> None:
    keys = [group.member_key(s.run_id) for s in group.specs]
    for key in keys:
        conn.send(Started(key, ctx_fields["device"]))
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda._is_in_bad_fork():
        for key in keys:
            conn.send(Crashed(key, f"{BAD_FORK}: CUDA was initialised in the forkserver; retrying under spawn"))
        return
    for message in run_group_attempt(group, group_fn, ctx_fields, conn.send, conn.recv):
        conn.send(message)
    conn.close()


def start_context(train_fn: str, method: str = "forkserver") -> Any:
    """forkserver with the training module preloaded (workers fork in ms instead of importing torch in s),
    or spawn ($HARNESS_START_METHOD=spawn, or where forkserver does not exist). Never plain fork."""
    method = os.environ.get("HARNESS_START_METHOD", method)
    if method == "forkserver" and "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        # NVML-based CUDA checks: a preload that asks torch.cuda.is_available() must not initialise CUDA
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        context.set_forkserver_preload(["harness.schedule.local", train_fn.partition(":")[0]])
        return context
    return mp.get_context("spawn")


def prewarm(train_fn: str) -> None:
    """Start the forkserver now: its torch import then overlaps the driver's preflight and store set-up."""
    context = start_context(train_fn)
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()  # returns at once; the first fork waits for the preload


@dataclass
class _Worker:
    process: Any
    conn: Connection


@dataclass
class _Live:
    attempt: Attempt
    process: Any
    conn: Connection
    slot: Slot
    final: bool = False
    pending: set[str] = field(default_factory=set)  # member attempt keys without a final message yet


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        train_fn: str,
        ctx_fields: dict[str, Any],
        *,
        runs_per_gpu: int = 1,
        threads_per_run: int = 1,
        max_workers: int | None = None,
        gpus: list[str] | None = None,
        prestart: bool = True,
        start_method: str = "forkserver",
        group_fn: str = GROUP_FN,
    ):
        self.train_fn = train_fn
        self.group_fn = group_fn
        self._unit_of: dict[str, str] = {}  # a group member's attempt key -> its group's key
        self.ctx_fields = dict(ctx_fields)
        self.gpus = discover_gpus() if gpus is None else gpus
        self._slots = plan_slots(self.gpus, runs_per_gpu, threads_per_run, max_workers)
        self._free = list(self._slots)
        self._live: dict[str, _Live] = {}
        self._spares: dict[int, _Worker] = {}  # slot index -> a started worker waiting for its attempt
        self.prestart = prestart
        self._mp = start_context(train_fn, start_method)  # no plain fork: no inherited CUDA state, threads, locks

    @property
    def slots(self) -> int:
        return len(self._slots)

    def describe(self) -> str:
        if self.gpus:
            return f"local: {len(self.gpus)} GPU(s) {','.join(self.gpus)}, {self.slots} slot(s)"
        return f"local: CPU, {self.slots} slot(s) of {self.ctx_fields.get('threads') or 1} thread(s)"

    def _start(self, slot: Slot) -> _Worker:
        ctx = {**self.ctx_fields, "device": slot.device}
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_main,
            args=(self.train_fn, ctx, {**os.environ, **slot.env}, child_conn, self.group_fn),
            name=f"harness-worker-{slot.label}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def submit(self, attempt: Attempt) -> None:
        if not self._free:
            raise RuntimeError("LocalBackend.submit: no free slot (the core submits only while slots are free)")
        slot = self._free.pop(0)
        worker = self._spares.pop(slot.index, None)
        if worker is None or not worker.process.is_alive():
            worker = self._start(slot)
        try:
            worker.conn.send(attempt)
        except (BrokenPipeError, OSError):  # the spare died while waiting: start afresh
            worker = self._start(slot)
            worker.conn.send(attempt)
        members = [attempt.member_key(s.run_id) for s in attempt.specs] if isinstance(attempt, GroupAttempt) else []
        self._unit_of.update((m, attempt.key) for m in members)
        self._live[attempt.key] = _Live(
            attempt, worker.process, worker.conn, slot, pending=set(members or [attempt.key])
        )
        if self.prestart:  # the next attempt on this slot skips interpreter and torch start-up
            self._spares[slot.index] = self._start(slot)

    def messages(self, timeout: float) -> list[Message]:
        if not self._live:
            return []
        handles = [h for live in self._live.values() for h in (live.conn, live.process.sentinel)]
        wait(handles, timeout)
        out: list[Message] = []
        for key, live in list(self._live.items()):
            out.extend(self._drain(live))
            if any(isinstance(m, Crashed) and m.error.startswith(BAD_FORK) for m in out):
                self._mp = mp.get_context("spawn")
                self._kill_spares()
            if not live.process.is_alive():
                out.extend(self._drain(live))  # anything sent just before exiting
                if not live.final:  # every member still without a result loses this attempt
                    out.extend(Crashed(m, describe_exit(live.process.exitcode)) for m in sorted(live.pending))
                self._retire(key)
            elif live.final:
                live.process.join(timeout=10)  # it sent its result: let it exit, or make it
                if live.process.is_alive():
                    live.process.kill()
                    live.process.join(timeout=5)
                self._retire(key)
        return out

    def _drain(self, live: _Live) -> list[Message]:
        out: list[Message] = []
        while not live.final:
            try:
                if not live.conn.poll():
                    break
                message = live.conn.recv()
            except (EOFError, OSError):
                break
            out.append(message)
            if isinstance(message, Finished | Crashed):
                live.pending.discard(message.key)
                live.final = not live.pending
        return out

    def _retire(self, key: str) -> None:
        live = self._live.pop(key)
        for member in [m for m, unit in self._unit_of.items() if unit == key]:
            del self._unit_of[member]
        live.conn.close()
        live.process.join(timeout=1)
        self._free.append(live.slot)
        self._free.sort(key=lambda s: s.index)

    def answer(self, key: str, keep: bool) -> None:
        unit = self._unit_of.get(key)
        live = self._live.get(unit or key)
        if live is not None:
            with contextlib.suppress(BrokenPipeError, OSError):  # it died meanwhile: messages() reports it
                live.conn.send((key, keep) if unit else keep)

    def cancel(self, key: str) -> None:
        """Kill an attempt (a group member's key kills its whole group)."""
        key = self._unit_of.get(key, key)
        live = self._live.get(key)
        if live is not None:
            live.process.kill()
            live.process.join(timeout=5)
            self._retire(key)

    def _kill_spares(self) -> None:
        for worker in self._spares.values():
            worker.process.kill()
        for worker in self._spares.values():
            worker.process.join(timeout=3)
            worker.conn.close()
        self._spares.clear()

    def close(self) -> None:
        self._kill_spares()
        for live in self._live.values():
            if live.process.is_alive():
                live.process.terminate()
        for key in list(self._live):
            live = self._live[key]
            live.process.join(timeout=3)
            if live.process.is_alive():
                live.process.kill()
                live.process.join(timeout=3)
            self._retire(key)
