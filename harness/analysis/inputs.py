"""What an analysis folder's tables were computed from, so they are reused only while none of it changed.

`analysis/inputs.json` records a fingerprint of the inputs: the code (a SHA-256 of the source of
harness/analysis, harness/storage/store.py and harness/experiment/data.py), the store's schema version, the
options (degenerate thresholds, baseline, bootstrap and permutation sizes, seed, data folder), the run ids
asked for (the runs used are those of them the store holds) and the identity (name, size, mtime) of every part
under runs/, curves/ and predictions/. Tables are reused only when all of it matches: any new, rewritten,
quarantined or deleted part, another scope, option or code recomputes them. Writing tables removes the record
first and writes it last, so tables left half-written by a crash are never taken for current ones.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.storage.safe_files import replace_file
from harness.storage.store import SCHEMA_VERSION, part_stats

INPUTS_FILE = "inputs.json"
PART_TABLES = ("runs", "curves", "predictions")
_SOURCES = ("analysis", "storage/store.py", "experiment/data.py", "experiment/paper.py")


@functools.cache
def code_version() -> str:
    """SHA-256 over the source files the analysis tables depend on (a changed statistic recomputes them)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for source in _SOURCES:
        path = root / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(exp_dir: Path, run_ids: Collection[str] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of an analysis of `exp_dir` over `run_ids` (None: every run) with `options`, as JSON data."""
    parts = {table: part_stats(exp_dir, table) for table in PART_TABLES}
    return {
        "code": code_version(),
        "schema_version": SCHEMA_VERSION,
        "options": json.loads(json.dumps(dict(options), sort_keys=True, default=str)),
        "run_ids": "all" if run_ids is None else _digest(sorted(run_ids)),
        "parts": _digest(parts),
        "n_parts": {table: len(found) for table, found in parts.items()},
    }


def stored_tables(out: Path, expected: Mapping[str, Any]) -> dict[str, pd.DataFrame] | None:
    """The tables under `out` when its record matches `expected` (every table readable), else None."""
    try:
        record = json.loads((out / INPUTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("inputs") != dict(expected):
        return None
    tables = {}
    for name in record.get("tables", []):
        try:
            tables[name] = pd.read_parquet(out / f"{name}.parquet")
        except (OSError, ValueError):
            return None
    return tables


def forget(out: Path) -> None:
    """Remove the record before tables are rewritten (a crash midway then leaves no current-looking folder)."""
    (out / INPUTS_FILE).unlink(missing_ok=True)


def remember(out: Path, inputs: Mapping[str, Any], names: Collection[str]) -> None:
    """Record (atomically) that the tables `names` under `out` were computed from `inputs`."""
    out.mkdir(parents=True, exist_ok=True)
    replace_file(
        out / INPUTS_FILE, json.dumps({"inputs": dict(inputs), "tables": list(names)}, indent=2, sort_keys=True)
    )
