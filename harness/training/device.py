"""Every CUDA-only call of the harness, in one place, in the order CUDA needs them.

Why one module: a fresh worker process has not initialised CUDA, and some calls
(`reset_peak_memory_stats`) fail there with "Invalid device argument". Here
`prepare` initialises first and everything else comes after; the CPU tests
replace `cuda` (this module's handle on torch.cuda) with a fake that enforces
that order, so the contract is checked without a GPU.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
from collections.abc import Iterator
from typing import Any

import torch

cuda: Any = torch.cuda  # replaced by a fake in tests

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
CUBLAS_WORKSPACE = ":4096:8"  # what torch's deterministic mode asks of cuBLAS (CUDA >= 10.2)


class DeviceError(RuntimeError):
    """A device that cannot do what the run asks (precision, CUDA); names the field and the fix."""


def resolve(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' -> a torch.device; a CUDA device that is not there is an error now."""
    device = torch.device(name)
    if device.type == "cuda" and not cuda.is_available():
        raise DeviceError(f"device {name!r}: no CUDA GPU is visible to this process (CUDA_VISIBLE_DEVICES?)")
    return device


def set_deterministic(enabled: bool) -> None:
    """torch's deterministic algorithms; the cuBLAS workspace variable must be set before CUDA starts."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)


def prepare(device: torch.device, precision: str = "fp32") -> None:
    """Set the run's matmul precision, initialise CUDA on `device` (no-op on CPU), then zero its peak-memory counter."""
    set_matmul_precision(device, precision)
    if device.type != "cuda":
        return
    cuda.init()
    cuda.set_device(device)
    cuda.reset_peak_memory_stats(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (phase timings are wall-clock); no-op on CPU."""
    if device.type == "cuda":
        cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory since `prepare`; on CPU the process's peak resident set."""
    if device.type == "cuda":
        return cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(cuda.get_device_name(device))
    return platform.processor() or platform.machine()


def check_precision(device: torch.device, precision: str, where: str = "recipe") -> None:
    """Refuse a precision the device cannot train in, naming the field and the fix."""
    if precision not in PRECISIONS:
        raise DeviceError(f"{where}: field 'precision' = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise DeviceError(
            f"{where}: field 'precision' = 'tf32' needs a CUDA GPU (device is {device}); use precision = 'fp32' on CPU"
        )
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError(
            f"{where}: field 'precision' = 'fp16' needs a CUDA GPU (device is {device}); "
            "use precision = 'bf16' or 'fp32' on CPU"
        )
    if precision == "bf16" and device.type == "cuda" and not cuda.is_bf16_supported():
        raise DeviceError(
            f"{where}: field 'precision' = 'bf16' but {device_name(device)} has no bf16 support; "
            "use precision = 'fp16' (with a grad scaler) or 'fp32'"
        )


def set_matmul_precision(device: torch.device, precision: str) -> None:
    """fp32 matmuls in TF32 for precision 'tf32', strict IEEE fp32 otherwise: set by every run, so a worker that
    trained a TF32 run before never carries it into the next one."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def precision_in_effect(device: torch.device, precision: str) -> str:
    """What the run computed in, read back from torch at its end (stored with the run, compared by benchmarks)."""
    tf32 = device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)
    matmuls = "fp32 matmuls in tf32" if tf32 else "fp32 matmuls in ieee fp32"
    return f"{precision} autocast, {matmuls}" if precision in ("bf16", "fp16") else matmuls


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision around forward and loss; fp32 and tf32 are a plain context."""
    if precision in ("fp32", "tf32"):
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (gradients underflow without one); None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
