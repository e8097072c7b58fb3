"""Faults in the store: bad parts are quarantined so the rest loads and the run is redone; read-only snapshots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness.storage import store
from harness.storage.store import (
    BadPartWarning,
    load_curves,
    load_events,
    load_runs,
    stored_run_ids,
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
