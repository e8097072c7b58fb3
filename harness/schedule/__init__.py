"""The scheduler: run an experiment's seeded runs on a backend (local processes or Ray), resumably.

    from harness.schedule import run_experiment, experiment_status, format_status
    summary = run_experiment(experiment, "results", backend="local", max_workers=2)

Names are imported lazily so that worker processes, which import
`harness.schedule.worker`, do not pay for pandas and the store.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_experiment": "core",
    "RunSummary": "core",
    "ScheduleError": "backend",
    "experiment_status": "status",
    "format_status": "status",
    "ExperimentLocked": "lock",
    "Backend": "backend",
    "Attempt": "backend",
    "decide": "early_stop",
    "keep_count": "early_stop",
    "RungTracker": "early_stop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"harness.schedule.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'harness.schedule' has no attribute {name!r}")
