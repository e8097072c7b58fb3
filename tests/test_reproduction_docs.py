"""The committed reproduction reports stay regenerable: the command in each report's header names an
experiment file and a scale that exist, and every paper file keeps a GPU scale."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = sorted((ROOT / "docs" / "reproductions").glob("*/*/report.md"))
PAPER_FILES = sorted(
    p for d in ("zhang2021", "mosbach2021", "dodge2020", "survey") for p in (ROOT / "experiments" / d).glob("*.toml")
)


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_each_report_names_a_command_whose_file_and_scale_exist(report: Path):
    head = " ".join(report.read_text().splitlines()[:6])
    found = re.search(r"`harness run (\S+\.toml) --scale (\w+)`", head)
    assert found, f"{report}: no `harness run FILE --scale S` in its header"
    path, scale = ROOT / found.group(1), found.group(2)
    assert path.is_file(), f"{report}: {path} does not exist"
    assert scale in tomllib.loads(path.read_text()).get("scale", {}), f"{report}: {path} has no [scale.{scale}]"


@pytest.mark.parametrize("path", PAPER_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_paper_file_has_a_gpu_scale(path: Path):
    assert "gpu" in tomllib.loads(path.read_text()).get("scale", {})


def test_there_are_reports_to_check():
    assert len(REPORTS) >= 6 and len(PAPER_FILES) >= 10
