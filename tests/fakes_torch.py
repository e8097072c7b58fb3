"""fakes_schedule.matmul from a module that imports torch when imported, as the real training function's module
(harness.training.pipeline) does: the local backend's forkserver preloads it, so a fresh worker starts with torch
already imported (benchmarks/bench_schedule.py)."""

from __future__ import annotations

import torch
from fakes_schedule import matmul

__all__ = ["matmul", "torch"]
