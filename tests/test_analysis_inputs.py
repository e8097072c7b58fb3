"""Analysis tables are reused while their inputs' fingerprint matches, and recomputed when anything changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis import inputs, load_or_analyze, pipeline
from harness.analysis.synthetic import synthetic_runs, write_synthetic_store
from harness.storage.store import load_runs, write_run

FAST = {"n_boot": 50, "n_perm": 49}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template") / "exp"
    write_synthetic_store(folder, *synthetic_runs(n_init=3, n_order=3, n_evals=4, seed=2))
    return folder


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "exp")  # copies keep the parts' mtimes
    return tmp_path / "exp"


@pytest.fixture
def computed(monkeypatch):
    """Counts the analyses actually computed (not read back); each gives one small table of its inputs."""
    calls = []

    def analyze(runs, *args, **kwargs):
        calls.append(1)
        return {"summary": pd.DataFrame({"n": [len(runs)], "seed": [kwargs["seed"]]})}

    monkeypatch.setattr(pipeline, "analyze_runs", analyze)
    return calls


def test_unchanged_store_reuses_the_tables_as_written(store: Path):
    first = load_or_analyze(store, **FAST)
    again = load_or_analyze(store, **FAST)
    assert (first.reused, again.reused) == (False, True)
    assert set(again.tables) == set(first.tables) and "early_stopping" in again.tables
    for name, frame in first.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], pd.read_parquet(store / "analysis" / f"{name}.parquet"))
        assert again.tables[name].shape == frame.shape
    record = json.loads((store / "analysis" / inputs.INPUTS_FILE).read_text())
    assert record["inputs"]["n_parts"]["runs"] == 36 and record["inputs"]["code"] == inputs.code_version()


def _part(store: Path) -> Path:
    return sorted((store / "runs").glob("*.parquet"))[0]


@pytest.mark.parametrize(
    "change",
    [
        "touch a run part",
        "rewrite a curve part",
        "delete a run part",
        "add a run",
        "another option",
        "another scope",
        "another code version",
        "record removed (a crash while writing)",
    ],
)
def test_any_change_to_the_inputs_recomputes(store: Path, computed, change: str, monkeypatch):
    load_or_analyze(store, **FAST)
    options: dict = dict(FAST)
    if change == "touch a run part":
        stat = _part(store).stat()
        os.utime(_part(store), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    elif change == "rewrite a curve part":
        path = sorted((store / "curves").glob("*.parquet"))[0]
        frame = pd.read_parquet(path)
        frame["val_metric"] += 1.0
        frame.to_parquet(path, index=False)
    elif change == "delete a run part":
        _part(store).unlink()
    elif change == "add a run":
        row = pd.read_parquet(_part(store)).iloc[0].to_dict()
        write_run(store, {**row, "run_id": "new-run", "init_seed": 99}, [])
    elif change == "another option":
        options["seed"] = 1
    elif change == "another scope":
        options["run_ids"] = [p.stem for p in (store / "runs").glob("*.parquet")][:10]
    elif change == "another code version":
        monkeypatch.setattr(inputs, "code_version", lambda: "0" * 64)
    else:
        (store / "analysis" / inputs.INPUTS_FILE).unlink()
    again = load_or_analyze(store, **options)
    assert not again.reused and len(computed) == 2
    assert load_or_analyze(store, **options).reused and len(computed) == 2  # and then it is current again


def test_recompute_flag_and_a_missing_table_recompute(store: Path, computed):
    load_or_analyze(store, **FAST)
    assert not load_or_analyze(store, **FAST, reuse=False).reused
    (store / "analysis" / "summary.parquet").unlink()
    assert not load_or_analyze(store, **FAST).reused and len(computed) == 3


def test_tables_are_written_before_the_record(store: Path, monkeypatch):
    """A crash while the tables are written leaves no record, so the next analysis recomputes."""
    load_or_analyze(store, **FAST)
    monkeypatch.setattr(pipeline, "write_parquet_atomic", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        load_or_analyze(store, **FAST, reuse=False)
    assert not (store / "analysis" / inputs.INPUTS_FILE).exists()


def test_the_default_baseline_and_the_same_recipe_by_name_share_the_tables(store: Path, computed):
    """`harness analyze NAME` (no baseline) then `harness report NAME` (which names the first recipe): one analysis."""
    first_recipe = str(load_runs(store)["recipe"].iloc[0])  # runs load in run-id order
    load_or_analyze(store, **FAST)
    assert load_or_analyze(store, baseline=first_recipe, **FAST).reused and len(computed) == 1
    other = next(r for r in ("default", "better") if r != first_recipe)
    assert not load_or_analyze(store, baseline=other, **FAST).reused
