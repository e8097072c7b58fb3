"""`harness import`: external run logs become ordinary store runs (harness/importer/)."""

from __future__ import annotations

import json
import math
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from import_data import run_rows, write_csv, write_runs_csv

from harness.analysis.seeds.degenerate import is_degenerate
from harness.cli import main, resolve_experiment_dir
from harness.importer import ImportFileError, ImportOptions, import_runs, imported_run_ids, imported_status
from harness.storage.store import RUN_COLUMNS, load_curves, load_runs, stored_run_ids

MAP = {"dev_best": "best", "dev_last": "last"}
REQUIRED = [c for c, t in RUN_COLUMNS.items() if t in ("string", "int64") and c not in ("error", "device")]


def _opts(name: str = "theirs", **kw) -> ImportOptions:
    return ImportOptions(name=name, **{"mapping": MAP, "select": "best", "missing": "diverged", **kw})


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    return write_runs_csv(tmp_path, seeds=4)  # 48 runs: 4 tasks x 3 recipes x 4 seeds


def test_rows_become_complete_native_parts(tmp_path: Path, small: tuple[Path, Path]) -> None:
    summary = import_runs(small[0], tmp_path / "results", _opts())
    runs = load_runs(tmp_path / "results" / "theirs")
    assert summary.runs == len(runs) == 48 and runs["run_id"].is_unique
    assert runs[REQUIRED].notna().all().all()
    source = pd.read_csv(small[0])
    empty = source["dev_best"].isna()
    assert (runs["status"] == "diverged").sum() == empty.sum() and runs.loc[
        runs.status == "diverged", "score"
    ].isna().all()
    row = runs[(runs.task == "rte") & (runs.recipe == "reinit") & (runs.init_seed == 2)].iloc[0]
    src = source[(source.task == "rte") & (source.condition == "reinit") & (source.seed == 2)].iloc[0]
    assert row.score == pytest.approx(src.dev_best) and row.val_final == pytest.approx(src.dev_last)
    assert (row.majority_val, row.metric, row.config_key, row.experiment) == (52.7, "accuracy", "rte/reinit", "theirs")
    spec = json.loads(row.spec)
    assert spec["recipe"] == {"name": "reinit", "lr": 2e-05, "select": "best"}  # select where native runs keep it
    assert spec["extra"]["gpu_hours"] == float(src.gpu_hours)
    prov = json.loads(row.provenance)
    assert prov["file"] == str(small[0].resolve()) and len(prov["sha256"]) == 64 and prov["line"] > 1
    assert prov["flags"]["missing"] == "diverged" and prov["select"] == "best"


def test_reimport_is_idempotent(tmp_path: Path, small: tuple[Path, Path]) -> None:
    root = tmp_path / "results"
    import_runs(small[0], root, _opts())
    first = load_runs(root / "theirs")
    import_runs(small[0], root, _opts())
    again = load_runs(root / "theirs")
    assert len(stored_run_ids(root / "theirs")) == 48
    assert list(again["run_id"]) == list(first["run_id"]) and again["score"].equals(first["score"])
    assert imported_run_ids(root / "theirs") == set(first["run_id"])


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet"])
def test_every_format_gives_the_same_runs(tmp_path: Path, fmt: str) -> None:
    rows = run_rows(seeds=2)
    csv_path = write_csv(tmp_path / "runs.csv", rows)
    frame = pd.read_csv(csv_path)
    other = tmp_path / f"runs.{fmt}"
    if fmt == "tsv":
        write_csv(other, rows, delimiter="\t")
    elif fmt == "jsonl":
        frame.to_json(other, orient="records", lines=True)
    else:
        frame.to_parquet(other)
    a = load_runs_after(import_runs(csv_path, tmp_path / "a", _opts()).exp_dir)
    b = load_runs_after(import_runs(other, tmp_path / "b", _opts()).exp_dir)
    assert list(a["run_id"]) == list(b["run_id"])
    pd.testing.assert_series_equal(a["score"], b["score"])


def load_runs_after(exp_dir: Path) -> pd.DataFrame:
    return load_runs(exp_dir)


def test_long_format_equals_wide(tmp_path: Path) -> None:
    rows = run_rows(seeds=2)
    wide = write_csv(tmp_path / "wide.csv", rows)
    long = [
        {"task": r["task"], "condition": r["condition"], "seed": r["seed"], "measure": m, "value": r[col]}
        for r in rows
        for m, col in (("best", "dev_best"), ("last", "dev_last"), ("majority", "majority"))
    ]
    long_path = write_csv(tmp_path / "long.csv", long)
    a = load_runs(import_runs(wide, tmp_path / "a", _opts()).exp_dir)
    b = load_runs(import_runs(long_path, tmp_path / "b", _opts(mapping={})).exp_dir)
    assert list(a["run_id"]) == list(b["run_id"])
    pd.testing.assert_series_equal(a["score"], b["score"])
    pd.testing.assert_series_equal(a["majority_val"], b["majority_val"])


def test_missing_scores_must_be_explained(tmp_path: Path, small: tuple[Path, Path]) -> None:
    with pytest.raises(ImportFileError, match=r"runs.csv: line 38 have no score in column 'val_best'.*--missing"):
        import_runs(small[0], tmp_path, _opts(missing=None))
    assert import_runs(small[0], tmp_path, _opts("drop", missing="drop")).runs == 47
    failed = load_runs(import_runs(small[0], tmp_path, _opts("fail", missing="failed")).exp_dir)
    assert (failed["status"] == "failed").sum() == 1


def test_best_or_final_is_an_explicit_choice(tmp_path: Path, small: tuple[Path, Path]) -> None:
    with pytest.raises(ImportFileError, match=r"both best and final.*--select best\|final"):
        import_runs(small[0], tmp_path, _opts(select=None))
    final = load_runs(import_runs(small[0], tmp_path, _opts("f", select="final")).exp_dir)
    done = final[final.status == "done"]
    assert (done["score"] == done["val_final"]).all() and not (done["score"] == done["val_best"]).all()
    assert json.loads(done["provenance"].iloc[0])["select"] == "final"
    assert tomllib.loads((tmp_path / "f" / "experiment.toml").read_text())["select"] == "final"


def test_bad_input_names_row_column_and_fix(tmp_path: Path) -> None:
    rows = run_rows(seeds=2)
    path = write_csv(tmp_path / "r.csv", [{k: v for k, v in r.items() if k != "condition"} for r in rows])
    with pytest.raises(ImportFileError, match=r"missing column\(s\) \['recipe'\].*--map COLUMN=FIELD"):
        import_runs(path, tmp_path, _opts())
    bad = [dict(r) for r in rows]
    bad[3]["seed"] = "three"
    with pytest.raises(ImportFileError, match=r"r.csv: line 5, column 'seed': 'three' is not a number"):
        import_runs(write_csv(tmp_path / "r.csv", bad), tmp_path, _opts())
    dup = [dict(r) for r in rows]
    dup[1]["seed"] = dup[0]["seed"]
    with pytest.raises(ImportFileError, match=r"lines 2, 3 are the same run .*sample_seed"):
        import_runs(write_csv(tmp_path / "r.csv", dup), tmp_path, _opts())
    with pytest.raises(ImportFileError, match=r"--map names column\(s\) \['nope'\]"):
        import_runs(write_csv(tmp_path / "r.csv", rows), tmp_path, _opts(mapping={**MAP, "nope": "score"}))
    odd = [dict(r, status="crashed") for r in rows]
    with pytest.raises(ImportFileError, match=r"line 2, column 'status': 'crashed' is not one of done"):
        import_runs(write_csv(tmp_path / "r.csv", odd), tmp_path, _opts())
    with pytest.raises(ImportFileError, match="unknown file type"):
        import_runs(tmp_path / "r.xlsx", tmp_path, _opts())


def test_fraction_scores_are_put_on_the_x100_scale(tmp_path: Path) -> None:
    rows = [{"task": "rte", "recipe": "a", "seed": s, "acc": 0.6 + s / 100, "majority": 0.527} for s in (1, 2, 3)]
    exp = import_runs(write_csv(tmp_path / "r.csv", rows), tmp_path, ImportOptions("x", mapping={"acc": "score"}))
    runs = load_runs(exp.exp_dir).sort_values("init_seed")
    assert runs["score"].tolist() == pytest.approx([61.0, 62.0, 63.0]) and exp.factor == 100
    assert runs["majority_val"].tolist() == pytest.approx([52.7] * 3)


def test_degenerate_bars_from_flags_columns_or_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    empty = tmp_path / "nodata"
    empty.mkdir()
    rows = [{"task": "rte", "recipe": "a", "seed": s, "score": v} for s, v in ((1, 50.0), (2, 60.0), (3, 70.0))]
    path = write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(ImportFileError, match=r"task 'rte' has no degenerate bar: give --threshold rte=VALUE"):
        import_runs(path, tmp_path, ImportOptions("x", data_dir=str(empty)))
    exp = import_runs(path, tmp_path, ImportOptions("x", thresholds={"rte": 60.0}, data_dir=str(empty)))
    exp_dir, spec = resolve_experiment_dir("x", tmp_path)
    assert spec is not None and dict(spec.degenerate_threshold) == {"rte": 60.0}
    runs = load_runs(exp_dir).sort_values("init_seed")
    assert is_degenerate(runs, spec.degenerate_threshold).tolist() == [True, True, False]
    assert exp.bars == {"rte": "--threshold 60"}
    custom = [{"task": "mine", "recipe": "a", "seed": 1, "score": 3.0}]
    with pytest.raises(ImportFileError, match=r"task 'mine' is not built in; give --metric NAME"):
        import_runs(write_csv(tmp_path / "c.csv", custom), tmp_path, ImportOptions("c"))
    import_runs(write_csv(tmp_path / "c.csv", custom), tmp_path, ImportOptions("c", metric="spearman"))
    assert resolve_experiment_dir("c", tmp_path)[1].tasks == ("mine",)  # the experiment file parses


@pytest.mark.real
def test_builtin_task_bar_is_the_dev_majority_of_the_glue_data(tmp_path: Path, glue_dir: Path) -> None:
    rows = [{"task": "rte", "recipe": "a", "seed": s, "score": 60.0 + s} for s in (1, 2)]
    exp = import_runs(write_csv(tmp_path / "r.csv", rows), tmp_path, ImportOptions("x", data_dir=str(glue_dir)))
    majority = load_runs(exp.exp_dir)["majority_val"]
    assert majority.tolist() == pytest.approx([100 * 146 / 277] * 2, abs=0.01)  # RTE dev: 146 of 277 entailment
    assert "majority class of the rte dev set (277 examples)" in exp.bars["rte"]


def test_curves_are_matched_to_runs_and_get_fractions(tmp_path: Path, small: tuple[Path, Path]) -> None:
    exp = import_runs(small[0], tmp_path, _opts(curves=str(small[1])))
    curves = load_curves(exp.exp_dir)
    runs = load_runs(exp.exp_dir)
    assert exp.curve_points == len(curves) == 10 * (runs["status"] == "done").sum()
    one = curves[curves["run_id"] == runs[runs.status == "done"]["run_id"].iloc[0]]
    assert one["eval_index"].tolist() == list(range(10)) and one["fraction"].tolist() == pytest.approx(
        [i / 10 for i in range(1, 11)]
    )
    stray = pd.read_csv(small[1])
    stray.loc[5, "seed"] = 99
    stray.to_csv(tmp_path / "stray.csv", index=False)
    with pytest.raises(ImportFileError, match=r"stray.csv: line 7 matches no run .*seed 99"):
        import_runs(small[0], tmp_path, _opts("y", curves=str(tmp_path / "stray.csv")))


def test_status_calls_imported_runs_done_not_pending(tmp_path: Path, small, capsys) -> None:
    import_runs(small[0], tmp_path, _opts())
    status = imported_status(tmp_path / "theirs")
    assert status["total"].sum() == 48 and status["pending"].sum() == 0
    assert list(status["task"].unique()) == ["rte", "mrpc", "cola", "stsb"]
    assert main(["--results", str(tmp_path), "status", "theirs"]) == 0
    assert "pending 0" in capsys.readouterr().out
    assert main(["--results", str(tmp_path), "run", str(tmp_path / "theirs" / "experiment.toml")]) == 2
    assert "imported runs" in capsys.readouterr().err


def test_cli_import_flags(tmp_path: Path, small, capsys) -> None:
    args = ["--results", str(tmp_path), "import", str(small[0]), "--name", "cli", "--map", "dev_best=best",
            "--map", "dev_last=last", "--select", "final", "--missing", "drop", "--threshold", "stsb=20",
            "--curves", str(small[1])]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "imported 47 run(s)" in out and "1 row(s) dropped" in out and "stsb: --threshold 20" in out
    assert main([*args[:-2], "--threshold", "stsb=high"]) == 2
    assert "each value must be a number" in capsys.readouterr().err
    assert main([*args[:3], str(tmp_path / "missing.csv"), *args[4:]]) == 2
    assert "missing.csv: file not found" in capsys.readouterr().err
    (tmp_path / "native" / "runs").mkdir(parents=True)
    (tmp_path / "native" / "runs" / "abc.parquet").write_bytes(b"")
    assert main([*args[:5], "native", *args[6:]]) == 2  # never mixed into a native experiment
    assert "holds runs of a native experiment" in capsys.readouterr().err
    assert math.isfinite(load_runs(tmp_path / "cli")["score"].max())
