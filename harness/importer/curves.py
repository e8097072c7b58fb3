"""The --curves file of an import: one row per run and evaluation, matched to the runs on their identity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.importer.files import ImportFileError, read_table, row_label
from harness.importer.schema import CURVE_ALIASES, CURVE_FIELDS, canonical_columns
from harness.importer.values import MAX_SEED, Rows


def read_curves(options: Any, rows: list[dict[str, Any]], factor: float) -> dict[str, list[dict[str, Any]]]:
    """run_id -> eval curve from the --curves file, matched to the runs on their identity fields."""
    path = options.curves
    raw, lines = read_table(path)
    names = canonical_columns(
        list(raw.columns), options.mapping, CURVE_ALIASES, path, extra=CURVE_FIELDS, elsewhere=list(options.mapping)
    )
    frame = raw.rename(columns=names)
    missing = [c for c in ("task", "recipe", "step", "val_metric") if c not in frame.columns]
    if "seed" not in frame.columns and "init_seed" not in frame.columns:
        missing.append("seed")
    if missing:
        raise ImportFileError(
            f"{path}: curves need column(s) {missing}; columns are {list(raw.columns)}; map with --map COLUMN=FIELD"
        )
    conv = Rows(path, names)
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(_curve_key(r, frame.columns), []).append(r)
    points: dict[str, list[dict[str, Any]]] = {}
    identity = [c for c in _IDENTITY if c in frame.columns]
    has, nan = set(frame.columns), math.nan  # absent optional columns cost nothing per point
    matched: dict[tuple, dict[str, Any]] = {}  # a run's identity is read once, not once per evaluation
    for record, line in zip(frame.to_dict("records"), lines, strict=True):
        seen = tuple(str(record[c]) for c in identity)
        run = matched.get(seen)
        if run is None:
            run = matched[seen] = _match_run(conv, record, line, frame.columns, by_key)
        step = conv.integer(record, "step", line)
        if step is None:
            raise conv.fail(line, "step", "empty; every curve point needs its step")
        metric = run["metric"]
        val = conv.score(record, "val_metric", line, factor, metric)
        if math.isnan(val):
            raise conv.fail(line, "val_metric", "empty or NaN; every curve point needs its score (drop the row)")
        points.setdefault(run["run_id"], []).append(
            {
                "step": step,
                "val_metric": val,
                "test_metric": conv.score(record, "test_metric", line, factor, metric) if "test_metric" in has else nan,
                "fraction": conv.number(record, "fraction", line, 0.0, 1.0) if "fraction" in has else nan,
                "epoch": conv.number(record, "epoch", line, 0.0) if "epoch" in has else nan,
                "train_loss": conv.number(record, "train_loss", line) if "train_loss" in has else nan,
                "_line": line,
            }
        )
    total = {r["run_id"]: r["total_steps"] for r in rows}
    return {rid: _finish_curve(path, pts, total.get(rid) or 0) for rid, pts in points.items()}


_IDENTITY = ("task", "recipe", "seed", "init_seed", "order_seed", "sample_seed", "model", "sample_size")


def _match_run(
    conv: Rows, record: Mapping[str, Any], line: int, columns: Any, by_key: Mapping[tuple, list[dict[str, Any]]]
) -> dict[str, Any]:
    """The one run of the run file a curve row belongs to (by its identity columns)."""
    seed = conv.integer(record, "seed", line, 0, MAX_SEED) if "seed" in record else None
    init = conv.integer(record, "init_seed", line, 0, MAX_SEED) if "init_seed" in record else None
    order = conv.integer(record, "order_seed", line, 0, MAX_SEED) if "order_seed" in record else None
    probe = {
        "task": conv.text(record, "task", line), "recipe": conv.text(record, "recipe", line),
        "init_seed": init if init is not None else seed,
        "order_seed": order if order is not None else (seed if seed is not None else init),
        "sample_seed": (conv.integer(record, "sample_seed", line, 0, MAX_SEED) if "sample_seed" in record
                        else None) or 0,
        "model": conv.text(record, "model", line, default="") if "model" in record else None,
        "sample_size": conv.integer(record, "sample_size", line, 1) if "sample_size" in record else None,
    }  # fmt: skip
    matches = by_key.get(_curve_key(probe, columns), [])
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs (add model / sample_size columns)"
        raise ImportFileError(
            f"{conv.path}: {row_label(conv.path, [line])} matches {what} of the run file "
            f"(task {probe['task']!r}, recipe {probe['recipe']!r}, seed {probe['init_seed']})"
        )
    return matches[0]


def _curve_key(r: Mapping[str, Any], columns: Any) -> tuple:
    key = [r["task"], r["recipe"], r["init_seed"], r["order_seed"], r["sample_seed"]]
    key += [r["model"]] if "model" in columns else []
    key += [r["sample_size"]] if "sample_size" in columns else []
    return tuple(key)


def _finish_curve(path: str, points: list[dict[str, Any]], total_steps: int) -> list[dict[str, Any]]:
    points = sorted(points, key=lambda p: p["step"])
    steps = [p["step"] for p in points]
    if len(set(steps)) != len(steps):
        dup = [p["_line"] for p in points if steps.count(p["step"]) > 1]
        raise ImportFileError(f"{path}: {row_label(path, dup)} give the same step twice for one run; keep one")
    denom = total_steps if total_steps > 0 else (max(steps) or 1)
    out = []
    for i, p in enumerate(points):
        p = {k: v for k, v in p.items() if k != "_line"}
        if math.isnan(p["fraction"]):
            p["fraction"] = p["step"] / denom
        out.append({**p, "eval_index": i})
    return out
