"""Faults in the store: bad parts are quarantined so the rest loads and the run is redone; read-only snapshots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness.storage import store
from harness.storage.store import (
    BadPartWarning,
    DuplicatePartWarning,
    load_curves,
    load_events,
    load_runs,
    stored_run_ids,
    write_batch,
    write_events,
    write_run,
)


def _run(run_id: str, score: float = 70.0) -> dict:
    return {"run_id": run_id, "experiment": "e", "task": "rte", "recipe": "a", "config_key": "rte/a",
            "init_seed": 1, "order_seed": 1, "sample_seed": 0, "status": "done", "metric": "accuracy",
            "score": score, "steps_done": 10, "total_steps": 10, "attempts": 1}  # fmt: skip


def _store(exp: Path, n: int = 3) -> None:
    for i in range(n):
        write_run(exp, _run(f"r{i}", 60.0 + i), [{"eval_index": 0, "step": 5, "fraction": 1.0, "val_metric": 50.0}])


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "foreign"])
def test_bad_run_part_is_quarantined_and_the_rest_loads(tmp_path: Path, damage: str):
    exp = tmp_path / "e"
    _store(exp)
    load_runs(exp)  # a snapshot exists: the bad part must still be caught when it changes
    part = exp / "runs" / "r1.parquet"
    if damage == "zero_bytes":
        part.write_bytes(b"")
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[:-40])
    else:
        pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}).to_parquet(part)
    with pytest.warns(BadPartWarning, match=r"r1.parquet"):
        runs = load_runs(exp)
    assert sorted(runs["run_id"]) == ["r0", "r2"]
    assert (exp / "quarantine" / "runs" / "r1.parquet").is_file() and not part.exists()
    assert stored_run_ids(exp) == {"r0", "r2"}  # so `harness run` runs r1 again
    assert len(load_curves(exp)) == 2


def test_resume_sees_a_zero_byte_part_as_not_stored(tmp_path: Path):
    exp = tmp_path / "e"
    _store(exp)
    (exp / "runs" / "r2.parquet").write_bytes(b"")
    with pytest.warns(BadPartWarning, match=r"r2.parquet"):
        assert stored_run_ids(exp) == {"r0", "r1"}


def test_foreign_parquet_among_events_is_quarantined(tmp_path: Path):
    exp = tmp_path / "e"
    write_events(exp, [{"run_id": "r0", "kind": "start", "message": "m"}])
    pd.DataFrame({"time": [math.pi]}).to_parquet(exp / "events" / "0-foreign.parquet")
    with pytest.warns(BadPartWarning, match="0-foreign.parquet"):
        assert list(load_events(exp)["kind"]) == ["start"]


def test_read_only_store_still_loads_when_snapshot_cleanup_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    exp = tmp_path / "e"
    _store(exp)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(args[0]) if args else "?")

    monkeypatch.setattr(store.pq, "write_table", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)  # a read-only folder refuses the cleanup too
    assert len(load_runs(exp)) == 3
    assert not (exp / "runs.parquet").exists()


# One run id is one run, whatever the file name -------------------------------------------------------------


def test_a_copy_of_a_part_under_another_name_counts_once(tmp_path: Path):
    exp = tmp_path / "e"
    _store(exp, n=8)
    load_runs(exp)  # a snapshot exists: the copy arrives later, as a sync tool would bring it
    for table in ("runs", "curves"):
        (exp / table / "r3 (conflicted copy).parquet").write_bytes((exp / table / "r3.parquet").read_bytes())
    with pytest.warns(DuplicatePartWarning, match=r"r3\.parquet, .*r3 \(conflicted copy\)\.parquet counts once"):
        runs = load_runs(exp)
    assert len(runs) == 8 and runs["run_id"].is_unique  # n = 8 of 8 seeds, not 9
    with pytest.warns(DuplicatePartWarning):
        assert len(load_curves(exp)) == 8
    assert stored_run_ids(exp) == {f"r{i}" for i in range(8)}
    with pytest.warns(DuplicatePartWarning):  # the snapshot keeps it counted once, and the warning stays
        assert len(load_runs(exp)) == 8


def test_the_original_wins_over_a_differing_copy_whatever_the_order(tmp_path: Path):
    exp = tmp_path / "e"
    _store(exp, n=2)
    write_run(tmp_path / "other", _run("r1", score=99.0), [])
    (exp / "runs" / "r1 2.parquet").write_bytes((tmp_path / "other" / "runs" / "r1.parquet").read_bytes())
    with pytest.warns(DuplicatePartWarning, match="from r1.parquet"):
        assert load_runs(exp).set_index("run_id").loc["r1", "score"] == 61.0  # the shortest name: the original


def test_a_batch_part_loads_and_its_replacement_leaves_no_stale_rows(tmp_path: Path):
    exp = tmp_path / "e"
    _store(exp, n=2)  # native parts beside the batch
    curve = [{"run_id": f"b{i}", "eval_index": 0, "step": 5, "fraction": 1.0, "val_metric": 50.0} for i in range(5)]
    write_batch(exp, "import.batch", [_run(f"b{i}", 70.0 + i) for i in range(5)], curve)
    assert sorted(load_runs(exp)["run_id"]) == ["b0", "b1", "b2", "b3", "b4", "r0", "r1"]
    assert len(load_curves(exp)) == 7 and stored_run_ids(exp) == {"b0", "b1", "b2", "b3", "b4", "r0", "r1"}
    write_batch(exp, "import.batch", [_run(f"b{i}", 80.0) for i in (0, 1, 9)], curve[:2])  # replaced as a whole
    runs = load_runs(exp)
    assert sorted(runs["run_id"]) == ["b0", "b1", "b9", "r0", "r1"] and set(
        runs.loc[runs.run_id.str[0] == "b", "score"]
    ) == {80.0}
    assert sorted(load_curves(exp)["run_id"]) == ["b0", "b1", "r0", "r1"]
    (exp / "runs.parquet").unlink()  # the same from the parts alone
    assert sorted(load_runs(exp)["run_id"]) == ["b0", "b1", "b9", "r0", "r1"]
