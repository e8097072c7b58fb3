"""Counter-based random numbers: uniform draws from a hash of (run seed, step, site, element index).

Why not torch generators: one generator per run means a Python loop over the K runs at every dropout
site, and a shared generator makes a run's masks depend on its group. A hash of the counters gives
every run its own stream, computed for all K runs in one vectorised integer op, bit-identical on CPU
and GPU. The hash is MurmurHash3's 32-bit finaliser (fmix32) applied in int64 with 32-bit masking, so
no signed overflow reaches a shift.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3 finaliser on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def stream_keys(seeds: torch.Tensor, step: int, site: int) -> torch.Tensor:
    """One 32-bit key per run ([K] int64) for the draws of `site` at `step`; seeds is [K] int64."""
    k = fmix32((seeds & _M32) ^ 0x5BD1E995)
    k = fmix32(k ^ ((seeds >> 32) & _M32))
    k = fmix32((k + (step * _GOLDEN & _M32)) & _M32)
    return fmix32((k + (site * 0x27D4EB2F & _M32)) & _M32)


def index_hash(shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """Hashed element indices of a C-ordered tensor of `shape` (cache it: it does not depend on the run)."""
    index = torch.arange(math.prod(shape), device=device, dtype=torch.int64).view(shape)
    return fmix32((index * _GOLDEN) & _M32)


def draws(keys: torch.Tensor, hashed_index: torch.Tensor) -> torch.Tensor:
    """32-bit draws [K, *shape] (int64): run k, element e -> fmix32(keys[k] ^ hashed_index[e])."""
    return fmix32(keys.view(-1, *([1] * hashed_index.dim())) ^ hashed_index)


def _keep(keys: torch.Tensor, hashed_index: torch.Tensor, threshold: int) -> torch.Tensor:
    return fmix32(keys ^ hashed_index) >= threshold


_COMPILED: dict[str, Any] = {}


def _keep_fn(device: torch.device) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """`_keep`, fused into one kernel by torch.compile on CUDA (eager: ~20 full-size int64 passes per mask).

    Integer ops only, so the compiled masks are bit-identical to eager ones. $HARNESS_COMPILE_MASKS = 0
    turns it off, = 1 turns it on for CPU too; a compile failure falls back to eager for the process.
    """
    setting = os.environ.get("HARNESS_COMPILE_MASKS", "auto")
    wanted = setting == "1" or (setting == "auto" and device.type == "cuda")
    if not wanted or _COMPILED.get("failed"):
        return _keep
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_keep, dynamic=True)
    return _COMPILED["fn"]


def keep_from_index(keys: torch.Tensor, hashed_index: torch.Tensor, p: float) -> torch.Tensor:
    """Bernoulli(1 - p) keep mask [K, *shape]: draw >= p * 2**32.

    Slice `hashed_index` out of a maximal shape so an element keeps its draw when the tensor is cut
    shorter (a batch padded to fewer tokens, a last short batch).
    """
    k = keys.view(-1, *([1] * hashed_index.dim()))
    threshold = round(p * 2**32)
    fn = _keep_fn(keys.device)
    if fn is _keep:
        return _keep(k, hashed_index, threshold)
    try:
        return fn(k, hashed_index, threshold)
    except Exception as exc:  # an inductor/triton problem must not end the run: eager gives the same bits
        _COMPILED["failed"] = True
        warnings.warn(f"compiled dropout masks unavailable ({type(exc).__name__}: {exc}); using eager", stacklevel=2)
        return _keep(k, hashed_index, threshold)


def uniform(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) float64 draws [K, *shape] (for tests and inspection)."""
    return draws(keys, index_hash(shape, keys.device)).double() / 2**32
