"""Where a report is written: a staging folder inside the report folder, published by rename at the end.

A report replaces only files the harness wrote. Each report folder keeps a manifest (MANIFEST) of the
files its last report wrote; the next report replaces those and removes the ones it no longer draws.
A user's own files in `--out DIR` (images, notes) are never deleted or overwritten: a report that would
write a file of the same name as one of them is refused, naming it. The harness's own folders
(`results/<name>/report/`, `results/compare-A-vs-B/`) were written by it alone, so there the PNGs,
report.md and report.html of a report from before manifests existed count as the harness's too.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from harness.report.paper import ReportError
from harness.storage.safe_files import real_folder, replace_file

MANIFEST = ".harness-report.json"
_STAGE = ".report-staging-"
_REPLACEABLE = ".replaceable.json"  # inside a stage: what its publication may replace
_LEGACY = ("report.md", "report.html")


def _written_before(out: Path) -> set[str]:
    try:
        files = json.loads((out / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str) and f == os.path.basename(f) and not f.startswith(".")}


def stage_report(base: str | Path, *names: str) -> Path:
    """A fresh staging folder inside the report folder `base`/names (names: a folder the harness owns;
    none: `--out DIR`, the user's folder). Draw every file of the report into it, then write_markdown_report
    publishes it."""
    out = real_folder(base, *names)
    for old in out.glob(f"{_STAGE}*"):  # left by a report that crashed
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    replaceable = _written_before(out)
    if names:
        replaceable |= {p.name for p in out.glob("*.png")} | {n for n in _LEGACY if (out / n).exists()}
    stage = out / f"{_STAGE}{uuid.uuid4().hex[:12]}"
    stage.mkdir()
    (stage / _REPLACEABLE).write_text(json.dumps(sorted(replaceable)))
    return stage


def is_stage(folder: Path) -> bool:
    return folder.name.startswith(_STAGE)


def publish(stage: Path) -> Path:
    """Move the staged files into the report folder, replacing only files the harness wrote there, remove
    the previous report's files that were not drawn again, record the new manifest; returns the folder."""
    out = stage.parent
    replaceable = set(json.loads((stage / _REPLACEABLE).read_text()))
    written = sorted(p.name for p in stage.iterdir() if not p.name.startswith(".") and p.is_file())
    clash = [n for n in written if os.path.lexists(out / n) and n not in replaceable]
    if clash:
        shutil.rmtree(stage, ignore_errors=True)
        raise ReportError(
            f"{out / clash[0]} was not written by harness and the report would replace it"
            f"{f' (and {len(clash) - 1} more: {clash[1:4]})' if len(clash) > 1 else ''}; move it, or give --out "
            "an empty or new folder"
        )
    for name in written:
        os.replace(stage / name, out / name)  # a link at the target is replaced, never followed
    for name in sorted(replaceable - set(written)):  # the previous report's figures not drawn this time
        old = out / name
        if old.is_symlink() or old.is_file():
            old.unlink()
    replace_file(out / MANIFEST, json.dumps({"files": written}, indent=1))
    shutil.rmtree(stage, ignore_errors=True)
    return out
