"""The committed reproduction reports stay regenerable and the experiment files say what they run: each
report's header names an experiment file and a scale that exist, every paper file keeps a GPU scale and
declares the paper's setting, a recipe's name never states another re-init depth than it runs, and a
description never names a task or a cloze/TAPT arm its scale does not run; a report's Files table and its
checkpoint caveat say what is there."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from harness.experiment.config import load_experiment
from harness.report.deviations import parse_setting
from harness.report.paper import parse_paper

ROOT = Path(__file__).resolve().parents[1]
REPORTS = sorted((ROOT / "docs" / "reproductions").glob("*/*/report.md"))
PAPER_FILES = sorted(
    p for d in ("zhang2021", "mosbach2021", "dodge2020", "survey") for p in (ROOT / "experiments" / d).glob("*.toml")
)
ALL_FILES = sorted((ROOT / "experiments").rglob("*.toml"))
# Reports committed before the publisher wrote every header line; they are regenerated with the current
# publisher once the runs are redone. Empty this set as each one is republished.
LEGACY_HEADERS = {
    "dodge2020/early_stopping", "dodge2020/seeds_grid", "mosbach2021/table1", "pilot/sst2-gpu",
    "zhang2021/reinit_layers",
}  # fmt: skip
HEADER_LINES = ("Regenerate:", "Scale `", "Model:", "Code:", "Wall time:", "Machine:")
TASK_NAMES = {"rte": "RTE", "mrpc": "MRPC", "cola": "CoLA", "stsb": "STS-B", "sst2": "SST-2", "qnli": "QNLI"}


def _id(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}"


def _scales(path: Path) -> list[str | None]:
    return [None, *sorted(tomllib.loads(path.read_text()).get("scale", {}))]


@pytest.mark.parametrize("report", REPORTS, ids=_id)
def test_each_report_names_a_command_whose_file_and_scale_exist(report: Path):
    head = " ".join(report.read_text().splitlines()[:6])
    found = re.search(r"`harness run (\S+\.toml) --scale (\w+)[^`]*`", head)
    assert found, f"{report}: no `harness run FILE --scale S` in its header"
    path, scale = ROOT / found.group(1), found.group(2)
    assert path.is_file(), f"{report}: {path} does not exist"
    assert scale in tomllib.loads(path.read_text()).get("scale", {}), f"{report}: {path} has no [scale.{scale}]"


@pytest.mark.parametrize("report", [r for r in REPORTS if _id(r) in LEGACY_HEADERS], ids=_id)
def test_each_report_not_republished_says_so_before_anything_else(report: Path):
    """A report the publisher has not rewritten with today's code and labels opens with a banner saying so."""
    assert report.read_text().startswith("> **Legacy report, not regenerated.**"), report


@pytest.mark.parametrize("report", [r for r in REPORTS if _id(r) not in LEGACY_HEADERS], ids=_id)
def test_each_republished_report_has_the_publishers_header(report: Path):
    head = report.read_text().split("\n\n", 1)[0].splitlines()
    assert [line.split(" ", 2)[2].split(" ")[0] for line in head] == [h.split(" ")[0] for h in HEADER_LINES]
    assert "plans exactly the" in head[0], f"{report}: its command does not plan exactly its runs"


@pytest.mark.parametrize("path", PAPER_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_paper_file_has_a_gpu_scale_and_declares_the_papers_setting(path: Path):
    data = tomllib.loads(path.read_text())
    assert "gpu" in data.get("scale", {})
    assert parse_paper(data["paper"]) is not None
    setting = parse_setting(data["paper"].get("setting"))
    assert setting is not None and setting.declares("model") and setting.declares("lr"), path


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_recipe_named_for_a_reinit_depth_runs_that_depth(path: Path):
    for scale in _scales(path):
        for run in load_experiment(path, scale=scale).runs:
            named = re.fullmatch(r"reinit(\d+)", run.recipe.name)
            if named:
                assert run.recipe.reinit_layers == int(named.group(1)), (path.name, scale, run.recipe.name)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_description_names_only_what_its_scale_runs(path: Path):
    for scale in _scales(path):
        spec = load_experiment(path, scale=scale)
        text = re.sub(r"\([^)]*left out[^)]*\)", "", spec.description)  # "(cloze and TAPT left out: ...)"
        for task, shown in TASK_NAMES.items():
            if re.search(rf"\b({re.escape(shown)}|{task})\b", text):
                assert task in spec.tasks, f"{path.name} at scale {scale}: the description names {shown}, not run"
        recipes = {r.recipe for r in spec.runs}
        if re.search(r"\bcloze\b", text, re.IGNORECASE):
            assert any(r.cloze for r in recipes), f"{path.name} at scale {scale}: names cloze, runs none"
        if re.search(r"\bTAPT\b", text):
            assert any(r.tapt_steps for r in recipes), f"{path.name} at scale {scale}: names TAPT, runs none"


def _testable_minutes() -> dict[str, float]:
    """Each committed testable-scale report's wall time in minutes, read off its header."""
    out = {}
    for report in REPORTS:
        head = " ".join(line.lstrip("> -") for line in report.read_text()[:1500].splitlines())
        if re.search(r"[Ss]cale `testable`", head):
            wall = re.search(r"Wall time: ([0-9,]+) s", head)
            assert wall, f"{report}: no wall time in its header"
            out[_id(report)] = int(wall.group(1).replace(",", "")) / 60
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/reproductions/README.md"])
def test_the_readmes_testable_wall_times_cover_the_measured_ones(doc: str):
    text = (ROOT / doc).read_text()
    stated = re.search(r"testable\]?`? (?:one )?\(2 CPU cores, (\d+)-(\d+) min", text)
    assert stated, f"{doc}: no '(2 CPU cores, X-Y min' for the testable scale"
    low, high = int(stated.group(1)), int(stated.group(2))
    minutes = _testable_minutes()
    assert minutes
    for report, m in minutes.items():
        assert low <= round(m) <= high, f"{doc} says {low}-{high} min; {report} took {m:.0f} min"


def test_there_are_reports_to_check():
    assert len(REPORTS) >= 6 and len(PAPER_FILES) >= 12


def test_the_readmes_verdict_tables_are_the_reports_own():
    """docs/reproductions/README.md's verdict block is generated from each report's verdicts.csv: never stale."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import reproductions_index

    text = reproductions_index.README.read_text()
    assert reproductions_index.updated(text) == text, "run python benchmarks/reproductions_index.py"


@pytest.mark.parametrize("report", REPORTS, ids=_id)
def test_no_report_names_a_path_of_the_machine_that_ran_it(report: Path):
    text = report.read_text()
    assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text, report


@pytest.mark.parametrize("report", REPORTS, ids=_id)
def test_each_reports_files_table_lists_exactly_the_committed_files(report: Path):
    files = report.read_text().partition("\n## Files\n")[2]
    listed = set(re.findall(r"^\| `([^`]+)` \|", files, flags=re.M))
    assert listed == {p.name for p in report.parent.iterdir() if p.is_file()}, report


@pytest.mark.parametrize("report", REPORTS, ids=_id)
def test_no_report_says_the_dev_set_selects_a_checkpoint_its_recipes_take_at_the_end(report: Path):
    text = report.read_text()
    if "Scores are on the dev set that also selects the checkpoint (as in" in text:  # every arm selected on dev
        assert "select=final" not in text, f"{report}: an arm reports its last checkpoint"
