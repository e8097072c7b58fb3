"""What a run trains on, as strings for its run id: the data's and the weights' fingerprints.

A run id must change when the training data or the model weights change, and not otherwise (not when
a file is copied elsewhere or touched). Local files are named by a SHA-256 of their content; hub
data sets and models by their id and the revision the loader asks for ("main": pin a revision in the
id to make an upstream change a new run). Resolved once when an experiment is loaded and carried in
the RunSpec, so the scheduler and the workers never hash; within one process each file is hashed
once (cached by path, size and mtime_ns). No torch here: the CLI and the parser import this.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness.experiment.tasks import TaskDef

DATA_DIR_ENV = "HARNESS_DATA_DIR"
HUB_REVISION = "main"  # the loaders ask for the default branch
PACKAGED_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_ALIASES = frozenset({PACKAGED_ID, "all-MiniLM-L6-v2", "packaged"})
PACKAGED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Files of a local model folder that shape a run: weights, config, tokenizer.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")

_CACHE: dict[tuple[str, int, int], str] = {}


def hash_file(path: Path) -> str:
    """SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, hashed once per process while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = hash_file(path)
    return _CACHE[key]


def _combine(hashes: list[str]) -> str:
    return "sha256:" + hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def data_root(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The data folder the loaders will read (explicit, else $HARNESS_DATA_DIR), or None for the hub."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or None
    return Path(chosen).expanduser() if chosen else None


def data_fingerprint(task: TaskDef, root: Path | None) -> str:
    """The task's train and dev files' content hash, the hub data set's id and revision, or why neither."""
    if root is None:
        if task.hub is None:
            return "none"  # no data: preflight says so before any run starts
        return f"hub:{task.hub[0]}/{task.hub[1]}@{HUB_REVISION}"
    files = [root / task.folder / task.train_file, root / task.folder / task.dev_file]
    if not all(f.is_file() for f in files):
        return "missing"  # preflight fails on the missing file before any run starts
    return _combine([f"{f.name}:{file_sha256(f)}" for f in files])


def model_fingerprint(name: str) -> str:
    """A local model folder's file hashes, the packaged MiniLM's checked hash, or a hub id and revision."""
    path = Path(name).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
        return _combine([f"{p.name}:{file_sha256(p)}" for p in files])
    if name in PACKAGED_ALIASES:
        return f"sha256:{PACKAGED_SHA256}"  # harness.training.models verifies the installed file against it
    return f"hub:{name}@{HUB_REVISION}"
