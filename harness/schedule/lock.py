"""One driver per experiment: an exclusive kernel lock (fcntl.flock) on results/<experiment>/.driver.lock.

The kernel drops the lock when the holder dies, even under kill -9, so a
stale lock cannot block a restart; the file keeps the holder's pid, host and
start time only so the refusal can name them. The file is opened without following links: a
`.driver.lock` planted as a link (to a file the lock would truncate) is refused with one line.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from harness.storage.safe_files import UnsafePathError, check_own_file, open_no_follow, real_folder

LOCK_NAME = ".driver.lock"


class ExperimentLocked(RuntimeError):
    """Another driver is running this experiment; the message names the lock file and its pid."""


class ExperimentLock:
    def __init__(self, exp_dir: str | Path):
        self.path = Path(exp_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> ExperimentLock:
        real_folder(self.path.parent)
        fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's pid stays readable
        check_own_file(fd, self.path)
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
        fd = open_no_follow(path, os.O_RDONLY)
    except (OSError, UnsafePathError):
        return {}
    try:
        with os.fdopen(fd, "rb") as handle:
            info = json.loads(handle.read(4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_locked(exp_dir: str | Path) -> dict | None:
    """The holder's info if a driver holds the experiment now, else None."""
    path = Path(exp_dir) / LOCK_NAME
    if not path.exists():
        return None
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except (OSError, UnsafePathError):  # a link is no driver's lock: no driver holds it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {"pid": "?"}
    finally:
        os.close(fd)
    return None
