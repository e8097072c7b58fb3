"""Analysis, status and reports use exactly the runs of the spec they are given (its scale), not the folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.experiment.config import load_experiment
from harness.storage.records import base_row
from harness.storage.scope import remember_spec
from harness.storage.store import write_run

TOML = """
name = "scaled"
task = "rte"
model = "tiny-model"
data_dir = "{data}"
seeds = 3
[recipes.bertadam]
bias_correction = false
[scale.cpu]
model = "small-model"
[scale.paper]
model = "big-model"
"""


@pytest.fixture
def two_scales(tmp_path: Path, tiny_glue_dir: Path) -> tuple[Path, Path]:
    """One folder holding the same experiment at two scales: cpu runs score 60, paper runs score 70."""
    toml = tmp_path / "scaled.toml"
    toml.write_text(textwrap.dedent(TOML).format(data=tiny_glue_dir))
    results = tmp_path / "results"
    for scale, score in (("paper", 70.0), ("cpu", 60.0)):
        exp = load_experiment(toml, scale=scale)
        remember_spec(exp, results / "scaled", scale)
        for i, spec in enumerate(exp.runs):
            row = {**base_row(spec), "status": "done", "score": score + i - 1, "metric": "accuracy",
                   "steps_done": 1, "total_steps": 1, "attempts": 1}  # fmt: skip
            write_run(results / "scaled", row, [])
    return toml, results


def _summary(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "scaled" / "analysis" / "summary.parquet")


@pytest.mark.parametrize("by", ["name", "toml"])
def test_two_scales_in_one_folder_give_two_separate_tables(two_scales, by: str, capsys: pytest.CaptureFixture):
    toml, results = two_scales
    ref = "scaled" if by == "name" else str(toml)
    for scale, mean in (("cpu", 60.0), ("paper", 70.0)):
        assert main(["--results", str(results), "analyze", ref, "--scale", scale]) == 0
        summary = _summary(results)
        assert summary["n"].tolist() == [3] and summary["mean"].tolist() == [pytest.approx(mean)]
        assert "3 other run(s) in the folder are not this spec's" in capsys.readouterr().out
    assert main(["--results", str(results), "analyze", ref, "--all"]) == 0
    assert _summary(results)["n"].tolist() == [6]


def test_a_name_without_scale_uses_the_scale_of_the_last_run(two_scales):
    _, results = two_scales
    assert main(["--results", str(results), "analyze", "scaled"]) == 0  # cpu was run last
    assert _summary(results)["mean"].tolist() == [pytest.approx(60.0)]


def test_report_uses_only_the_spec_runs_and_says_how_many_others(two_scales):
    _, results = two_scales
    assert main(["--results", str(results), "report", "scaled", "--scale", "paper"]) == 0
    text = (results / "scaled" / "report" / "report.md").read_text()
    assert "from 3 stored runs" in text and "3 other run(s)" in text
    assert main(["--results", str(results), "report", "scaled", "--all"]) == 0
    assert "from 6 stored runs" in (results / "scaled" / "report" / "report.md").read_text()


def test_status_counts_only_the_spec_runs_and_the_others(two_scales, capsys: pytest.CaptureFixture):
    toml, results = two_scales
    assert main(["--results", str(results), "status", str(toml), "--scale", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "total: total 3, done 3" in out and "3 other run(s) in the folder" in out


def test_a_toml_is_identified_with_the_data_folder_its_runs_used(tmp_path: Path, tiny_glue_dir: Path, capsys):
    """Runs made with --data-dir are found by status/analyze of the TOML without repeating it."""
    toml = tmp_path / "scaled.toml"
    toml.write_text(textwrap.dedent(TOML).replace('data_dir = "{data}"\n', ""))
    results = tmp_path / "results"
    exp = load_experiment(toml, scale="cpu", data_dir=str(tiny_glue_dir))
    assert exp.runs[0].run_id != load_experiment(toml, scale="cpu").runs[0].run_id  # $HARNESS_DATA_DIR differs
    remember_spec(exp, results / "scaled", "cpu", str(tiny_glue_dir))
    for spec in exp.runs:
        row = {**base_row(spec), "status": "done", "score": 60.0, "metric": "accuracy", "steps_done": 1,
               "total_steps": 1, "attempts": 1}  # fmt: skip
        write_run(results / "scaled", row, [])
    assert main(["--results", str(results), "status", str(toml), "--scale", "cpu"]) == 0
    assert "total: total 3, done 3" in capsys.readouterr().out
    assert main(["--results", str(results), "analyze", str(toml)]) == 0
    assert _summary(results)["n"].tolist() == [3]
