"""Parquet result store: one part file per finished run, written atomically.

Layout under `results/<experiment>/`:

    runs/<run_id>.parquet     one row per finished run (schema RUN_COLUMNS)
    curves/<run_id>.parquet   one row per evaluation (schema CURVE_COLUMNS)
    events/<stamp>.parquet    scheduler events (retries, failures, early-stop decisions)

A run counts as stored once its `runs/` part exists; the curve part is written
first, so a crash between the two leaves an orphan curve that the next write
replaces, never a run without its curve. Parts are written to a temporary
name and renamed, so readers never see half a file (harness/storage/safe_files.py:
never through a link planted in the folder either).

A part named `<run_id>.parquet` holds that run. A part with any other name (`harness import` writes
one part per import, `import.batch.parquet`; a sync tool's "X (conflicted copy).parquet") is read
for the run ids its rows carry. One run id is one run, whatever the file name: when two parts hold
the same run id, the part with the shortest name counts (ties: alphabetical; a copy made by a sync
tool or a file manager adds to the original's name) and a warning names both files.

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
    phases        JSON {phase: seconds} inside the run (data, model, tokenize, train, eval); "" if not timed
curves columns:
    run_id, eval_index, step, fraction (of total steps), epoch, train_loss,
    val_metric, test_metric (x100; test NaN under the dev protocol)
events columns:
    time, run_id, kind, message

Schema version: every Parquet file this module writes (parts, snapshots, analysis tables) carries
SCHEMA_VERSION in its metadata under `harness_schema_version`. Loading checks each part it reads: a
version this code does not know (written by a newer harness) is a StoreError naming the file. Parts
written before versions existed have no key and are read as version 1 (their columns are version 1's;
nothing is migrated). Bump SCHEMA_VERSION when a column changes meaning or type, and teach the loader
to read (or migrate) the older versions.

predictions columns (predictions/<run_id>.parquet, one part per run that recorded them):
    run_id, split (val | test), example (index in the split's stored order), prediction
    (class id, or the score for regression) at the run's selected checkpoint
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from harness.storage.safe_files import UnsafePathError, real_folder, replace_file

RUN_STATUSES = ("done", "diverged", "stopped", "failed")
SCHEMA_VERSION = 1
KNOWN_SCHEMA_VERSIONS = (1,)
SCHEMA_VERSION_KEY = b"harness_schema_version"

RUN_COLUMNS: dict[str, str] = {
    "run_id": "string", "experiment": "string", "task": "string", "recipe": "string", "model": "string",
    "config_key": "string", "init_seed": "int64", "order_seed": "int64", "sample_seed": "int64",
    "sample_size": "Int64", "status": "string", "metric": "string", "score": "float64",
    "val_best": "float64", "val_final": "float64", "test_best": "float64", "test_final": "float64",
    "majority_val": "float64", "majority_test": "float64", "best_step": "Int64", "steps_done": "int64",
    "total_steps": "int64", "epochs_done": "float64", "loss_first": "float64", "loss_last": "float64",
    "loss_min": "float64", "loss_mean": "float64", "wall_time_s": "float64", "peak_mem_mb": "float64",
    "flops": "float64", "attempts": "int64", "error": "string", "notes": "string", "device": "string",
    "provenance": "string", "spec": "string", "finished_at": "string", "phases": "string",
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
        raise StoreError(f"unknown column(s) {unknown}; the schema is in harness/storage/store.py")
    frame = pd.DataFrame({c: [r.get(c) for r in rows] for c in columns})
    return frame.astype(dict(columns))


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary name beside `path`, fsync, then rename: readers never see half a file, and a link
    at `path` is replaced, not written through. Callers that name sub-folders check them with real_folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _versioned(pa.Table.from_pandas(frame, preserve_index=False))
    replace_file(path, lambda handle: pq.write_table(table, handle))


def _versioned(table: pa.Table, extra: Mapping[bytes, bytes] | None = None) -> pa.Table:
    """`table` with SCHEMA_VERSION (and `extra`) in its Parquet metadata."""
    meta = {**(table.schema.metadata or {}), SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode(), **(extra or {})}
    return table.replace_schema_metadata(meta)


def schema_version_of(metadata: Mapping[bytes, bytes] | None, path: Path) -> int:
    """The schema version recorded in a file's metadata (1 when absent); StoreError for one we cannot read."""
    raw = (metadata or {}).get(SCHEMA_VERSION_KEY)
    if raw is None:
        return 1  # written before parts had a version: version 1's columns
    try:
        version = int(raw)
    except ValueError:
        version = -1
    if version not in KNOWN_SCHEMA_VERSIONS:
        raise StoreError(
            f"{path}: schema version {raw.decode(errors='replace')} is not one this harness reads "
            f"({', '.join(map(str, KNOWN_SCHEMA_VERSIONS))}); it was written by a newer harness: upgrade harness, "
            f"or move {path.parent} aside to start a fresh store"
        )
    return version


def write_run(exp_dir: str | Path, run: Mapping[str, Any], curve: Iterable[Mapping[str, Any]]) -> None:
    """Store one finished run (its row and its eval curve); replaces an earlier record of the same id."""
    exp_dir = Path(exp_dir)
    run_id = run["run_id"]
    if run.get("status") not in RUN_STATUSES:
        raise StoreError(f"run {run_id}: status {run.get('status')!r} is not one of {RUN_STATUSES}")
    curve_rows = [{**point, "run_id": run_id} for point in curve]
    write_parquet_atomic(_frame(curve_rows, CURVE_COLUMNS), real_folder(exp_dir, "curves") / f"{run_id}.parquet")
    write_parquet_atomic(_frame([run], RUN_COLUMNS), real_folder(exp_dir, "runs") / f"{run_id}.parquet")


def write_batch(
    exp_dir: str | Path,
    name: str,
    runs: Sequence[Mapping[str, Any]],
    curves: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Store many finished runs as one part per table, `<name>.parquet` (curves, events, then runs, each
    atomic): what `harness import` writes. `name` must hold a dot, so it is never read as a run id."""
    if "." not in name or "/" in name:
        raise StoreError(f"batch part name {name!r} must hold a dot and no '/'")
    bad = sorted({str(r.get("status")) for r in runs} - set(RUN_STATUSES))
    if bad:
        raise StoreError(f"batch {name}: status {bad} is not one of {RUN_STATUSES}")
    exp_dir = Path(exp_dir)
    write_parquet_atomic(_frame(curves, CURVE_COLUMNS), real_folder(exp_dir, "curves") / f"{name}.parquet")
    if events:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = [{"time": stamp, **e} for e in events]
        write_parquet_atomic(_frame(rows, EVENT_COLUMNS), real_folder(exp_dir, "events") / f"{name}.parquet")
    write_parquet_atomic(_frame(runs, RUN_COLUMNS), real_folder(exp_dir, "runs") / f"{name}.parquet")


def write_events(exp_dir: str | Path, events: Iterable[Mapping[str, Any]]) -> None:
    rows = [{"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **e} for e in events]
    if rows:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(_frame(rows, EVENT_COLUMNS), real_folder(exp_dir, "events") / name)


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
        write_parquet_atomic(pd.read_parquet(preds_path), real_folder(dst_dir, "predictions") / f"{run_id}.parquet")
    write_run(dst_dir, row, points)
    return True


_RUN_PART = re.compile(r"[A-Za-z0-9_-]+\.parquet")  # `<run_id>.parquet`: the part of one run, named by its id


def stored_run_ids(exp_dir: str | Path) -> set[str]:
    """Ids of runs whose record is complete (what resume skips); a part that is not a whole Parquet file
    (zero bytes, truncated) is quarantined first, so the run is run again. A part named by its run id is
    taken at its name; any other part (an import's batch, a sync tool's copy) is read for its ids."""
    folder = Path(exp_dir) / "runs"
    parts = _list_parts(folder)
    for name in [n for n in parts if not _looks_whole(folder / n)]:
        quarantine_part(folder / name, "not a whole Parquet file (zero bytes or truncated)")
        parts.pop(name)
    ids = {name[: -len(".parquet")] for name in parts if _RUN_PART.fullmatch(name)}
    for name in [n for n in parts if not _RUN_PART.fullmatch(n)]:
        try:
            ids.update(str(i) for i in pq.read_table(folder / name, columns=["run_id"]).column(0).to_pylist())
        except (OSError, KeyError, pa.ArrowException, ValueError):
            continue  # unreadable: loading quarantines it, and its runs count as not stored
    return ids


QUARANTINE = "quarantine"


class BadPartWarning(UserWarning):
    """A part file was moved aside (or skipped) because it cannot be read."""


class DuplicatePartWarning(UserWarning):
    """Two part files hold the same run id (e.g. a sync tool's conflicted copy); the run counts once."""


def _looks_whole(path: Path) -> bool:
    """Parquet files start and end with b"PAR1": a cheap test that catches zero-byte and truncated parts."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(-4, os.SEEK_END)
            return head == b"PAR1" and handle.read(4) == b"PAR1"
    except OSError:
        return False


def quarantine_part(path: Path, reason: str) -> Path | None:
    """Move an unreadable part to <experiment>/quarantine/<folder>/ with a warning naming it; the rest of the
    store then loads, and the run it held counts as not stored. None when the store is read-only."""
    dest = path.parent.parent / QUARANTINE / path.parent.name / path.name
    if dest.exists():
        dest = dest.with_name(f"{path.stem}.{time.time_ns()}{path.suffix}")
    try:
        real_folder(path.parent.parent, QUARANTINE, path.parent.name)
        os.replace(path, dest)
    except (OSError, UnsafePathError):
        warnings.warn(f"skipped unreadable part {path}: {reason} (read-only store; left in place)", BadPartWarning,
                      stacklevel=2)  # fmt: skip
        return None
    warnings.warn(f"quarantined {path} -> {dest}: {reason}; `harness run` will redo it", BadPartWarning, stacklevel=2)
    return dest


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


PART = "_part"  # while loading: the file each row came from (never stored)


def _read_parts(folder: Path, names: list[str], columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every part's rows, with the part's file name in column PART; on any unreadable or foreign-schema part,
    fall back to one part at a time and quarantine the bad ones (see quarantine_part)."""
    try:
        dataset = pads.dataset([str(folder / n) for n in sorted(names)], format="parquet")
        for fragment in dataset.get_fragments():  # each part's own footer: versions may differ per part
            schema_version_of(fragment.physical_schema.metadata, Path(fragment.path))
        table = dataset.to_table(columns=[*dataset.schema.names, "__filename"])
        frame = table.drop_columns(["__filename"]).to_pandas()
        frame[PART] = [os.path.basename(f) for f in table.column("__filename").to_pylist()]
        if columns is None or _fits(frame, columns):
            return frame
    except (OSError, pa.ArrowException, ValueError):
        pass
    frames = []
    for name in sorted(names):
        path = folder / name
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException, ValueError) as exc:
            quarantine_part(path, f"unreadable ({exc})")
            continue
        schema_version_of(table.schema.metadata, path)
        part = table.to_pandas()
        if columns is not None and not _fits(part, columns):
            quarantine_part(path, f"not a harness part (columns {sorted(part.columns)[:6]}...)")
            continue
        frames.append(part.assign(**{PART: name}))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*(columns or ()), PART])


def _fits(frame: pd.DataFrame, columns: Mapping[str, str]) -> bool:
    """A run_id on every row and the shared columns cast to the schema: a foreign file fails one or the other.
    (Columns a newer schema added may be missing from older parts; the loader handles those.)"""
    if "run_id" in columns and ("run_id" not in frame.columns or frame["run_id"].isna().any()):
        return False
    shared = {c: t for c, t in columns.items() if c in frame.columns}
    if not shared:
        return False
    try:
        frame[list(shared)].astype(shared)
    except (TypeError, ValueError):
        return False
    return True


_MANIFEST_KEY = b"harness_parts"
# A snapshot's manifest: part name -> [mtime_ns, size] for a part named by its one run id, or
# [mtime_ns, size, [run ids]] for any other part (a batch, a copy): the rows it holds.
Entry = Sequence[Any]


def _read_snapshot(path: Path) -> tuple[pd.DataFrame | None, dict[str, Entry]]:
    try:
        table = pq.read_table(path)
        manifest = json.loads(table.schema.metadata[_MANIFEST_KEY])
        schema_version_of(table.schema.metadata, path)
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowInvalid, StoreError):
        return None, {}  # no snapshot, or an unreadable one: rebuild from the parts
    return table.to_pandas(), {k: tuple(v) for k, v in manifest.items()}


def _write_snapshot(path: Path, frame: pd.DataFrame, parts: Mapping[str, Entry]) -> None:
    meta = {_MANIFEST_KEY: json.dumps({k: list(v) for k, v in parts.items()}).encode()}
    table = _versioned(pa.Table.from_pandas(frame, preserve_index=False), meta)
    with contextlib.suppress(OSError):  # a read-only (or full) store still loads; it is just not sped up next time
        replace_file(path, lambda handle: pq.write_table(table, handle))


def _ids_of(name: str, entry: Entry) -> list[str]:
    return list(entry[2]) if len(entry) > 2 else [name[: -len(".parquet")]]


def _entry(name: str, sig: tuple[int, int], ids: list[str]) -> Entry:
    return (*sig, ids) if ids != [name[: -len(".parquet")]] else sig


def _first_part(names: Iterable[str]) -> str:
    """Which of several parts holding one run id counts: the shortest name (a copy adds to it), then alphabetical."""
    return min(names, key=lambda n: (len(n), n))


def _keep_first_parts(frame: pd.DataFrame) -> pd.DataFrame:
    """Each run id's rows from one part only (see _first_part)."""
    if not len(frame) or frame.groupby("run_id")[PART].nunique().max() <= 1:
        return frame
    names = sorted(set(frame[PART]), key=lambda n: (len(n), n))
    rank = frame[PART].map({n: i for i, n in enumerate(names)})
    return frame[rank == rank.groupby(frame["run_id"]).transform("min")]


def _warn_duplicates(folder: Path, manifest: Mapping[str, Entry]) -> None:
    holders: dict[str, list[str]] = {}
    for name, entry in manifest.items():
        for run_id in _ids_of(name, entry):
            holders.setdefault(run_id, []).append(name)
    dups = {i: sorted(ns, key=lambda n: (len(n), n)) for i, ns in holders.items() if len(ns) > 1}
    if not dups:
        return
    shown = "; ".join(
        f"run {i} in {', '.join(str(folder / n) for n in ns)} counts once, from {ns[0]}"
        for i, ns in list(dups.items())[:3]
    )
    more = f" (and {len(dups) - 3} more run ids)" if len(dups) > 3 else ""
    warnings.warn(
        f"{len(dups)} run id(s) stored in more than one part: {shown}{more}. One run id is one run whatever the "
        "file name; the part with the shortest name counts (a copy made by a sync tool adds to the name): "
        "delete the other copies",
        DuplicatePartWarning,
        stacklevel=3,
    )


_KEYS = {"runs": ["run_id"], "curves": ["run_id", "eval_index"], "predictions": ["run_id", "split", "example"]}


def _load_keyed(folder: Path, columns: Mapping[str, str], snapshot: Path) -> pd.DataFrame:
    """Rows of every part, one part per run id, through the snapshot: only the parts that are new or changed
    since it are read (and the unchanged ones that hold a run id of those)."""
    parts = _list_parts(folder)
    cached, manifest = _read_snapshot(snapshot)
    if cached is not None and cached.duplicated(_KEYS.get(folder.name, ["run_id"])).any():
        cached, manifest = None, {}  # a snapshot from before runs were counted once per id: rebuild it
    if cached is None:
        manifest = {}
    unchanged = {n for n, sig in parts.items() if n in manifest and tuple(manifest[n][:2]) == sig}
    fresh = [n for n in parts if n not in unchanged]
    gone = [n for n in manifest if n not in unchanged]
    entries = {n: manifest[n] for n in unchanged}
    affected = {i for n in gone for i in _ids_of(n, manifest[n])}
    frames = []
    if fresh:
        read = _read_parts(folder, fresh, columns)
        listed = _list_parts(folder)  # without the parts just quarantined
        held = read.groupby(PART)["run_id"].unique() if len(read) else pd.Series(dtype=object)
        for name in fresh:
            if name in listed:
                ids = sorted(str(i) for i in held.get(name, []))
                entries[name] = _entry(name, listed[name], ids)
                affected.update(ids)
        frames.append(read)
    again = [n for n in unchanged if affected.intersection(_ids_of(n, entries[n]))]
    if again:  # an unchanged part holding a run id that a new part holds too: choose between them again
        read = _read_parts(folder, again, columns)
        frames.append(read[read["run_id"].isin(affected)])
    frames = [f for f in frames if len(f)]
    if frames:
        frames = [_keep_first_parts(pd.concat(frames, ignore_index=True))]
    if cached is not None and len(cached):
        frames.insert(0, cached[~cached["run_id"].isin(affected)])
    _warn_duplicates(folder, entries)
    frames = [f for f in frames if len(f)]
    # reindex: parts written before a column was added read as missing values in it
    frame = pd.concat(frames, ignore_index=True).reindex(columns=list(columns)) if frames else _frame([], columns)
    frame = frame.astype(dict(columns))
    if fresh or gone:
        _write_snapshot(snapshot, frame, entries)
    order = ["run_id", "eval_index"] if "eval_index" in columns else ["run_id"]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def _load(folder: Path, columns: Mapping[str, str]) -> pd.DataFrame:
    parts = _list_parts(folder)
    if not parts:
        return _frame([], columns)
    frame = _read_parts(folder, list(parts), columns)
    return frame.reindex(columns=list(columns)).astype(dict(columns)) if len(frame) else _frame([], columns)


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
