"""Which stored runs a table uses: exactly the run ids of the spec it is given, at its scale.

One results folder may hold runs of several specs: the same experiment at two scales (MiniLM on CPU,
BERT-large on GPUs) or before and after a recipe was edited. `harness run` records, beside the copy
of the experiment file, the run ids of every scale it ran (experiment.json), so `analyze`, `report`
and `status` can select them from the folder alone; `--all` pools the folder as before.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from harness.experiment.config import ExperimentSpec, load_experiment
from harness.experiment.fingerprint import data_root
from harness.storage.safe_files import real_folder, replace_file

SPEC_COPY = "experiment.toml"
SPEC_META = "experiment.json"
DEFAULT_SCALE = "default"  # the key of runs made without --scale
STORE_FOLDERS = ("runs", "curves", "events", "predictions")  # what `harness run` writes parts into


class RecordError(RuntimeError):
    """experiment.json cannot be read (a crash or a full disk under an older harness, or an edit)."""


class RecordWarning(UserWarning):
    """A damaged experiment.json was set aside and rebuilt."""


def read_meta(exp_dir: Path) -> dict[str, Any]:
    """The experiment's record ({} when there is none); RecordError, saying how to rebuild it, when damaged."""
    path = exp_dir / SPEC_META
    if path.is_symlink():  # never read (nor later replace) another file through a link planted here
        meta, why = None, "a symbolic link"
    elif not path.is_file():
        return {}
    else:
        try:
            meta = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            why = "empty" if path.stat().st_size == 0 else f"not JSON: {type(exc).__name__}"
            meta = None
        else:
            why = f"a JSON {type(meta).__name__}, not an object"
    if not isinstance(meta, dict):
        raise RecordError(
            f"{path} is damaged ({why}); the stored runs are intact: run the command that wrote it again to "
            "rebuild it (`harness run <experiment.toml>` with the same --scale, or `harness import FILE --name "
            f"{exp_dir.name}`)"
        )
    return meta


def _meta_to_update(exp_dir: Path) -> dict[str, Any]:
    """The record `harness run` adds its scale to; a damaged one is moved aside (with a warning) and rebuilt."""
    try:
        return read_meta(exp_dir)
    except RecordError as exc:
        aside = exp_dir / f"{SPEC_META}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
        (exp_dir / SPEC_META).replace(aside)
        warnings.warn(f"{exc.args[0].split(';')[0]}; moved to {aside.name} and rebuilt for this scale", RecordWarning,
                      stacklevel=3)  # fmt: skip
        return {}


def remember_spec(
    experiment: ExperimentSpec,
    exp_dir: Path,
    scale: str | None,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Keep the experiment file, its `--set` overrides and its run ids (per scale) beside its results; both
    files are replaced atomically (a kill or a full disk leaves the previous version), never through a link.
    Called once the driver holds the lock: a linked store folder is refused here, before any run trains."""
    for folder in STORE_FOLDERS:
        real_folder(exp_dir, folder)
    if Path(experiment.source).resolve() != (exp_dir / SPEC_COPY).resolve():
        replace_file(exp_dir / SPEC_COPY, Path(experiment.source).read_bytes())
    meta = _meta_to_update(exp_dir)
    scales = meta.get("scales", {})
    root = data_root(data_dir or experiment.data_dir)  # resolved as the runs resolve it ($HARNESS_DATA_DIR too)
    scales[scale or DEFAULT_SCALE] = {
        "run_ids": sorted({r.run_id for r in experiment.runs}),
        "data_dir": str(root) if root else None,
    }
    meta.update(source=experiment.source, scale=scale, runs=len(experiment.runs), data_dir=data_dir, scales=scales)
    meta["overrides"] = overrides or {}
    replace_file(exp_dir / SPEC_META, json.dumps(meta, indent=2))


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


def refuse_unfinished_import(exp_dir: Path, meta: dict[str, Any]) -> None:
    """RecordError when `harness import` was interrupted while writing this folder (its record says so)."""
    if "importing" in meta:
        started = meta["importing"] if isinstance(meta["importing"], dict) else {}
        raise RecordError(
            f"the import into {exp_dir} did not finish (interrupted while writing; started "
            f"{started.get('started', '?')} from {started.get('file', '?')}); run the same `harness import` "
            "again to finish it"
        )


def recorded_run_ids(exp_dir: Path, scale: str | None = None) -> frozenset[str] | None:
    """The run ids `harness run` recorded for `scale` (default: the last run's), or None if none were."""
    meta = read_meta(exp_dir)
    refuse_unfinished_import(exp_dir, meta)
    imported = meta.get("imported")
    if isinstance(imported, dict):  # `harness import` wrote these runs: its record is the scope, at any scale
        return frozenset(imported.get("run_ids", []))
    recorded = meta.get("scales", {}).get(scale or meta.get("scale") or DEFAULT_SCALE)
    return frozenset(recorded["run_ids"]) if recorded else None
