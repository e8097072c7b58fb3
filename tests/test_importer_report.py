"""Imported runs through `report`, `report --compare` (against native runs) and a [paper] section."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers (spawn) import fakes_schedule from here

from fakes_schedule import make_experiment
from import_data import write_runs_csv

from harness.cli import main, resolve_experiment_dir
from harness.importer import ImportOptions, import_runs
from harness.report import compare_report, write_report
from harness.schedule import run_experiment

PAPER = """
recipes = ["reinit", "standard"]
baseline = "standard"
degenerate_threshold = { stsb = 20.0 }

[paper]
source = "Someone et al. 2030, Table 2 (dev, 4 seeds)"
model = "bert-large-uncased"
seeds = 4

[paper.results.rte]
standard = { mean = 69.5, std = 2.5 }
reinit = { mean = 72.6, std = 1.6 }

[[paper.claims]]
claim = "Re-initialising the top layers improves the mean over Standard"
task = "rte"
a = "reinit"
b = "standard"
"""


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    runs, curves = write_runs_csv(tmp_path, seeds=4)
    (tmp_path / "paper.toml").write_text(PAPER)
    options = ImportOptions(
        name="theirs",
        mapping={"dev_best": "best", "dev_last": "last"},
        select="best",
        missing="diverged",
        curves=str(curves),
        paper=str(tmp_path / "paper.toml"),
        model="bert-large-uncased",
    )
    return import_runs(runs, tmp_path / "results", options).exp_dir


def test_report_on_imported_runs_has_recipes_curves_and_verdicts(imported: Path) -> None:
    exp_dir, spec = resolve_experiment_dir("theirs", imported.parent)
    assert spec is not None and spec.recipes[:2] == ("standard", "reinit")  # baseline first, then the order given
    assert dict(spec.degenerate_threshold) == {"stsb": 20.0}
    md = write_report(exp_dir, spec=spec, n_boot=200, n_perm=199, include=("early-stopping",)).read_text()
    assert "| reinit | lr=2e-05 |" in md  # the recipe table reads the spec JSON
    assert "## Paper vs ours" in md and "Someone et al. 2030" in md and "### Verdict per claim" in md
    assert "curves_rte.png" in md and "No curves stored" not in md
    early = md.split("## Early-stopping simulation")[1]
    assert "rte/standard" in early and "nothing to simulate" not in early
    assert "stsb: spearman < 20" in md  # the threshold from the paper file


def test_compare_imported_against_native_side_by_side(imported: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "0.05")
    native = make_experiment("native", 4, recipes=("standard", "reinit"))
    run_experiment(native, imported.parent, train_fn="fakes_schedule:sleepy", max_workers=2, progress=False)
    out = compare_report(imported, imported.parent / "native", n_boot=200, n_perm=199).read_text()
    assert "Configurations in common: rte/standard, rte/reinit" in out
    for config in ("rte/standard", "rte/reinit"):
        rows = [line for line in out.splitlines() if line.startswith(f"| {config} |") or f"| {config} " in line]
        assert any("theirs" in r for r in rows) and any("native" in r for r in rows), config
    assert main(["--results", str(imported.parent), "report", "--compare", "theirs", "native"]) == 0
