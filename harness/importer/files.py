"""Reading run-log files (CSV, TSV, JSONL, Parquet) with their line numbers, and writing the
experiment.toml / experiment.json that make an imported experiment readable like a native one."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

SPEC_COPY = "experiment.toml"  # the same names the CLI keeps beside native results
SPEC_META = "experiment.json"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class ImportFileError(ValueError):
    """A run-log file that cannot be imported as it is: the message names the file, row, column and fix."""


def file_format(path: str) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImportFileError(f"{path}: unknown file type; use one of {', '.join(sorted(FORMATS))}")
    return fmt


def row_label(path: str, lines: Sequence[int]) -> str:
    """'line 7' / 'lines 7, 9 (and 3 more)' for text files, 'row 7' for Parquet (1-based)."""
    word = "row" if file_format(path) == "parquet" else "line"
    shown = ", ".join(str(n) for n in list(lines)[:5])
    more = f" (and {len(lines) - 5} more)" if len(lines) > 5 else ""
    return f"{word}{'s' if len(lines) > 1 else ''} {shown}{more}"


def read_table(path: str) -> tuple[pd.DataFrame, list[int]]:
    """The file's rows as a DataFrame and, per row, where it is in the file (line, or row for Parquet)."""
    fmt = file_format(path)
    if not Path(path).is_file():
        raise ImportFileError(f"{path}: file not found")
    if fmt == "jsonl":
        return _read_jsonl(path)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
            return frame.reset_index(drop=True), list(range(1, len(frame) + 1))
        frame = pd.read_csv(path, sep="," if fmt == "csv" else "\t", skip_blank_lines=False, dtype=object)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ImportFileError(f"{path}: cannot read as {fmt}: {exc}") from None
    lines = [i + 2 for i in range(len(frame))]  # line 1 is the header
    keep = ~frame.isna().all(axis=1)
    frame = frame[keep].reset_index(drop=True)
    frame = frame.apply(lambda col: col.str.strip() if col.dtype == object else col)
    return frame, [n for n, k in zip(lines, keep, strict=True) if k]


def _read_jsonl(path: str) -> tuple[pd.DataFrame, list[int]]:
    rows, lines = [], []
    with open(path, encoding="utf-8") as handle:
        for n, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ImportFileError(f"{path}: line {n} is not valid JSON ({exc}); one JSON object per line") from None
            if not isinstance(value, dict):
                raise ImportFileError(f"{path}: line {n} is a {type(value).__name__}, not a JSON object")
            rows.append(value)
            lines.append(n)
    return pd.DataFrame(rows), lines


# ---------------------------------------------------------------------------
# A small TOML writer: the experiment file is generated, so only the value kinds it holds are supported.


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise ImportFileError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def toml_dumps(data: Mapping[str, Any], prefix: str = "") -> str:
    """Scalars and lists first, then sub-tables as [a.b], then arrays of tables as [[a.b]]."""
    plain = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    out = [f"{_key(k)} = {_value(v)}" for k, v in plain.items()]
    for k, v in data.items():
        name = f"{prefix}{_key(k)}"
        if _is_table(v):
            body = toml_dumps(v, f"{name}.")
            out += ["", f"[{name}]", body] if body else ["", f"[{name}]"]
        elif _is_table_array(v):
            for item in v:
                out += ["", f"[[{name}]]", toml_dumps(item, f"{name}.")]
    return "\n".join(x for x in out if x is not None).strip("\n")


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping) and (not v or any(isinstance(x, Mapping) for x in v.values()) or len(v) > 6)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)
