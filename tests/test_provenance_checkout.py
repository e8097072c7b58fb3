"""A run's code state: '+dirty' means its code had uncommitted changes, not that a report was published."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.training.provenance import checkout_state


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_uncommitted_reports_leave_the_code_clean_and_code_edits_do_not(tmp_path: Path) -> None:
    (tmp_path / "harness").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "harness" / "loop.py").write_text("lr = 1\n")
    (tmp_path / "docs" / "report.md").write_text("old\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sha = checkout_state(tmp_path)
    assert len(sha) == 40
    (tmp_path / "docs" / "report.md").write_text("a report published from this checkout\n")
    assert checkout_state(tmp_path) == sha
    (tmp_path / "harness" / "loop.py").write_text("lr = 3\n")
    assert checkout_state(tmp_path) == sha + "+dirty"


def test_outside_git_there_is_no_code_state(tmp_path: Path) -> None:
    assert checkout_state(tmp_path) == ""
