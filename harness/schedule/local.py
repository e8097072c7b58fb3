"""Local backend: worker processes pinned to a GPU slot or a CPU slot, one attempt at a time each.

Slots are GPUs x runs_per_gpu (each worker sees only its GPU through
CUDA_VISIBLE_DEVICES and trains on "cuda:0"), or, without a GPU, CPU slots of
threads_per_run threads. Each slot keeps a warm worker: a process that serves the
slot's attempts one after another, so the interpreter, the torch import, the CUDA
context and compiled kernels are paid once per slot, not once per run. A worker
serves its next attempt only after a clean one (every result Finished); after a
crash (an exception, a dead process, a cancel) it is gone and the slot gets a fresh
process, so a segfault, kill -9, CUDA OOM or poisoned CUDA context still costs only
the attempt in flight. `HARNESS_WARM_WORKERS=0` goes back to one process per
attempt (the next one pre-started while the current one trains).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.schedule.backend import Attempt, Backend, Crashed, Finished, GroupAttempt, Message, Started
from harness.schedule.memory import slot_budget
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
    train_fn: str,
    ctx_fields: dict[str, Any],
    env: dict[str, str],
    conn: Connection,
    group_fn: str = GROUP_FN,
    warm: bool = True,
) -> None:
    """A slot's worker: import the training stack, then serve attempts (or seed groups) one at a time until
    the driver says stop (None), an attempt crashes, or (`warm` False) after the first one."""
    die_with_parent()  # our parent is the forkserver (or the driver under spawn); it dies with the driver
    if os.getppid() == 1:  # orphaned before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it terminates us
    os.environ.clear()
    os.environ.update(env)  # the driver's environment now, and this slot's device and threads
    with contextlib.suppress(Exception):  # warm up; an import error is reported by run_attempt
        load_train_fn(train_fn)
    while True:
        try:
            attempt = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if attempt is None:
            break
        if not isinstance(attempt, Attempt | GroupAttempt):  # a late rung answer: nothing waits for it
            continue
        clean = _serve(attempt, train_fn, group_fn, ctx_fields, conn)
        if not (clean and warm):
            break
        gc.collect()  # the last run's models and loaders, before the next one builds its own
    conn.close()


def _serve(
    attempt: Attempt | GroupAttempt, train_fn: str, group_fn: str, ctx_fields: dict[str, Any], conn: Connection
) -> bool:
    """Run one attempt or group, sending its messages; True when every result is Finished (no crash)."""
    keys = [attempt.member_key(s.run_id) for s in attempt.specs] if isinstance(attempt, GroupAttempt) else [attempt.key]
    for key in keys:
        conn.send(Started(key, ctx_fields["device"]))
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda._is_in_bad_fork():
        for key in keys:
            conn.send(Crashed(key, f"{BAD_FORK}: CUDA was initialised in the forkserver; retrying under spawn"))
        return False
    if isinstance(attempt, GroupAttempt):
        finals = run_group_attempt(attempt, group_fn, ctx_fields, conn.send, conn.recv)
    else:
        finals = [run_attempt(attempt, train_fn, ctx_fields, conn.send, conn.recv)]
    for message in finals:
        conn.send(message)
    return all(isinstance(m, Finished) for m in finals)


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


def gpu_free_bytes(gpus: list[str]) -> dict[str, int]:
    """Free memory of each GPU id (an index or a UUID, as in CUDA_VISIBLE_DEVICES), from `nvidia-smi` before
    our workers start; GPUs it does not list are left out (their slots get no memory limit)."""
    smi = shutil.which("nvidia-smi")
    if smi is None or not gpus:
        return {}
    query = [smi, "--query-gpu=index,uuid,memory.free", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {gpu: free for gpu, free in parse_free_memory(out).items() if gpu in gpus}


def parse_free_memory(text: str) -> dict[str, int]:
    """`nvidia-smi --query-gpu=index,uuid,memory.free --format=csv,noheader,nounits` -> bytes by index and UUID."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[2].replace(".", "", 1).isdigit():
            free = int(float(parts[2])) * 2**20
            out[parts[0]] = out[parts[1]] = free
    return out


def memory_per_slot(slots: list[Slot], free: Mapping[str, int]) -> int | None:
    """The GPU bytes every slot may fill: its GPU's free memory shared by that GPU's slots (the smallest share)."""
    per_gpu = collections.Counter(slot.env.get("CUDA_VISIBLE_DEVICES", "") for slot in slots if slot.device != "cpu")
    if not per_gpu or any(gpu not in free for gpu in per_gpu):
        return None
    return min(slot_budget(free[gpu], n) for gpu, n in per_gpu.items())


def warm_workers() -> bool:
    """Whether slots keep their worker between attempts ($HARNESS_WARM_WORKERS=0: one process per attempt)."""
    return os.environ.get("HARNESS_WARM_WORKERS", "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class _Worker:
    process: Any
    conn: Connection


@dataclass
class _Live:
    attempt: Attempt | GroupAttempt
    worker: _Worker
    slot: Slot
    final: bool = False
    clean: bool = True  # every final message so far is Finished: the worker may serve the slot again
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
        gpu_free: Mapping[str, int] | None = None,
        prestart: bool = True,
        start_method: str = "forkserver",
        group_fn: str = GROUP_FN,
        warm: bool | None = None,
    ):
        self.train_fn = train_fn
        self.group_fn = group_fn
        self._unit_of: dict[str, str] = {}  # a group member's attempt key -> its group's key
        self.ctx_fields = dict(ctx_fields)
        self.gpus = discover_gpus() if gpus is None else gpus
        self._slots = plan_slots(self.gpus, runs_per_gpu, threads_per_run, max_workers)
        free = gpu_free_bytes(self.gpus) if gpu_free is None else gpu_free
        self._memory_per_slot = memory_per_slot(self._slots, free)
        self._free = list(self._slots)
        self._live: dict[str, _Live] = {}
        self.warm = warm_workers() if warm is None else warm
        self._idle: dict[int, _Worker] = {}  # slot index -> a started worker waiting for its next attempt
        self.prestart = prestart and not self.warm  # a warm slot already has its next worker: itself
        self.started = 0  # worker processes started (the benchmark and the tests count them)
        self._mp = start_context(train_fn, start_method)  # no plain fork: no inherited CUDA state, threads, locks

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def memory_per_slot(self) -> int | None:
        return self._memory_per_slot

    def describe(self) -> str:
        how = "warm workers" if self.warm else "one process per attempt"
        if self.gpus:
            memory = f", ~{self._memory_per_slot / 2**30:.1f} GiB per slot" if self._memory_per_slot else ""
            return f"local: {len(self.gpus)} GPU(s) {','.join(self.gpus)}, {self.slots} slot(s){memory}, {how}"
        return f"local: CPU, {self.slots} slot(s) of {self.ctx_fields.get('threads') or 1} thread(s), {how}"

    def _start(self, slot: Slot) -> _Worker:
        ctx = {**self.ctx_fields, "device": slot.device}
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_main,
            args=(self.train_fn, ctx, {**os.environ, **slot.env}, child_conn, self.group_fn, self.warm),
            name=f"harness-worker-{slot.label}",
            daemon=True,
        )
        process.start()
        self.started += 1
        child_conn.close()
        return _Worker(process, parent_conn)

    def submit(self, attempt: Attempt) -> None:
        if not self._free:
            raise RuntimeError("LocalBackend.submit: no free slot (the core submits only while slots are free)")
        slot = self._free.pop(0)
        worker = self._idle.pop(slot.index, None)
        if worker is None or not worker.process.is_alive():
            worker = self._start(slot)
        try:
            worker.conn.send(attempt)
        except (BrokenPipeError, OSError):  # the idle worker died while waiting: start afresh
            worker = self._start(slot)
            worker.conn.send(attempt)
        members = [attempt.member_key(s.run_id) for s in attempt.specs] if isinstance(attempt, GroupAttempt) else []
        self._unit_of.update((m, attempt.key) for m in members)
        self._live[attempt.key] = _Live(attempt, worker, slot, pending=set(members or [attempt.key]))
        if self.prestart:  # one process per attempt: the next one on this slot skips interpreter and torch start-up
            self._idle[slot.index] = self._start(slot)

    def messages(self, timeout: float) -> list[Message]:
        if not self._live:
            return []
        handles = [h for live in self._live.values() for h in (live.worker.conn, live.worker.process.sentinel)]
        wait(handles, timeout)
        out: list[Message] = []
        for key, live in list(self._live.items()):
            out.extend(self._drain(live))
            if any(isinstance(m, Crashed) and m.error.startswith(BAD_FORK) for m in out):
                self._mp = mp.get_context("spawn")
                self._kill_idle()
            process = live.worker.process
            if not process.is_alive():
                out.extend(self._drain(live))  # anything sent just before exiting
                if not live.final:  # every member still without a result loses this attempt
                    out.extend(Crashed(m, describe_exit(process.exitcode)) for m in sorted(live.pending))
                self._retire(key, keep=False)
            elif live.final:
                self._retire(key, keep=self.warm and live.clean)
        return out

    def _drain(self, live: _Live) -> list[Message]:
        out: list[Message] = []
        while not live.final:
            try:
                if not live.worker.conn.poll():
                    break
                message = live.worker.conn.recv()
            except (EOFError, OSError):
                break
            out.append(message)
            if isinstance(message, Finished | Crashed):
                live.pending.discard(message.key)
                live.clean = live.clean and isinstance(message, Finished)
                live.final = not live.pending
        return out

    def _retire(self, key: str, keep: bool) -> None:
        """Free the attempt's slot; its worker waits there for the next attempt (`keep`) or ends."""
        live = self._live.pop(key)
        for member in [m for m, unit in self._unit_of.items() if unit == key]:
            del self._unit_of[member]
        if keep and live.slot.index not in self._idle:
            self._idle[live.slot.index] = live.worker
        else:
            self._end(live.worker, timeout=10 if live.final else 1)
        self._free.append(live.slot)
        self._free.sort(key=lambda s: s.index)

    @staticmethod
    def _end(worker: _Worker, timeout: float) -> None:
        """Let a worker that reported its result exit (it does after a crash), or make it."""
        worker.process.join(timeout=timeout)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()

    def answer(self, key: str, keep: bool) -> None:
        unit = self._unit_of.get(key)
        live = self._live.get(unit or key)
        if live is not None:
            with contextlib.suppress(BrokenPipeError, OSError):  # it died meanwhile: messages() reports it
                live.worker.conn.send((key, keep) if unit else keep)

    def cancel(self, key: str) -> None:
        """Kill an attempt (a group member's key kills its whole group); its slot gets a fresh worker."""
        key = self._unit_of.get(key, key)
        live = self._live.get(key)
        if live is not None:
            live.worker.process.kill()
            live.worker.process.join(timeout=5)
            self._retire(key, keep=False)

    def _kill_idle(self) -> None:
        for worker in self._idle.values():
            worker.process.kill()
        for worker in self._idle.values():
            worker.process.join(timeout=3)
            worker.conn.close()
        self._idle.clear()

    def close(self) -> None:
        self._kill_idle()
        for live in self._live.values():
            if live.worker.process.is_alive():
                live.worker.process.terminate()
        for key in list(self._live):
            live = self._live[key]
            live.worker.process.join(timeout=3)
            if live.worker.process.is_alive():
                live.worker.process.kill()
                live.worker.process.join(timeout=3)
            self._retire(key, keep=False)
