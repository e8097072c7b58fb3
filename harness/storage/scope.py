"""Which stored runs a table uses: exactly the run ids of the spec it is given, at its scale.

One results folder may hold runs of several specs: the same experiment at two scales (MiniLM on CPU,
BERT-large on GPUs) or before and after a recipe was edited. `harness run` records, beside the copy
of the experiment file, the run ids of every scale it ran (experiment.json), so `analyze`, `report`
and `status` can select them from the folder alone; `--all` pools the folder as before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness.experiment.config import ExperimentSpec, load_experiment
from harness.experiment.fingerprint import data_root

SPEC_COPY = "experiment.toml"
SPEC_META = "experiment.json"
DEFAULT_SCALE = "default"  # the key of runs made without --scale


def read_meta(exp_dir: Path) -> dict[str, Any]:
    path = exp_dir / SPEC_META
    return json.loads(path.read_text()) if path.is_file() else {}


def remember_spec(
    experiment: ExperimentSpec,
    exp_dir: Path,
    scale: str | None,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Keep the experiment file, its `--set` overrides and its run ids (per scale) beside its results."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    if Path(experiment.source).resolve() != (exp_dir / SPEC_COPY).resolve():
        shutil.copyfile(experiment.source, exp_dir / SPEC_COPY)
    meta = read_meta(exp_dir)
    scales = meta.get("scales", {})
    root = data_root(data_dir or experiment.data_dir)  # resolved as the runs resolve it ($HARNESS_DATA_DIR too)
    scales[scale or DEFAULT_SCALE] = {
        "run_ids": sorted({r.run_id for r in experiment.runs}),
        "data_dir": str(root) if root else None,
    }
    meta.update(source=experiment.source, scale=scale, runs=len(experiment.runs), data_dir=data_dir, scales=scales)
    meta["overrides"] = overrides or {}
    (exp_dir / SPEC_META).write_text(json.dumps(meta, indent=2))


def stored_spec(exp_dir: Path, scale: str | None = None) -> ExperimentSpec | None:
    """The stored experiment file at `scale` (default: the scale of the last `harness run`), or None."""
    if not (exp_dir / SPEC_COPY).is_file():
        return None
    meta = read_meta(exp_dir)
    scale = scale or meta.get("scale")
    recorded = meta.get("scales", {}).get(scale or DEFAULT_SCALE, {})
    data_dir = recorded.get("data_dir") or meta.get("data_dir")
    return load_experiment(exp_dir / SPEC_COPY, scale=scale, data_dir=data_dir, overrides=meta.get("overrides") or None)


def recorded_data_dir(exp_dir: Path, scale: str | None = None) -> str | None:
    """The data folder the runs of `scale` (default: the last run's) were identified with, or None (hub)."""
    meta = read_meta(exp_dir)
    return meta.get("scales", {}).get(scale or meta.get("scale") or DEFAULT_SCALE, {}).get("data_dir")


def recorded_run_ids(exp_dir: Path, scale: str | None = None) -> frozenset[str] | None:
    """The run ids `harness run` recorded for `scale` (default: the last run's), or None if none were."""
    meta = read_meta(exp_dir)
    imported = meta.get("imported")
    if isinstance(imported, dict):  # `harness import` wrote these runs: its record is the scope, at any scale
        return frozenset(imported.get("run_ids", []))
    recorded = meta.get("scales", {}).get(scale or meta.get("scale") or DEFAULT_SCALE)
    return frozenset(recorded["run_ids"]) if recorded else None
