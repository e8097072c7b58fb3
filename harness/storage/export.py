"""`harness export`: the runs of an experiment as one flat table (CSV or Parquet) for tools without the harness.

Every run column of the store stays; the `spec` JSON is spread into columns (top-level fields by name,
nested ones dotted: `recipe.lr`, `recipe.bias_correction`, `custom_task.metric`) and so is the
`provenance` JSON (`provenance.git_sha`, ...). Spec fields that repeat a run column (task, model,
seeds) are left out; lists are written as JSON text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.storage.safe_files import real_folder, replace_file
from harness.storage.store import load_runs, write_parquet_atomic

FORMATS = ("csv", "parquet")


class ExportError(ValueError):
    """An export that cannot be written: names the experiment, the format or the path."""


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def _json_columns(texts: pd.Series, prefix: str, skip: set[str]) -> pd.DataFrame:
    rows = []
    for text in texts.tolist():
        try:
            data = json.loads(text) if isinstance(text, str) and text else {}
        except ValueError:
            data = {}
        flat: dict[str, Any] = {}
        _flatten(data if isinstance(data, Mapping) else {}, prefix, flat)
        rows.append({k: v for k, v in flat.items() if k not in skip})
    return pd.DataFrame(rows, index=texts.index)


def flat_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the run columns, then spec fields, then provenance fields (all flat)."""
    base = runs.drop(columns=["spec", "provenance"])
    skip = set(base.columns) | {"recipe.name", "experiment"}
    spec = _json_columns(runs["spec"], "", skip)
    prov = _json_columns(runs["provenance"], "provenance", skip)
    return pd.concat([base, spec, prov], axis=1)


def export_runs(
    exp_dir: str | Path, fmt: str, out: str | Path | None = None, replace: bool = False
) -> tuple[Path, pd.DataFrame]:
    """Write the flat table of exp_dir's runs to `out` (default exp_dir/export/runs.<fmt>); return path and table.

    `out` goes into a folder that exists (no folders are made elsewhere) and replaces a file there only when
    `replace`; the default file is the harness's own and is replaced by each export."""
    exp_dir = Path(exp_dir)
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if out:
        path = Path(out)
        if not path.parent.is_dir():
            raise ExportError(f"--out {path}: folder {path.parent} does not exist; create it first (or fix the path)")
        if os.path.lexists(path) and not replace:
            raise ExportError(f"--out {path} exists; pass --force to replace it, or choose another name")
        if path.is_dir():
            raise ExportError(f"--out {path} is a folder; give a file name ending in .{fmt}")
    else:
        path = real_folder(exp_dir, "export") / f"runs.{fmt}"
    if path.suffix.lstrip(".") != fmt:
        raise ExportError(f"--out {path}: the name should end in .{fmt} for --format {fmt}")
    runs = load_runs(exp_dir)
    if runs.empty:
        raise ExportError(f"no stored runs under {exp_dir}; nothing to export")
    table = flat_runs(runs)
    if fmt == "parquet":
        write_parquet_atomic(table, path)
    else:  # atomic and never through a link planted at `path` (harness/storage/safe_files.py)
        replace_file(path, lambda handle: table.to_csv(handle, index=False, encoding="utf-8"))
    return path, table
