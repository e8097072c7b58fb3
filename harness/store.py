"""Parquet result store: one part file per finished run, written atomically.

Layout under `results/<experiment>/`:

    runs/<run_id>.parquet     one row per finished run (schema RUN_COLUMNS)
    curves/<run_id>.parquet   one row per evaluation (schema CURVE_COLUMNS)
    events/<stamp>.parquet    scheduler events (retries, failures, early-stop decisions)

A run counts as stored once its `runs/` part exists; the curve part is written
first, so a crash between the two leaves an orphan curve that the next write
replaces, never a run without its curve. Parts are written to a temporary
name and renamed, so readers never see half a file.

Reading ten thousand small files is slow (seconds per thousand), so loading
keeps a snapshot beside each folder (`runs.parquet`, `curves.parquet`): one
file with every part's rows and, in its metadata, the size and mtime of each
part it holds. A load reads the snapshot plus only the parts that are new or
changed since, then refreshes the snapshot. The parts stay the truth: delete
the snapshot and the next load rebuilds it.

runs columns:
    run_id, experiment, task, recipe, model, config_key (task/recipe),
    init_seed, order_seed, sample_seed, sample_size,
    status        done | diverged | stopped | failed
    metric        metric name (accuracy, f1, matthews, spearman, ...)
    score         reported metric x100 at the selected checkpoint (test half under
                  the held-out protocol, dev otherwise); NaN for failed/diverged
    val_best, val_final, test_best, test_final   x100; test_best is test at the best-val step
    majority_val, majority_test                  majority-class baseline of each split x100
    best_step, steps_done, total_steps, epochs_done
    loss_first, loss_last, loss_min, loss_mean   training loss summary
    wall_time_s, peak_mem_mb, flops
    attempts, error, notes
    device, provenance (JSON), spec (RunSpec JSON), finished_at (UTC ISO)
curves columns:
    run_id, eval_index, step, fraction (of total steps), epoch, train_loss,
    val_metric, test_metric (x100; test NaN under the dev protocol)
events columns:
    time, run_id, kind, message
predictions columns (predictions/<run_id>.parquet, one part per run that recorded them):
    run_id, split (val | test), example (index in the split's stored order), prediction
    (class id, or the score for regression) at the run's selected checkpoint
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

RUN_STATUSES = ("done", "diverged", "stopped", "failed")

RUN_COLUMNS: dict[str, str] = {
    "run_id": "string", "experiment": "string", "task": "string", "recipe": "string", "model": "string",
    "config_key": "string", "init_seed": "int64", "order_seed": "int64", "sample_seed": "int64",
    "sample_size": "Int64", "status": "string", "metric": "string", "score": "float64",
    "val_best": "float64", "val_final": "float64", "test_best": "float64", "test_final": "float64",
    "majority_val": "float64", "majority_test": "float64", "best_step": "Int64", "steps_done": "int64",
    "total_steps": "int64", "epochs_done": "float64", "loss_first": "float64", "loss_last": "float64",
    "loss_min": "float64", "loss_mean": "float64", "wall_time_s": "float64", "peak_mem_mb": "float64",
    "flops": "float64", "attempts": "int64", "error": "string", "notes": "string", "device": "string",
    "provenance": "string", "spec": "string", "finished_at": "string",
}  # fmt: skip
CURVE_COLUMNS: dict[str, str] = {
    "run_id": "string", "eval_index": "int64", "step": "int64", "fraction": "float64", "epoch": "float64",
    "train_loss": "float64", "val_metric": "float64", "test_metric": "float64",
}  # fmt: skip
EVENT_COLUMNS: dict[str, str] = {"time": "string", "run_id": "string", "kind": "string", "message": "string"}
PREDICTION_COLUMNS: dict[str, str] = {
    "run_id": "string", "split": "string", "example": "int32", "prediction": "float32",
}  # fmt: skip


class StoreError(RuntimeError):
    """A store that cannot be read or written; names the path."""


def experiment_dir(results_root: str | Path, experiment: str) -> Path:
    return Path(results_root) / experiment


def _frame(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    rows = list(rows)
    unknown = sorted({k for r in rows for k in r} - set(columns))
    if unknown:
        raise StoreError(f"unknown column(s) {unknown}; the schema is in harness/store.py")
    frame = pd.DataFrame({c: [r.get(c) for r in rows] for c in columns})
    return frame.astype(dict(columns))


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary name beside `path`, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_run(exp_dir: str | Path, run: Mapping[str, Any], curve: Iterable[Mapping[str, Any]]) -> None:
    """Store one finished run (its row and its eval curve); replaces an earlier record of the same id."""
    exp_dir = Path(exp_dir)
    run_id = run["run_id"]
    if run.get("status") not in RUN_STATUSES:
        raise StoreError(f"run {run_id}: status {run.get('status')!r} is not one of {RUN_STATUSES}")
    curve_rows = [{**point, "run_id": run_id} for point in curve]
    write_parquet_atomic(_frame(curve_rows, CURVE_COLUMNS), exp_dir / "curves" / f"{run_id}.parquet")
    write_parquet_atomic(_frame([run], RUN_COLUMNS), exp_dir / "runs" / f"{run_id}.parquet")


def write_events(exp_dir: str | Path, events: Iterable[Mapping[str, Any]]) -> None:
    rows = [{"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **e} for e in events]
    if rows:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(_frame(rows, EVENT_COLUMNS), Path(exp_dir) / "events" / name)


def copy_run(
    src_dir: str | Path,
    dst_dir: str | Path,
    run_id: str,
    identity: Mapping[str, Any],
    statuses: tuple[str, ...] = RUN_STATUSES,
) -> bool:
    """Store another experiment's record of `run_id` here under this experiment's `identity` columns
    (experiment, recipe name, config_key, spec); False if there is no copyable record."""
    src_dir = Path(src_dir)
    try:
        run = pd.read_parquet(src_dir / "runs" / f"{run_id}.parquet")
        curve = pd.read_parquet(src_dir / "curves" / f"{run_id}.parquet")
    except (OSError, ValueError):
        return False
    if len(run) != 1 or run.loc[0, "status"] not in statuses:
        return False
    row = {k: (None if pd.isna(v) else v) for k, v in run.iloc[0].to_dict().items()}
    if identity.get("run_id", run_id) != run_id:
        raise StoreError(f"copy_run: identity is for run {identity['run_id']}, not {run_id}")
    row.update(identity)
    row["notes"] = "; ".join(x for x in (row.get("notes") or "", f"reused from {src_dir.name}") if x)
    points = [{k: v for k, v in p.items() if k != "run_id"} for p in curve.to_dict("records")]
    preds_path = src_dir / "predictions" / f"{run_id}.parquet"
    if preds_path.is_file():  # before the run part, as when the run was first stored
        write_parquet_atomic(pd.read_parquet(preds_path), Path(dst_dir) / "predictions" / f"{run_id}.parquet")
    write_run(dst_dir, row, points)
    return True


def stored_run_ids(exp_dir: str | Path) -> set[str]:
    """Ids of runs whose record is complete (what resume skips)."""
    return {name[: -len(".parquet")] for name in _list_parts(Path(exp_dir) / "runs")}


def _list_parts(folder: Path) -> dict[str, tuple[int, int]]:
    """Part file name -> (mtime_ns, size); temporary files (dot-prefixed) are not parts."""
    if not folder.is_dir():
        return {}
    parts = {}
    for entry in os.scandir(folder):
        if entry.name.endswith(".parquet") and not entry.name.startswith("."):
            stat = entry.stat()
            parts[entry.name] = (stat.st_mtime_ns, stat.st_size)
    return parts


def _read_parts(folder: Path, names: list[str]) -> pd.DataFrame:
    try:
        table = pads.dataset([str(folder / n) for n in sorted(names)], format="parquet").to_table()
    except (OSError, pa.ArrowInvalid) as exc:  # a corrupt part must name itself
        raise StoreError(f"cannot read a part under {folder}: {exc}") from exc
    return table.to_pandas()


_MANIFEST_KEY = b"harness_parts"


def _read_snapshot(path: Path) -> tuple[pd.DataFrame | None, dict[str, tuple[int, int]]]:
    try:
        table = pq.read_table(path)
        manifest = json.loads(table.schema.metadata[_MANIFEST_KEY])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowInvalid):
        return None, {}  # no snapshot, or an unreadable one: rebuild from the parts
    return table.to_pandas(), {k: tuple(v) for k, v in manifest.items()}


def _write_snapshot(path: Path, frame: pd.DataFrame, parts: dict[str, tuple[int, int]]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _MANIFEST_KEY: json.dumps(parts)})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError:  # a read-only store still loads; it just is not sped up next time
        tmp.unlink(missing_ok=True)


def _load_keyed(folder: Path, columns: Mapping[str, str], snapshot: Path) -> pd.DataFrame:
    """Rows of every part (one part per run_id), through the snapshot."""
    parts = _list_parts(folder)
    cached, manifest = _read_snapshot(snapshot)
    if cached is None:
        manifest = {}
    fresh = [name for name, sig in parts.items() if manifest.get(name) != sig]
    stale = {name[: -len(".parquet")] for name in set(manifest) - (set(parts) - set(fresh))}
    frames = []
    if cached is not None and len(cached):
        frames.append(cached[~cached["run_id"].isin(stale)])
    if fresh:
        frames.append(_read_parts(folder, fresh))
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True).astype(dict(columns)) if frames else _frame([], columns)
    frame = frame[list(columns)]
    if fresh or stale:
        _write_snapshot(snapshot, frame, parts)
    order = ["run_id", "eval_index"] if "eval_index" in columns else ["run_id"]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def _load(folder: Path, columns: Mapping[str, str]) -> pd.DataFrame:
    parts = _list_parts(folder)
    if not parts:
        return _frame([], columns)
    frame = _read_parts(folder, list(parts))
    return frame.astype(dict(columns))[list(columns)] if len(frame) else _frame([], columns)


def load_runs(exp_dir: str | Path) -> pd.DataFrame:
    """All stored runs, one row each (columns RUN_COLUMNS), ordered by run_id."""
    return _load_keyed(Path(exp_dir) / "runs", RUN_COLUMNS, Path(exp_dir) / "runs.parquet")


def load_curves(exp_dir: str | Path, only_stored: bool = True) -> pd.DataFrame:
    """Eval curves of stored runs (orphans from a crash mid-write are left out)."""
    curves = _load_keyed(Path(exp_dir) / "curves", CURVE_COLUMNS, Path(exp_dir) / "curves.parquet")
    if only_stored and len(curves):
        curves = curves[curves["run_id"].isin(stored_run_ids(exp_dir))].reset_index(drop=True)
    return curves


def load_events(exp_dir: str | Path) -> pd.DataFrame:
    return _load(Path(exp_dir) / "events", EVENT_COLUMNS)


def write_predictions(exp_dir: str | Path, run_id: str, predictions: Mapping[str, Iterable[float]]) -> None:
    """Store one run's per-example predictions ({"val": [...], "test": [...]}) atomically, one part per run.

    Written before the run's `runs/` part (like its curve), so a stored run never lacks them.
    """
    frames = [
        pd.DataFrame({"run_id": run_id, "split": split, "example": range(len(values)), "prediction": values})
        for split, values in ((k, list(v)) for k, v in predictions.items())
        if values
    ]
    frame = pd.concat(frames, ignore_index=True) if frames else _frame([], PREDICTION_COLUMNS)
    write_parquet_atomic(frame.astype(PREDICTION_COLUMNS), Path(exp_dir) / "predictions" / f"{run_id}.parquet")


def load_predictions(exp_dir: str | Path, only_stored: bool = True) -> pd.DataFrame:
    """Per-example predictions of stored runs (columns PREDICTION_COLUMNS), ordered by run, split, example."""
    exp_dir = Path(exp_dir)
    frame = _load_keyed(exp_dir / "predictions", PREDICTION_COLUMNS, exp_dir / "predictions.parquet")
    if only_stored and len(frame):
        frame = frame[frame["run_id"].isin(stored_run_ids(exp_dir))]
    return frame.sort_values(["run_id", "split", "example"], kind="stable", ignore_index=True)
