"""The one backend interface: submit run attempts, stream messages back, answer rung waits, cancel.

Backends only execute attempts and report what happened. Retries, failures,
early stopping and the store live in `core.py`, shared by every backend
(submitit style: `local.py` and `ray_backend.py` implement `Backend`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

from harness.experiment.spec import RunSpec
from harness.storage.records import EvalPoint, RunResult


class ScheduleError(RuntimeError):
    """A scheduler set-up problem (backend, train function); the message names the fix."""


@dataclass(frozen=True)
class Attempt:
    """One try at one run: the spec, the try number (1-based) and how to execute it."""

    spec: RunSpec
    number: int = 1
    micro_batch_size: int | None = None  # set on an OOM retry: gradient accumulation
    rung_at: float | None = None  # early-stop rung fraction: the worker waits there for a decision

    @property
    def key(self) -> str:
        return f"{self.spec.run_id}#{self.number}"

    @property
    def run_id(self) -> str:
        return self.spec.run_id


@dataclass(frozen=True)
class GroupAttempt:
    """One try at K runs of one configuration trained together in one worker (harness.training.vectorised).

    Every message about a member carries that member's own attempt key (`member_key`), so the core
    records, retries and early-stops each run as if it had its own worker.
    """

    specs: tuple[RunSpec, ...]
    number: int = 1
    rung_at: float | None = None

    @property
    def key(self) -> str:
        digest = hashlib.sha256(",".join(s.run_id for s in self.specs).encode()).hexdigest()[:12]
        return f"group-{digest}#{self.number}"

    def member_key(self, run_id: str) -> str:
        return f"{run_id}#{self.number}"

    @property
    def members(self) -> tuple[Attempt, ...]:
        return tuple(Attempt(s, self.number, None, self.rung_at) for s in self.specs)


# Messages a backend streams back, each tagged with the attempt key.


@dataclass(frozen=True)
class Started:
    key: str
    device: str


@dataclass(frozen=True)
class Evaluated:
    """An eval point; `at_rung` means the worker now waits for `Backend.answer`."""

    key: str
    point: EvalPoint
    at_rung: bool


@dataclass(frozen=True)
class Finished:
    key: str
    result: RunResult


@dataclass(frozen=True)
class Crashed:
    """The attempt raised (traceback text) or its worker died (exit code / signal)."""

    key: str
    error: str
    oom: bool = False


Message = Started | Evaluated | Finished | Crashed


class Backend(ABC):
    """Executes attempts in isolation; never retries, never writes the store."""

    name: str = "?"

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many attempts may run at once."""

    @property
    def memory_per_slot(self) -> int | None:
        """GPU bytes one slot's attempt may fill (its share of its GPU's free memory); None when unknown."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """One line: the devices and slots, for the log and the progress bar."""

    @abstractmethod
    def submit(self, attempt: Attempt) -> None:
        """Start an attempt; only called while fewer than `slots` attempts are live."""

    @abstractmethod
    def messages(self, timeout: float) -> list[Message]:
        """Messages since the last call, waiting up to `timeout` s for the first one.

        Every submitted attempt ends with exactly one Finished or Crashed.
        """

    @abstractmethod
    def answer(self, key: str, keep: bool) -> None:
        """Reply to an `Evaluated(at_rung=True)`: continue (True) or stop with status 'stopped'."""

    @abstractmethod
    def cancel(self, key: str) -> None:
        """Kill one live attempt; no message follows for it."""

    @abstractmethod
    def close(self) -> None:
        """Kill every live attempt and release resources (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
