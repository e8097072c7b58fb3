"""The stage cache: a stage's encoder is trained once per stage run_id (under a lock) and reused.

Stages (intermediate task, TAPT) run before a target run and hand it an encoder checkpoint; this module
holds where those checkpoints live and how they are written (atomically, once) and loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from harness.storage.records import RunContext
from harness.storage.safe_files import exclusive_lock, real_folder, replace_file

CACHE_ENV = "HARNESS_CACHE_DIR"


def cache_root(ctx: RunContext) -> Path:
    return Path(ctx.cache_dir or os.environ.get(CACHE_ENV) or "results/.cache")


def stage_folder(ctx: RunContext, kind: str, run_id: str) -> Path:
    """<cache>/<kind>/<stage run_id>, real folders (the cache sits in a results folder that may come from
    someone else: a planted link there must not make a stage write outside it)."""
    return real_folder(cache_root(ctx), kind, run_id)


def save_encoder_once(folder: Path, train: Callable[[], tuple[torch.nn.Module, dict]], save_head: bool = False) -> dict:
    """Run `train` at most once per folder (under a lock across processes) and keep its encoder.

    The encoder file is written last, by rename: its presence means the stage is complete, so a crash
    mid-stage makes the next run train it again instead of loading half a stage.
    """
    encoder, record_path = folder / "encoder.safetensors", folder / "record.json"
    with exclusive_lock(folder / ".lock"):
        if not encoder.is_file():
            model, record = train()
            if save_head:  # everything outside the encoder (e.g. the MLM head); clones un-tie shared weights
                prefix = f"{model.base_model_prefix}."
                head = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix)}
                replace_file(folder / "head.safetensors", save(head))
            replace_file(record_path, json.dumps(record))
            replace_file(
                encoder, save({k: v.detach().cpu().contiguous() for k, v in model.base_model.state_dict().items()})
            )
    return json.loads(record_path.read_text()) if record_path.is_file() else {}


def load_encoder(model: torch.nn.Module, path: Path, what: str, optional: tuple[str, ...] = ()) -> None:
    """Copy a saved encoder into `model.base_model`; keys starting with `optional` may be absent."""
    missing, unexpected = model.base_model.load_state_dict(load_file(path), strict=False)
    missing = [k for k in missing if not k.startswith(optional)] if optional else missing
    if missing or unexpected:
        raise RuntimeError(f"{path}: {what} does not fit the model (missing {missing}, unexpected {unexpected})")
