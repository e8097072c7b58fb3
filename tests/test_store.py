"""The Parquet store: atomic parts, schema, resume ids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.experiment.config import Recipe, RunSpec
from harness.storage import store
from harness.storage.records import base_row, failed_row


def _run(seed: int, status: str = "done", score: float = 70.0) -> tuple[dict, list[dict]]:
    spec = RunSpec(task="rte", model="m", recipe=Recipe(), init_seed=seed, order_seed=seed, experiment="e")
    row = {**base_row(spec), "status": status, "score": score, "metric": "accuracy", "steps_done": 10,
           "total_steps": 10, "attempts": 1}  # fmt: skip
    curve = [{"eval_index": i, "step": 5 * (i + 1), "fraction": (i + 1) / 2, "val_metric": 60.0 + i} for i in range(2)]
    return row, curve


def test_round_trip_and_schema(tmp_path: Path):
    for seed in range(3):
        store.write_run(tmp_path, *_run(seed))
    runs = store.load_runs(tmp_path)
    assert list(runs.columns) == list(store.RUN_COLUMNS)
    assert len(runs) == 3 and set(runs["status"]) == {"done"}
    curves = store.load_curves(tmp_path)
    assert len(curves) == 6 and list(curves.columns) == list(store.CURVE_COLUMNS)
    assert store.stored_run_ids(tmp_path) == set(runs["run_id"])


def test_rewrite_replaces_not_duplicates(tmp_path: Path):
    row, curve = _run(1, status="stopped", score=50.0)
    store.write_run(tmp_path, row, curve)
    store.write_run(tmp_path, {**row, "status": "done", "score": 80.0}, curve)
    runs = store.load_runs(tmp_path)
    assert len(runs) == 1 and runs.loc[0, "score"] == 80.0


def test_no_temporary_files_left_and_orphan_curves_hidden(tmp_path: Path):
    row, curve = _run(1)
    store.write_run(tmp_path, row, curve)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    # A crash between the curve and the run part leaves an orphan curve: not a stored run.
    orphan_row, orphan_curve = _run(2)
    orphan = store._frame([{**p, "run_id": orphan_row["run_id"]} for p in orphan_curve], store.CURVE_COLUMNS)
    store.write_parquet_atomic(orphan, tmp_path / "curves" / f"{orphan_row['run_id']}.parquet")
    assert store.stored_run_ids(tmp_path) == {row["run_id"]}
    assert set(store.load_curves(tmp_path)["run_id"]) == {row["run_id"]}


def test_bad_status_and_unknown_columns_are_refused(tmp_path: Path):
    row, curve = _run(1)
    with pytest.raises(store.StoreError, match="status 'ok'"):
        store.write_run(tmp_path, {**row, "status": "ok"}, curve)
    with pytest.raises(store.StoreError, match=r"unknown column\(s\) \['accuracy'\]"):
        store.write_run(tmp_path, {**row, "accuracy": 1.0}, curve)


def test_failed_row_keeps_error_and_empty_store_loads(tmp_path: Path):
    assert store.load_runs(tmp_path).empty and store.stored_run_ids(tmp_path) == set()
    spec = RunSpec(task="rte", model="m", recipe=Recipe(), init_seed=1, order_seed=1)
    store.write_run(tmp_path, failed_row(spec, "Traceback ... boom", attempts=3), [])
    runs = store.load_runs(tmp_path)
    assert runs.loc[0, "status"] == "failed" and "boom" in runs.loc[0, "error"] and math.isnan(runs.loc[0, "score"])
    store.write_events(tmp_path, [{"run_id": spec.run_id, "kind": "retry", "message": "attempt 2"}])
    assert store.load_events(tmp_path).loc[0, "kind"] == "retry"


def test_snapshot_tracks_new_rewritten_and_deleted_parts(tmp_path: Path):
    rows = {seed: _run(seed) for seed in range(4)}
    for seed in range(3):
        store.write_run(tmp_path, *rows[seed])
    assert len(store.load_runs(tmp_path)) == 3 and len(store.load_curves(tmp_path)) == 6
    assert (tmp_path / "runs.parquet").is_file() and (tmp_path / "curves.parquet").is_file()
    # New part after the snapshot: picked up.
    store.write_run(tmp_path, *rows[3])
    # Rewritten part: its new row replaces the snapshot's (same size would hide a same-second rewrite
    # only if mtime_ns also matched, which a rename never gives).
    row0, curve0 = rows[0]
    store.write_run(tmp_path, {**row0, "score": 11.0}, curve0[:1])
    # Deleted part: its rows leave the table.
    gone = rows[1][0]["run_id"]
    (tmp_path / "runs" / f"{gone}.parquet").unlink()
    (tmp_path / "curves" / f"{gone}.parquet").unlink()
    runs = store.load_runs(tmp_path).set_index("run_id")
    assert len(runs) == 3 and gone not in runs.index and runs.loc[row0["run_id"], "score"] == 11.0
    curves = store.load_curves(tmp_path)
    assert len(curves) == 2 + 1 + 2 and (curves.groupby("run_id")["eval_index"].is_monotonic_increasing).all()
    # The snapshot is derived data: a corrupt one is rebuilt from the parts.
    (tmp_path / "runs.parquet").write_bytes(b"not parquet")
    assert store.load_runs(tmp_path).set_index("run_id").equals(runs)


def _schema_version(path: Path) -> bytes | None:
    import pyarrow.parquet as pq

    return (pq.read_schema(path).metadata or {}).get(store.SCHEMA_VERSION_KEY)


def test_every_part_carries_the_schema_version(tmp_path: Path):
    row, curve = _run(1)
    store.write_run(tmp_path, row, curve)
    store.write_events(tmp_path, [{"run_id": row["run_id"], "kind": "k", "message": "m"}])
    store.write_parquet_atomic(store.load_runs(tmp_path), tmp_path / "analysis" / "summary.parquet")
    parts = [*tmp_path.glob("*/*.parquet"), tmp_path / "runs.parquet"]
    assert {p.parent.name for p in parts} >= {"runs", "curves", "events", "analysis"}
    assert all(_schema_version(p) == str(store.SCHEMA_VERSION).encode() for p in parts)


@pytest.mark.parametrize("table", ["runs", "curves", "events"])
def test_a_part_of_an_unknown_schema_version_is_a_clear_error(tmp_path: Path, table: str):
    import pyarrow.parquet as pq

    row, curve = _run(1)
    store.write_run(tmp_path, row, curve)
    store.write_events(tmp_path, [{"run_id": row["run_id"], "kind": "k", "message": "m"}])
    part = next((tmp_path / table).glob("*.parquet"))
    t = pq.read_table(part)
    pq.write_table(t.replace_schema_metadata({**t.schema.metadata, store.SCHEMA_VERSION_KEY: b"99"}), part)
    load = {"runs": store.load_runs, "curves": store.load_curves, "events": store.load_events}[table]
    with pytest.raises(store.StoreError, match=rf"{part.name}.*schema version 99.*newer harness"):
        load(tmp_path)


def test_a_part_without_a_version_is_read_as_version_1(tmp_path: Path):
    row, curve = _run(1)
    store.write_run(tmp_path, row, curve)
    part = tmp_path / "runs" / f"{row['run_id']}.parquet"
    store.load_runs(tmp_path).to_parquet(part, index=False)  # as written before parts had a version
    (tmp_path / "runs.parquet").unlink()
    assert _schema_version(part) is None
    runs = store.load_runs(tmp_path)
    assert len(runs) == 1 and runs.loc[0, "run_id"] == row["run_id"]


def test_parts_written_before_the_phases_column_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    old_schema = {k: v for k, v in store.RUN_COLUMNS.items() if k != "phases"}
    monkeypatch.setattr(store, "RUN_COLUMNS", old_schema)
    store.write_run(tmp_path, *_run(1))
    monkeypatch.undo()
    old_id = _run(1)[0]["run_id"]
    assert store.load_runs(tmp_path)["phases"].isna().all()  # a store holding only old parts
    row, curve = _run(2)
    store.write_run(tmp_path, {**row, "phases": '{"train": 1.5}'}, curve)
    for _ in range(2):  # from the parts, then through the snapshot
        runs = store.load_runs(tmp_path).set_index("run_id")
        assert list(runs.columns) == list(store.RUN_COLUMNS)[1:]
        assert runs["phases"].isna()[old_id] and runs["phases"][row["run_id"]] == '{"train": 1.5}'
