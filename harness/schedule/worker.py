"""What runs inside a worker (a local process or a Ray task): one attempt, reported as messages.

Imports nothing heavy: torch arrives with the training function, after the
backend has set CUDA_VISIBLE_DEVICES and the thread count for this worker.
"""

from __future__ import annotations

import importlib
import signal
import traceback
from collections.abc import Callable
from typing import Any

from harness.schedule.backend import Attempt, Crashed, Evaluated, Finished, GroupAttempt, Message
from harness.storage.records import EvalPoint, RunContext, RunResult


class TrainFnError(ValueError):
    """A train-function import path that does not resolve; names the path and the fix."""


def load_train_fn(path: str) -> Callable[..., RunResult]:
    """'package.module:function' -> the function."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise TrainFnError(f"train function {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainFnError(f"train function {path!r}: cannot import {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise TrainFnError(f"train function {path!r}: {module_name} has no callable {attr!r}")
    return fn


def is_oom(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (checked by name: no torch import) or a RuntimeError saying so."""
    return any(type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower() for e in _chain(exc))


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the driver dies (kill -9 leaves no orphan burning a GPU)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def thread_env(threads: int | None) -> dict[str, str]:
    if not threads:
        return {}
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def run_attempt(
    attempt: Attempt,
    train_fn: str,
    ctx_fields: dict[str, Any],
    send: Callable[[Message], None],
    ask: Callable[[], bool],
) -> Message:
    """Run one attempt; stream evals through `send`, block in `ask` at the rung; return the final message."""
    waited = False

    def on_eval(point: EvalPoint) -> bool:
        nonlocal waited
        at_rung = attempt.rung_at is not None and not waited and attempt.rung_at <= point.fraction < 1.0
        send(Evaluated(attempt.key, point, at_rung))
        if at_rung:
            waited = True
            return bool(ask())
        return True

    try:
        fn = load_train_fn(train_fn)
        ctx = RunContext(**ctx_fields, micro_batch_size=attempt.micro_batch_size, on_eval=on_eval)
        result = fn(attempt.spec, ctx)
        if not isinstance(result, RunResult):
            raise TypeError(f"{train_fn} returned {type(result).__name__}, expected harness.storage.records.RunResult")
        return Finished(attempt.key, result)
    except Exception as exc:  # every error becomes a message; the core decides on retries
        text = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))
        return Crashed(attempt.key, text, oom=is_oom(exc))


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process died with {name} (exit code {exitcode}) before reporting a result"
    return f"worker process exited with code {exitcode} before reporting a result"


GROUP_FN = "harness.training.vectorised.engine:train_group"


def run_group_attempt(
    group: GroupAttempt,
    group_fn: str,
    ctx_fields: dict[str, Any],
    send: Callable[[Message], None],
    ask: Callable[[], tuple[str, bool]],
) -> list[Message]:
    """Train a seed group; stream every member's evals (all of one eval step first, then wait at the rung
    for each member there: answers come back as (member key, keep) in any order); one final message per member."""
    waited: set[str] = set()

    def on_evals(points: list[EvalPoint]) -> list[bool]:
        asked: list[str] = []
        for point in points:
            key = group.member_key(point.run_id)
            at_rung = group.rung_at is not None and point.run_id not in waited and group.rung_at <= point.fraction < 1.0
            send(Evaluated(key, point, at_rung))
            if at_rung:
                waited.add(point.run_id)
                asked.append(key)
        answers: dict[str, bool] = {}
        while len(answers) < len(asked):
            key, keep = ask()
            answers[key] = bool(keep)
        return [answers.get(group.member_key(p.run_id), True) for p in points]

    try:
        fn = load_train_fn(group_fn)
        results = fn(list(group.specs), RunContext(**ctx_fields), on_evals=on_evals)
        if len(results) != len(group.specs) or not all(isinstance(r, RunResult) for r in results):
            raise TypeError(f"{group_fn} must return one harness.storage.records.RunResult per spec, in order")
        return [Finished(group.member_key(s.run_id), r) for s, r in zip(group.specs, results, strict=True)]
    except Exception as exc:  # the whole group failed: every member reports it; the core retries the group
        text = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))
        return [Crashed(group.member_key(s.run_id), text, oom=is_oom(exc)) for s in group.specs]
