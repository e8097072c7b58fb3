"""Per-value converters for import rows: each names the file, the line and the file's own column when a value
is wrong, and none lets a value through that would corrupt a table (±inf, a number beyond the metric's range,
a seed outside the store's int64, a name with hidden characters)."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness.experiment.names import label_problem
from harness.importer.files import ImportFileError, row_label

PERCENT_METRICS = ("accuracy", "f1", "acc_f1")  # in [0, 100]: a value in (0, 1] among percentages is a fraction
MAX_SEED = 2**63 - 1  # the store's int64; native runs draw seeds in [0, 2**32 - 1]
MAX_INT = 2**63 - 1
_NA = ("nan", "na", "null", "none", "-", "")


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) or value == ""


def short(value: Any, limit: int = 40) -> str:
    text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= limit else f"{text[:limit]}..."


class Rows:
    """Per-value converters that name the file, the row and the column when a value is wrong."""

    def __init__(self, path: str, names: Mapping[str, str] | None = None):
        self.path = path
        self.column = {field: col for col, field in (names or {}).items()}  # field -> the file's own column name

    def fail(self, line: int, col: str, msg: str) -> ImportFileError:
        return ImportFileError(
            f"{self.path}: {row_label(self.path, [line])}, column '{self.column.get(col, col)}': {msg}"
        )

    def text(self, row: Mapping[str, Any], col: str, line: int, default: str | None = None) -> str | None:
        value = row.get(col)
        if is_missing(value):
            if default is None:
                raise self.fail(line, col, "empty; every row needs it")
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip()

    def label(self, row: Mapping[str, Any], col: str, line: int) -> str:
        """A task or recipe name: it labels every table, so it must read as what it is."""
        value = self.text(row, col, line)
        problem = label_problem(value)
        if problem:
            raise self.fail(line, col, f"{short(value)} {problem}")
        return str(value)

    def number(
        self, row: Mapping[str, Any], col: str, line: int, low: float = -math.inf, high: float = math.inf
    ) -> float:
        """A finite number within [low, high], or NaN when empty; ±inf (or a value too large for a float) is
        an error, never a silent extreme."""
        value = row.get(col)
        if is_missing(value) or (isinstance(value, str) and value.strip().lower() in _NA):
            return math.nan
        if isinstance(value, bool):
            raise self.fail(line, col, f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise self.fail(line, col, f"{short(value)} is not a number") from None
        if math.isinf(number):
            raise self.fail(line, col, f"{short(value)} is not finite; give a number or leave it empty")
        if not math.isnan(number) and not low <= number <= high:
            raise self.fail(line, col, f"{short(value)} is outside [{low:g}, {high:g}]")
        return number

    def integer(self, row: Mapping[str, Any], col: str, line: int, low: int = 0, high: int = MAX_INT) -> int | None:
        """An integer within [low, high] (read exactly, also past 2**53), or None when empty."""
        value = row.get(col)
        if is_missing(value) or (isinstance(value, str) and value.strip().lower() in _NA):
            return None
        if isinstance(value, bool):
            raise self.fail(line, col, f"{value!r} is not an integer")
        try:
            number = int(value.strip()) if isinstance(value, str) else operator.index(value)
        except (TypeError, ValueError):
            real = self.number(row, col, line)
            if math.isnan(real):
                return None
            if not real.is_integer():
                raise self.fail(line, col, f"{short(value)} is not an integer") from None
            number = int(real)
        if not low <= number <= high:
            raise self.fail(line, col, f"{short(value)} is outside [{low}, {high}]")
        return number

    def score(self, row: Mapping[str, Any], col: str, line: int, factor: float, metric: str) -> float:
        """A metric x100: within [0, 100] for accuracy/F1, [-100, 100] for correlations (and unknown metrics)."""
        value = self.number(row, col, line) * factor
        low = 0.0 if metric in PERCENT_METRICS else -100.0
        if not math.isnan(value) and not low - 1e-9 <= value <= 100.0 + 1e-9:
            scaled = f" (x{factor:g}: the file's scores are fractions)" if factor != 1 else ""
            raise self.fail(
                line, col, f"{short(row.get(col))}{scaled} is outside [{low:g}, 100], the range of {metric} x100; "
                "fix the value (or --score-scale if the file's scale was misread)"
            )  # fmt: skip
        return value
