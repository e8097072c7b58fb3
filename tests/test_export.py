"""`harness export` and reading the store without the harness (pandas, DuckDB)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.experiment.spec import Recipe, RunSpec
from harness.storage.export import ExportError, export_runs
from harness.storage.records import base_row
from harness.storage.store import RUN_COLUMNS, load_runs, write_run


def _store(root: Path) -> Path:
    """Three runs as the driver writes them (base_row of a RunSpec, so the spec JSON is the real one)."""
    exp_dir = root / "demo"
    for seed, recipe in ((1, Recipe("standard")), (2, Recipe("standard")), (1, Recipe("reinit", reinit_layers=2))):
        spec = RunSpec(task="rte", model="packaged", recipe=recipe, init_seed=seed, order_seed=seed, experiment="demo")
        prov = json.dumps({"git_sha": "abc", "torch": "2.13"})
        row = {**base_row(spec), "status": "done", "metric": "accuracy", "score": 60.0 + seed, "steps_done": 10,
               "total_steps": 10, "attempts": 1, "provenance": prov}  # fmt: skip
        write_run(exp_dir, row, [{"eval_index": 0, "step": 10, "fraction": 1.0, "val_metric": 60.0 + seed}])
    return exp_dir


def test_export_flattens_spec_and_provenance(tmp_path: Path) -> None:
    exp_dir = _store(tmp_path)
    path, table = export_runs(exp_dir, "csv")
    back = pd.read_csv(path)
    assert path == exp_dir / "export" / "runs.csv" and len(back) == 3
    assert "spec" not in back and "provenance" not in back
    for col in ("recipe.lr", "recipe.bias_correction", "recipe.reinit_layers", "eval_protocol", "num_evals",
                "provenance.git_sha", *(c for c in RUN_COLUMNS if c not in ("spec", "provenance"))):  # fmt: skip
        assert col in back.columns, col
    assert "recipe.name" not in back and "task.1" not in back  # no duplicated run columns
    reinit = back[back["recipe"] == "reinit"].iloc[0]
    assert (reinit["recipe.reinit_layers"], reinit["recipe.lr"], reinit["provenance.git_sha"]) == (2, 2e-5, "abc")
    parquet, _ = export_runs(exp_dir, "parquet", tmp_path / "flat.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(parquet).reset_index(drop=True), table.reset_index(drop=True))


def test_export_errors_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp_dir = _store(tmp_path)
    with pytest.raises(ExportError, match=r"should end in \.csv"):
        export_runs(exp_dir, "csv", tmp_path / "x.parquet")
    assert main(["--results", str(tmp_path), "export", "demo", "--format", "parquet"]) == 0
    out = capsys.readouterr().out
    assert "3 run(s)" in out and "recipe.lr" in out
    assert main(["--results", str(tmp_path), "export", "nothing"]) == 2


def test_store_reads_with_pandas_and_duckdb_as_the_readme_shows(tmp_path: Path) -> None:
    exp_dir = _store(tmp_path)
    load_runs(exp_dir)  # refreshes the runs.parquet snapshot, as every harness command does
    runs = pd.read_parquet(exp_dir / "runs.parquet")  # README: pandas
    assert len(runs) == 3 and runs.groupby("recipe")["score"].mean()["standard"] == pytest.approx(61.5)
    duckdb = pytest.importorskip("duckdb", reason="optional: pip install -e '.[query]'")
    con = duckdb.connect()  # README: DuckDB over the parts (always current, no snapshot needed)
    parts = f"read_parquet('{exp_dir}/runs/*.parquet')"
    mean = con.execute(f"SELECT recipe, avg(score) FROM {parts} GROUP BY recipe ORDER BY recipe").fetchall()
    assert mean == [("reinit", 61.0), ("standard", 61.5)]
    lr = con.execute(f"SELECT json_extract(spec, '$.recipe.lr')::DOUBLE FROM {parts} LIMIT 1").fetchall()[0][0]
    assert math.isclose(lr, 2e-5)
