"""The `harness` command end to end on a tiny model: run, status, analyze, report; errors exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.storage.store import load_runs


@pytest.fixture
def experiment(tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            name = "tiny"
            task = "rte"
            model = "{tiny_model_dir}"
            data_dir = "{tiny_glue_dir}"
            sample_size = 32
            eval_size = 20
            max_seq_length = 48
            num_evals = 3
            seeds = 3

            [defaults]
            lr = 1e-3
            epochs = 1
            batch_size = 8

            [recipes.bertadam]
            bias_correction = false
            [recipes.adam]
            """
        )
    )
    return path


def test_run_status_analyze_report(experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    results = tmp_path / "results"
    assert main(["--results", str(results), "run", str(experiment), "--quiet"]) == 0
    runs = load_runs(results / "tiny")
    assert len(runs) == 6 and set(runs["status"]) == {"done"}
    assert (results / "tiny" / "experiment.toml").is_file()
    # Resume: nothing left to do.
    assert main(["--results", str(results), "run", str(experiment), "--quiet"]) == 0
    assert "6 already stored" in capsys.readouterr().out
    assert main(["--results", str(results), "status", str(experiment)]) == 0
    assert "pending" in capsys.readouterr().out
    assert main(["--results", str(results), "analyze", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "bertadam" in out and (results / "tiny" / "analysis" / "summary.parquet").is_file()
    assert main(["--results", str(results), "report", str(experiment)]) == 0
    report = results / "tiny" / "report" / "report.md"
    assert report.is_file() and "adam" in report.read_text()
    assert (results / "tiny" / "report" / "report.html").is_file()


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntask = "rte"\nmodel = "m"\nseeds = 2\n[recipes.a]\nlr = "fast"\n')
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "field 'lr' = 'fast'" in err and "Traceback" not in err
    assert main(["--results", str(tmp_path), "report", "nothing-here"]) == 2
    assert "no stored runs" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_model_or_data_fails_before_any_run(experiment: Path, tmp_path: Path, capsys):
    text = experiment.read_text()
    no_model = tmp_path / "no_model.toml"
    no_model.write_text(text.replace('model = "', 'model = "/nonexistent'))
    assert main(["--results", str(tmp_path / "r"), "run", str(no_model)]) == 2
    assert "model directory /nonexistent" in capsys.readouterr().err
    no_data = tmp_path / "no_data.toml"
    no_data.write_text(text.replace('task = "rte"', 'task = "cola"'))
    assert main(["--results", str(tmp_path / "r"), "run", str(no_data)]) == 2
    assert "CoLA/train.tsv: missing" in capsys.readouterr().err
    assert not (tmp_path / "r" / "tiny" / "runs").exists()
