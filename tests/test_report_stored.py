"""A report of stored analysis tables: read back when current, and the same report as from fresh tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_churn import FAST, _store

from harness.analysis import pipeline
from harness.report.experiment import write_report


def _body(md: str) -> list[str]:
    return [line for line in md.splitlines() if not line.startswith("Generated ")]


def test_report_from_stored_tables_equals_the_report_from_fresh_ones(tmp_path: Path, tiny_glue_dir: Path, monkeypatch):
    exp, _, _ = _store(tmp_path, tiny_glue_dir)
    fresh = write_report(tmp_path / "ch", spec=exp, **FAST).read_text()
    for name in ("churn", "per_example", "recipe_agreement", "summary", "comparisons"):
        assert (tmp_path / "ch" / "analysis" / f"{name}.parquet").is_file(), name

    def no_analysis(*args, **kwargs):
        raise AssertionError("the analysis was recomputed although the store did not change")

    monkeypatch.setattr(pipeline, "analyze_runs", no_analysis)
    stored = write_report(tmp_path / "ch", spec=exp, **FAST).read_text()
    assert _body(stored) == _body(fresh)
    assert "| reinit vs standard |" in stored and "Examples that flip most" in stored
    with pytest.raises(AssertionError, match="recomputed"):  # another option: the tables are not current
        write_report(tmp_path / "ch", spec=exp, n_boot=100, n_perm=199)
