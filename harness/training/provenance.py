"""Where a result came from: versions, code revision, device (stored with every run)."""

from __future__ import annotations

import functools
import json
import platform
import socket
import subprocess
from pathlib import Path

import torch
import transformers

import harness

# Uncommitted changes here do not change what a run computes (published reports, notes): not "+dirty".
NOT_CODE = ("docs",)


@functools.cache
def git_sha() -> str:
    """The harness checkout's commit (with '+dirty' for uncommitted changes to its code), or '' outside git."""
    return checkout_state(Path(harness.__file__).resolve().parent.parent)


def checkout_state(root: Path) -> str:
    """`root`'s commit, '+dirty' when a tracked file outside NOT_CODE has uncommitted changes; '' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             *(f":(exclude){folder}" for folder in NOT_CODE)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    from harness.training.device import device_name as name

    return name(device)


def provenance(device: torch.device, data_dir: str | None = None, precision: str | None = None) -> str:
    """Versions, code, device; with the recipe's `precision`, what the run computed in, read back from torch."""
    from harness.training.device import precision_in_effect

    return json.dumps(
        {
            **({"precision": precision_in_effect(device, precision)} if precision else {}),
            "data": str(data_dir) if data_dir else "hub (datasets)",
            "harness": harness.__version__,
            "git_sha": git_sha(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "device_name": device_name(device),
            "threads": torch.get_num_threads(),
            "host": socket.gethostname(),
        },
        sort_keys=True,
    )
