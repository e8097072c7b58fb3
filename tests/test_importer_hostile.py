"""Hostile import files: values that would corrupt a table are one-line errors naming line and column, and an
import is one atomic part per table that an interrupt cannot leave half-written."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from import_data import run_rows, write_csv, write_runs_csv

from harness import importer
from harness.cli import main
from harness.importer import ImportFileError, ImportOptions, import_runs, imported_run_ids, is_imported
from harness.storage import store
from harness.storage.export import export_runs
from harness.storage.store import load_curves, load_runs, stored_run_ids, write_run

MAP = {"dev_best": "best", "dev_last": "last"}


def _opts(name: str = "theirs", **kw) -> ImportOptions:
    return ImportOptions(name=name, **{"mapping": MAP, "select": "best", "missing": "diverged", **kw})


def _rows(**changes: object) -> list[dict]:
    """A small clean log (4 tasks x 3 recipes x 2 seeds); `changes` set fields of its fourth row (line 5)."""
    rows = [{**r, **{k: "" for k in changes if k not in r}} for r in run_rows(seeds=2)]
    rows[3] = {**rows[3], **changes}
    return rows


@pytest.mark.parametrize(
    ("changes", "column", "says"),
    [
        ({"dev_best": "inf"}, "dev_best", "is not finite"),
        ({"dev_best": "-inf"}, "dev_best", "is not finite"),
        ({"dev_best": "1e999"}, "dev_best", "is not finite"),
        ({"dev_best": "1e308"}, "dev_best", "outside [0, 100]"),
        ({"dev_last": "-1e308"}, "dev_last", "outside [0, 100]"),
        ({"majority": "250"}, "majority", "outside [0, 100]"),
        ({"seed": "-3"}, "seed", "outside [0, 9223372036854775807]"),
        ({"seed": str(2**64)}, "seed", "outside [0, 9223372036854775807]"),
        ({"dev_best": "0.80"}, "dev_best", "looks like a fraction, but the file's scores are percentages"),
        ({"condition": "std\u202eard"}, "condition", "invisible or control character(s) U+202E"),
        ({"wall_time_s": "-5"}, "wall_time_s", "outside [0, inf]"),
    ],
    ids=["inf", "-inf", "overflow", "1e308", "-1e308", "majority", "negative-seed", "seed-2^64", "fraction", "rtl",
         "negative-time"],
)  # fmt: skip
def test_a_value_that_would_corrupt_a_table_is_one_line_naming_line_and_column(
    tmp_path: Path, changes: dict, column: str, says: str
):
    path = write_csv(tmp_path / "r.csv", _rows(**changes))
    with pytest.raises(ImportFileError) as info:
        import_runs(path, tmp_path / "results", _opts())
    message = str(info.value)
    assert message.startswith(f"{path}: line 5, column '{column}': ") and says in message and "\n" not in message
    assert not (tmp_path / "results").exists()  # checked before anything is written


def test_a_fraction_among_percentages_imports_with_the_explicit_flag(tmp_path: Path):
    path = write_csv(tmp_path / "r.csv", _rows(dev_best="0.80"))
    runs = load_runs(import_runs(path, tmp_path, _opts(score_scale="100")).exp_dir)
    assert 0.8 in runs["val_best"].tolist()  # 0.80 % as the flag says, not a silent guess


@pytest.mark.parametrize(
    ("change", "column", "says"),
    [
        ({"global_step": "-100"}, "global_step", "outside [0, "),
        ({"dev": "nan"}, "dev", "empty or NaN"),
        ({"dev": "1e308"}, "dev", "outside [0, 100]"),
        ({"dev": "inf"}, "dev", "is not finite"),
    ],
    ids=["negative-step", "nan", "1e308", "inf"],
)
def test_a_bad_curve_point_is_one_line_naming_line_and_column(tmp_path: Path, change: dict, column: str, says: str):
    runs_csv, curves_csv = write_runs_csv(tmp_path, seeds=2)
    curves = pd.read_csv(curves_csv, dtype=str)
    for key, value in change.items():
        curves.loc[2, key] = value  # line 4 of the file
    curves.to_csv(curves_csv, index=False)
    with pytest.raises(ImportFileError) as info:
        import_runs(runs_csv, tmp_path / "results", _opts(curves=str(curves_csv)))
    assert str(info.value).startswith(f"{curves_csv}: line 4, column '{column}': ") and says in str(info.value)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["bad\0name", "a\nb", "x" * 300, "tab\there"])
def test_an_import_name_that_is_no_plain_folder_is_refused(tmp_path: Path, name: str):
    path = write_csv(tmp_path / "r.csv", _rows())
    with pytest.raises(ImportFileError, match=r"--name .* it names the results folder"):
        import_runs(path, tmp_path / "results", _opts(name))
    assert not (tmp_path / "results").exists()


def test_one_part_per_table_per_import_and_the_store_reads_it(tmp_path: Path):
    runs_csv, curves_csv = write_runs_csv(tmp_path, seeds=4)
    root = tmp_path / "results"
    summary = import_runs(runs_csv, root, _opts(curves=str(curves_csv)))
    exp = root / "theirs"
    for table in ("runs", "curves", "events"):
        assert [p.name for p in (exp / table).iterdir()] == ["import.batch.parquet"], table
    runs = load_runs(exp)
    assert len(runs) == summary.runs == 48 and runs["run_id"].is_unique
    assert stored_run_ids(exp) == imported_run_ids(exp) == set(runs["run_id"])
    assert len(load_curves(exp)) == summary.curve_points
    path, table = export_runs(exp, "csv")
    assert len(table) == 48 and len(pd.read_csv(path)) == 48
    assert main(["--results", str(root), "analyze", "theirs"]) == 0
    summary_table = pd.read_parquet(exp / "analysis" / "summary.parquet")
    assert summary_table["n"].sum() == (runs["status"] != "failed").sum()  # every run counted once


def test_reimport_replaces_the_batch_and_the_parts_of_older_imports(tmp_path: Path):
    root = tmp_path / "results"
    rows = _rows()
    legacy = {**load_runs(import_runs(write_csv(tmp_path / "r.csv", rows), root, _opts()).exp_dir).iloc[0]}
    legacy = {k: (None if pd.isna(v) else v) for k, v in legacy.items()}
    write_run(root / "theirs", {**legacy, "run_id": "imp-0123456789abcdef"}, [])  # one-part-per-row layout
    fewer = [r for r in rows if r["task"] != "cola"]
    import_runs(write_csv(tmp_path / "r.csv", fewer), root, _opts())
    runs = load_runs(root / "theirs")
    assert len(runs) == len(fewer) and "cola" not in set(runs["task"])
    assert [p.name for p in (root / "theirs" / "runs").iterdir()] == ["import.batch.parquet"]


def test_an_interrupted_import_is_refused_in_one_line_and_the_same_import_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    runs_csv, curves_csv = write_runs_csv(tmp_path, seeds=4)
    args = ["--results", str(tmp_path / "results"), "import", str(runs_csv), "--name", "theirs", "--curves",
            str(curves_csv), "--map", "dev_best=best", "--map", "dev_last=last", "--select", "best", "--missing",
            "diverged"]  # fmt: skip
    real = store.write_parquet_atomic
    calls = {"n": 0}

    def full_after_two(frame: pd.DataFrame, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(frame, path)

    monkeypatch.setattr(store, "write_parquet_atomic", full_after_two)
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: disk full")
    exp = tmp_path / "results" / "theirs"
    assert is_imported(exp)  # an import's folder, not a native experiment that blocks the next import
    for command in (["analyze", "theirs"], ["report", "theirs"], ["status", "theirs"]):
        assert main(["--results", str(tmp_path / "results"), *command]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "did not finish" in err and "harness import` again" in err
    monkeypatch.setattr(store, "write_parquet_atomic", real)
    assert main(args) == 0
    assert "imported 48 run(s)" in capsys.readouterr().out
    assert len(load_runs(exp)) == 48 and main(["--results", str(tmp_path / "results"), "status", "theirs"]) == 0


def test_a_damaged_import_record_does_not_block_the_import_that_rebuilds_it(tmp_path: Path, capsys):
    path = write_csv(tmp_path / "r.csv", _rows())
    import_runs(path, tmp_path, _opts())
    (tmp_path / "theirs" / "experiment.json").write_text("{")
    assert is_imported(tmp_path / "theirs")
    assert main(["--results", str(tmp_path), "report", "theirs"]) == 2
    assert "experiment.json is damaged" in capsys.readouterr().err
    assert import_runs(path, tmp_path, _opts()).runs == 24


def test_the_row_limit_is_stated_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(importer, "MAX_ROWS", 10)
    path = write_csv(tmp_path / "r.csv", _rows())
    with pytest.raises(ImportFileError, match=r"r.csv: 24 rows; at most 10 per import"):
        import_runs(path, tmp_path, _opts())
