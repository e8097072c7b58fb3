"""One driver per experiment: an exclusive kernel lock (fcntl.flock) on results/<experiment>/.driver.lock.

The kernel drops the lock when the holder dies, even under kill -9, so a
stale lock cannot block a restart; the file keeps the holder's pid, host and
start time only so the refusal can name them.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".driver.lock"


class ExperimentLocked(RuntimeError):
    """Another driver is running this experiment; the message names the lock file and its pid."""


class ExperimentLock:
    def __init__(self, exp_dir: str | Path):
        self.path = Path(exp_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> ExperimentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's pid stays readable
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path)
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
            raise ExperimentLocked(
                f"experiment '{self.path.parent.name}' is already being run by another driver ({who}); "
                f"lock file {self.path}. Wait for it to finish or stop that process; "
                f"`harness status` shows its progress."
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExperimentLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def is_locked(exp_dir: str | Path) -> dict | None:
    """The holder's info if a driver holds the experiment now, else None."""
    path = Path(exp_dir) / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {"pid": "?"}
    finally:
        os.close(fd)
    return None
