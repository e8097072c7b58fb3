"""Creating and replacing files without ever writing through a symbolic link.

A results folder may come from someone else (a shared drive, an untarred archive): a link planted at
`runs/`, `report/`, `experiment.json` or `.driver.lock` must not make the harness write outside it.
Two rules, used by every writer of the harness (store parts, snapshots, experiment records, the lock,
analysis tables, reports, exports, imports):

- files are written to a new temporary name beside the target (created with O_EXCL | O_NOFOLLOW) and
  renamed over it: a link at the target is replaced by the new file, its target is never opened;
- the sub-folders the harness names inside a folder the user chose (`runs/`, `analysis/`, `report/`,
  `slurm/`, `.cache/stages/<run>`, ...) must be real folders; a link there is refused with one line naming it.
  The folder the user named (`--results`, `--out`, an experiment folder) may itself be a link: that is the
  user's choice.

Files that are opened in place (lock files, message logs that grow) are opened with O_NOFOLLOW and never
truncated on open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePathError(RuntimeError):
    """A path the harness would write through a symbolic link (or a non-folder where a folder belongs)."""


def _refuse(path: Path, what: str, fix: str = "replace it with a real folder") -> UnsafePathError:
    return UnsafePathError(
        f"{path} is {what}; the harness never writes through links in a results folder: {fix} and run the command again"
    )


def real_folder(base: str | Path, *names: str) -> Path:
    """`base`/names..., created as needed; each of `names` must be a real folder, not a link (base may be)."""
    folder = Path(base)
    if folder.is_symlink() and not folder.exists():
        raise _refuse(folder, "a link to nothing")
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        folder = folder / name
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        if folder.is_symlink():
            raise _refuse(folder, "a symbolic link")
        if not folder.is_dir():
            raise _refuse(folder, "not a folder")
    return folder


def replace_file(path: str | Path, content: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write `content` (bytes, text as UTF-8, or a function writing to a binary handle) to a fresh temporary
    file beside `path`, fsync it and rename it over `path`: readers see the old file or the new one, never
    half of one, and a link at `path` is replaced, not followed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, str):
                handle.write(content.encode("utf-8"))
            elif isinstance(content, bytes | bytearray):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a read-only or full folder can refuse the cleanup too
            tmp.unlink(missing_ok=True)
        raise
    return path


def open_no_follow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """os.open that refuses a link at `path` (one line naming it) instead of opening its target."""
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if Path(path).is_symlink():
            raise _refuse(Path(path), "a symbolic link", f"remove it (rm {path})") from None
        raise exc from None


def check_own_file(fd: int, path: str | Path) -> None:
    """Refuse (closing `fd`) a file opened in place that is not a plain file of its own: a device or FIFO, or a
    hard link sharing its inode with a file elsewhere (O_NOFOLLOW does not see hard links)."""
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
        os.close(fd)
        raise UnsafePathError(
            f"{path} is not the harness's own file (a special file, or a hard link to another file); "
            "remove it and run the command again"
        )


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock (fcntl.flock, waiting for other holders) on `path`, created as needed: opened
    without following links and never truncated, so a planted link cannot make locking empty a file."""
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    check_own_file(fd, path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
