"""Counter-based random numbers: keep masks from a hash of (run seed, step, site, element coordinates).

Why not torch generators: one generator per run means a Python loop over the K runs of a seed group at
every dropout site, and a shared generator makes a run's masks depend on its group. A hash of counters
gives every run its own stream, for all K runs in one vectorised integer op, the same bits on CPU and
GPU, in the loop and in the group. The hash is MurmurHash3's 32-bit finaliser (fmix32), applied in
int64 (or to Python ints) with 32-bit masking, so no signed overflow reaches a shift.

Why coordinates, not a flat index: element (b, t, j) must get the same draw whatever width its batch
was padded to, however the batch was split into micro-batches and whichever runs share its group.
Each coordinate is hashed in turn, so a tensor's draws are the slice of any larger tensor's draws.
"""

from __future__ import annotations

import functools
import os
import warnings
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_AXIS = 0x27D4EB2F
_FORWARD = 0x165667B1

IntLike = TypeVar("IntLike", int, torch.Tensor)


def fmix32(x: IntLike) -> IntLike:
    """MurmurHash3 finaliser on values in [0, 2**32): Python ints or int64 tensors, the same bits."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def run_key(seed: IntLike, step: int) -> IntLike:
    """A run's key at one training step: its order seed (an int, or an int64 tensor of K seeds) and the step."""
    k = fmix32((seed & _M32) ^ 0x5BD1E995)
    k = fmix32(k ^ ((seed >> 32) & _M32))
    return fmix32((k + (step * _GOLDEN & _M32)) & _M32)


@functools.lru_cache(maxsize=4096)
def site_key(site: str, call: int = 0, forward: int = 0) -> int:
    """One site's salt: its name (a module path), its call within the forward, the forward within the step."""
    name = zlib.crc32(site.encode())
    return fmix32((fmix32(name) + call * _AXIS + forward * _FORWARD) & _M32)


def mask_key(run: IntLike, site: int) -> IntLike:
    """The key of one mask: a run key (int or tensor) mixed with a site salt."""
    return fmix32(run ^ site)


_COORDS: dict[tuple[int, str], torch.Tensor] = {}


def coordinate_hash(shape: tuple[int, ...], first_row: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Hashed coordinates [*shape] (int64) of the elements of a tensor whose row 0 is row `first_row`.

    Cached per rank and device at the largest extents seen; a request is a slice of the cache (a view).
    """
    if not shape:
        return torch.full((), fmix32(_GOLDEN), dtype=torch.int64, device=device)
    need = (first_row + shape[0], *shape[1:])
    key = (len(shape), str(device))
    cached = _COORDS.get(key)
    if cached is None or any(n > m for n, m in zip(need, cached.shape, strict=True)):
        extents = need if cached is None else tuple(max(n, m) for n, m in zip(need, cached.shape, strict=True))
        cached = _hash_coordinates(extents, device)
        _COORDS[key] = cached
    return cached[(slice(first_row, first_row + shape[0]), *(slice(0, n) for n in shape[1:]))]


def _hash_coordinates(extents: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    rank = len(extents)
    hashed: torch.Tensor | None = None
    for axis, n in enumerate(extents):
        coord = torch.arange(n, device=device, dtype=torch.int64).view([n if a == axis else 1 for a in range(rank)])
        salted = (coord * _GOLDEN + (axis + rank) * _AXIS) & _M32
        hashed = fmix32(salted) if hashed is None else fmix32(hashed ^ salted)
    assert hashed is not None
    return hashed


def threshold(p: float) -> int:
    """Draws below this are dropped: P(drop) = p."""
    return round(p * 2**32)


def _keep(key: Any, coords: torch.Tensor, cut: int) -> torch.Tensor:
    return fmix32(key ^ coords) >= cut


_COMPILED: dict[str, Any] = {}


def _keep_fn(device: torch.device) -> Callable[[Any, torch.Tensor, int], torch.Tensor]:
    """`_keep`, fused into one kernel by torch.compile on CUDA (eager: ~10 full-size int64 passes per mask).

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


def keep(key: int | torch.Tensor, shape: tuple[int, ...], p: float, first_row: int = 0,
         device: torch.device | str = "cpu") -> torch.Tensor:  # fmt: skip
    """Bernoulli(1 - p) keep mask [*shape] (bool) for a mask key: an int, or a [K] tensor (then [K, *shape])."""
    coords = coordinate_hash(shape, first_row, device)
    if isinstance(key, torch.Tensor) and key.dim() == 1:
        key = key.view(-1, *([1] * len(shape)))
    cut = threshold(p)
    fn = _keep_fn(torch.device(device))
    if fn is _keep:
        return _keep(key, coords, cut)
    try:
        return fn(key, coords, cut)
    except Exception as exc:  # an inductor/triton problem must not end the run: eager gives the same bits
        _COMPILED["failed"] = True
        warnings.warn(f"compiled dropout masks unavailable ({type(exc).__name__}: {exc}); using eager", stacklevel=2)
        return _keep(key, coords, cut)


def uniform(key: int | torch.Tensor, shape: tuple[int, ...], first_row: int = 0) -> torch.Tensor:
    """Uniform [0, 1) float64 draws [*shape] (or [K, *shape] for K keys): for tests and inspection."""
    coords = coordinate_hash(shape, first_row)
    if isinstance(key, torch.Tensor) and key.dim() == 1:
        key = key.view(-1, *([1] * len(shape)))
    return fmix32(key ^ coords).double() / 2**32
