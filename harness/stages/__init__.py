"""Stages: steps composed before a run (intermediate task, TAPT) that hand it an encoder checkpoint.

Each stage is keyed by its own spec's run_id and cached (harness/stages/cache.py), so the seeds of a
configuration share one stage.
"""

from harness.stages.cache import CACHE_ENV, cache_root, load_encoder, save_encoder_once
from harness.stages.intermediate import EncoderCheckpoint, intermediate_checkpoint, intermediate_spec
from harness.stages.tapt import TaptCheckpoint, tapt_checkpoint, tapt_spec

__all__ = [
    "CACHE_ENV",
    "EncoderCheckpoint",
    "TaptCheckpoint",
    "cache_root",
    "intermediate_checkpoint",
    "intermediate_spec",
    "load_encoder",
    "save_encoder_once",
    "tapt_checkpoint",
    "tapt_spec",
]
