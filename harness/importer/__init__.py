"""`harness import`: someone else's run logs (CSV, TSV, JSONL, Parquet) into the store as ordinary runs.

One row per run (or, long format, one row per run and measure, in columns `measure` and `value`). The
minimal schema is task, recipe (or condition), seed and a score; every other field is optional (see
harness/importer/schema.py and the README). Every row is checked before anything is written; then one
import is one part per table (`runs/`, `curves/`, `events/` as `import.batch.parquet`, each written atomically
through `harness.storage.store.write_batch`, with the columns of native parts), and an experiment.toml /
experiment.json beside them lets `analyze`, `report`, `report --compare` and `status` read the experiment like
a native one. Run ids hash the rows' own identity fields; importing again replaces the batch: no duplicates.

An import that is interrupted (a kill, a full disk) leaves its experiment.json marked "importing": every
command then says so in one line, and running the same import again finishes it (nothing is half-counted).
Limit: MAX_ROWS rows per import (one part in memory; 10,000 rows with curves take a few seconds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.experiment.names import folder_name_problem
from harness.experiment.tasks import METRICS, TASKS
from harness.importer.curves import read_curves
from harness.importer.files import SPEC_COPY, SPEC_META, ImportFileError, read_table, row_label, toml_dumps
from harness.importer.rows import Built, build_rows, valid_recipe_fields
from harness.importer.schema import ALIASES, IGNORE, canonical_columns, parse_assignments
from harness.storage.safe_files import real_folder, replace_file
from harness.storage.scope import RecordError, read_meta, refuse_unfinished_import
from harness.storage.store import RUN_STATUSES, load_runs, write_batch

__all__ = [
    "ImportFileError",
    "ImportOptions",
    "ImportSummary",
    "import_runs",
    "imported_run_ids",
    "imported_status",
    "is_imported",
    "parse_assignments",
]

MISSING_RULES = ("constant", "diverged", "failed", "drop")
SELECT_RULES = ("best", "final")
SCALES = ("auto", "1", "100")
PAPER_KEYS = {"paper", "degenerate_threshold", "recipes", "baseline", "description"}
MAX_ROWS = 1_000_000  # runs per import, and curve points per import: one part per table is built in memory
BATCH = "import.batch"  # the part name of an import in runs/, curves/ and events/


@dataclass(frozen=True)
class ImportOptions:
    """Every choice an import makes; all of it is recorded in each run's provenance."""

    name: str
    mapping: Mapping[str, str] = field(default_factory=dict)  # file column -> harness field
    select: str | None = None  # the score when best and final are both given: best | final
    missing: str | None = None  # what a missing/NaN score means: constant | diverged | failed | drop
    thresholds: Mapping[str, float] = field(default_factory=dict)  # degenerate bar per task (x100)
    model: str | None = None  # the model when the file has no model column
    metric: str | None = None  # the metric when the file has no metric column and the task is not built in
    score_scale: str = "auto"  # auto: scores all within [-1, 1] are fractions (x100); or "1" / "100"
    curves: str | None = None  # eval curves: one row per run and evaluation
    paper: str | None = None  # TOML with [paper] (and degenerate_threshold, recipes order, baseline)
    data_dir: str | None = None  # GLUE folder for the built-in tasks' majority baselines


@dataclass(frozen=True)
class ImportSummary:
    name: str
    exp_dir: Path
    runs: int
    dropped: int
    curve_points: int
    statuses: Mapping[str, int]
    select: str
    bars: Mapping[str, str]  # task -> where its degenerate bar came from
    factor: float

    def __str__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.statuses.items() if v)
        bars = "; ".join(f"{t}: {s}" for t, s in self.bars.items())
        scaled = " (scores x100: given as fractions)" if self.factor != 1 else ""
        return (
            f"imported {self.runs} run(s) into {self.exp_dir} ({counts}); {self.dropped} row(s) dropped; "
            f"{self.curve_points} curve point(s); score = {self.select}{scaled}\ndegenerate bars: {bars}"
        )


def _to_wide(frame: pd.DataFrame, path: str, lines: list[int]) -> tuple[pd.DataFrame, list[int]]:
    """Long format (one row per run and measure) -> one row per run, keyed on every other column."""
    keys = [c for c in frame.columns if c not in ("measure", "value")]
    frame = frame.assign(_line=lines, measure=[str(m).strip().lower() for m in frame["measure"]])
    frame["measure"] = [ALIASES.get(m, m) for m in frame["measure"]]
    key_text = frame[keys].astype(str)
    dup = pd.concat([key_text, frame["measure"]], axis=1).duplicated(keep=False)
    if dup.any():
        raise ImportFileError(
            f"{path}: {row_label(path, frame.loc[dup, '_line'].tolist())} give the same measure twice for one "
            "run; keep one (or add the column that tells the runs apart)"
        )
    rows, out_lines = [], []
    for _, group in frame.groupby([key_text[k] for k in keys], sort=False):
        row = group.iloc[0][keys].to_dict()
        row.update(dict(zip(group["measure"], group["value"], strict=True)))
        rows.append(row)
        out_lines.append(int(group["_line"].min()))
    return pd.DataFrame(rows), out_lines


def _score_source(fields: set[str], select: str | None, path: str) -> tuple[str, str]:
    """(the recorded choice, the column used as score) from the fields present and --select."""
    if "score" in fields:
        return select or "as given (score column)", "score"
    kinds = [s for s in SELECT_RULES if f"test_{s}" in fields or f"val_{s}" in fields]
    if not kinds:
        raise ImportFileError(
            f"{path}: no score column; give one of score, best, last, val_best, val_final, test_best, test_final "
            "(or name yours: --map COLUMN=score)"
        )
    if select is None:
        if len(kinds) > 1:
            raise ImportFileError(
                f"{path}: both best and final (last) scores are given; choose the reported one with --select best|final"
            )
        select = kinds[0]
    elif select not in kinds:
        raise ImportFileError(f"{path}: --select {select} but the file has no {select} score column")
    return select, (f"test_{select}" if f"test_{select}" in fields else f"val_{select}")


def _check(options: ImportOptions) -> None:
    problem = folder_name_problem(options.name)
    if problem:
        raise ImportFileError(f"--name {str(options.name)[:120]!r} {problem}; it names the results folder")
    for value, allowed, flag in (
        (options.missing, MISSING_RULES, "--missing"),
        (options.select, SELECT_RULES, "--select"),
        (options.score_scale, SCALES, "--score-scale"),
    ):
        if value is not None and value not in allowed:
            raise ImportFileError(f"{flag} {value!r}; allowed: {', '.join(allowed)}")


def _paper(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImportFileError(f"--paper {path}: cannot read it as TOML ({exc})") from None
    unknown = sorted(set(data) - PAPER_KEYS)
    if unknown:
        raise ImportFileError(f"--paper {path}: unknown key(s) {unknown}; allowed: {sorted(PAPER_KEYS)}")
    return data


def import_runs(path: str | Path, results_root: str | Path, options: ImportOptions) -> ImportSummary:
    """Read `path`, validate every row, write one run part per row under results_root/<name>/."""
    _check(options)
    src = str(path)
    paper = _paper(options.paper)
    raw, lines = read_table(src)
    if raw.empty:
        raise ImportFileError(f"{src}: no rows")
    if len(raw) > MAX_ROWS:
        raise ImportFileError(f"{src}: {len(raw)} rows; at most {MAX_ROWS:,} per import: split the file by task")
    curve_cols = list(read_table(options.curves)[0].columns) if options.curves else []
    names = canonical_columns(list(raw.columns), options.mapping, ALIASES, src, elsewhere=curve_cols)
    frame = raw.rename(columns=names)
    frame = frame.loc[:, [c for c in frame.columns if c != IGNORE]]
    if "measure" in frame.columns and "value" in frame.columns:
        frame, lines = _to_wide(frame, src, lines)
    fields = set(frame.columns)
    needed = [f for f in ("task", "recipe") if f not in fields]
    needed += ["seed"] if not fields & {"seed", "init_seed"} else []
    if needed:
        raise ImportFileError(
            f"{src}: missing column(s) {needed}; the file has {list(raw.columns)}; "
            "name yours with --map COLUMN=FIELD (e.g. --map condition=recipe --map run=seed)"
        )
    select, score_col = _score_source(fields, options.select, src)
    thresholds = {**paper.get("degenerate_threshold", {}), **options.thresholds}
    options = dataclasses.replace(options, thresholds=thresholds)
    provenance = {
        "source": "import",
        "file": str(Path(src).resolve()),
        "sha256": hashlib.sha256(Path(src).read_bytes()).hexdigest(),
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "flags": {k: v for k, v in dataclasses.asdict(options).items() if v not in (None, {}, "", "auto")},
        "select": select,
        "score_column": score_col,
    }
    built = build_rows(frame, lines, src, options, select, score_col, provenance, names)
    if not built.rows:
        raise ImportFileError(f"{src}: every row was dropped (--missing drop); nothing to import")
    curves = read_curves(options, built.rows, built.factor) if options.curves else {}
    if options.curves:
        provenance["curves"] = {"file": str(Path(options.curves).resolve()),
                                "sha256": hashlib.sha256(Path(options.curves).read_bytes()).hexdigest()}  # fmt: skip
    if sum(len(c) for c in curves.values()) > MAX_ROWS:
        raise ImportFileError(f"{options.curves}: more than {MAX_ROWS:,} curve points; at most that many per import")
    exp_dir = Path(results_root) / options.name
    _refuse_native(exp_dir)
    if options.curves:
        for row in built.rows:
            prov = json.loads(row["provenance"])
            row["provenance"] = json.dumps({**prov, "curves": provenance["curves"]}, sort_keys=True)
    toml_text, meta = _experiment_files(options, built, provenance, paper, score_col)
    points = [{**p, "run_id": rid} for rid, pts in curves.items() for p in pts]
    _write(exp_dir, built.rows, points, toml_text, meta, provenance)
    return ImportSummary(
        name=options.name,
        exp_dir=exp_dir,
        runs=len(built.rows),
        dropped=built.dropped,
        curve_points=sum(len(c) for c in curves.values()),
        statuses={s: sum(r["status"] == s for r in built.rows) for s in RUN_STATUSES},
        select=select,
        bars=built.bars,
        factor=built.factor,
    )


def _refuse_native(exp_dir: Path) -> None:
    if (exp_dir / "runs").is_dir() and any((exp_dir / "runs").glob("*.parquet")) and not is_imported(exp_dir):
        raise ImportFileError(f"{exp_dir} holds runs of a native experiment; import under another --name")


def _write(
    exp_dir: Path,
    rows: list[dict[str, Any]],
    points: list[dict[str, Any]],
    toml_text: str,
    meta: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> None:
    """The import's files, in an order that a kill at any point leaves readable: first a record saying an import
    is under way (commands refuse the folder until it is finished), then one part per table, then the record."""
    real_folder(exp_dir)
    started = {"file": provenance["file"], "sha256": provenance["sha256"], "started": provenance["imported_at"]}
    replace_file(exp_dir / SPEC_META, json.dumps({**meta, "runs": 0, "imported": None, "importing": started}))
    message = f"imported {len(rows)} run(s) from {provenance['file']} (sha256 {provenance['sha256'][:12]})"
    write_batch(exp_dir, BATCH, rows, points, [{"run_id": "", "kind": "import", "message": message}])
    for folder in ("runs", "curves"):  # the one-part-per-run layout of imports before batches
        for old in (exp_dir / folder).glob("imp-*.parquet"):
            old.unlink()
    replace_file(exp_dir / SPEC_COPY, toml_text)
    replace_file(exp_dir / SPEC_META, json.dumps(meta, indent=2, default=str))


def _experiment_files(
    options: ImportOptions,
    built: Built,
    provenance: Mapping[str, Any],
    paper: Mapping[str, Any],
    score_col: str,
) -> tuple[str, dict[str, Any]]:
    """experiment.toml (tasks, recipes in order, thresholds, [paper]) and experiment.json (the import record).

    The TOML parses like any experiment file so reports read its recipe order, thresholds and [paper];
    it describes the runs, it is not something to run (`harness run` refuses an imported experiment).
    """
    rows = built.rows
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    order = [r for r in paper.get("recipes", []) if r in recipes]
    baseline = paper.get("baseline")
    if baseline is not None and baseline not in recipes:
        raise ImportFileError(f"--paper {options.paper}: baseline {baseline!r} is not a recipe of the file: {recipes}")
    order = list(dict.fromkeys([*([baseline] if baseline else []), *order, *recipes]))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = {r["sample_size"] for r in rows}
    doc: dict[str, Any] = {
        "name": options.name,
        "imported_from": provenance["file"],
        "description": paper.get("description")
        or f"Imported from {Path(provenance['file']).name} (sha256 {provenance['sha256'][:12]}) by `harness "
        f"import` at {provenance['imported_at']}; score = {provenance['select']} ({score_col}).",
        "model": models[0] if len(models) == 1 else "imported (several models)",
        "tasks": tasks,
        "seeds": sorted({r["init_seed"] for r in rows}),
        "eval_protocol": "heldout" if score_col.startswith("test_") else "dev",
    }
    if provenance["select"] in SELECT_RULES:
        doc["select"] = provenance["select"]
    if len(sizes) == 1 and None not in sizes:
        doc["sample_size"] = sizes.pop()
    if options.thresholds:
        doc["degenerate_threshold"] = {k: float(v) for k, v in options.thresholds.items()}
    doc["recipes"] = {r: valid_recipe_fields(r, built.recipe_fields.get(r, {})) for r in order}
    custom = {t: _placeholder_task(t, rows) for t in tasks if t not in TASKS}
    if custom:
        doc["custom_tasks"] = custom
    if paper.get("paper"):
        doc["paper"] = paper["paper"]
    header = "# Written by `harness import`: a description of imported runs (nothing here is run).\n"
    meta = {
        "source": f"harness import {provenance['file']}",
        "scale": None,
        "runs": len(rows),
        "imported": {**provenance, "run_ids": sorted(r["run_id"] for r in rows)},
    }
    return header + toml_dumps(doc) + "\n", meta


def _placeholder_task(task: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A custom-task entry so the experiment file parses for a task the registry lacks (no data behind it)."""
    metric = next(r["metric"] for r in rows if r["task"] == task)
    metric = metric if metric in METRICS else "accuracy"
    entry: dict[str, Any] = {"folder": f"(imported: no data for {task})", "text_columns": ["text"],
                             "label_column": "label", "metric": metric}  # fmt: skip
    entry["labels"] = [] if metric in ("spearman", "pearson") else ["0", "1"]
    return entry


def is_imported(exp_dir: str | Path) -> bool:
    """True when the experiment under exp_dir was written by `harness import` (nothing to run), also when that
    import was interrupted or its record is damaged (then every run part is an import's)."""
    exp_dir = Path(exp_dir)
    try:
        meta = read_meta(exp_dir)
    except RecordError:
        names = [p.name for p in (exp_dir / "runs").glob("*.parquet")]
        return bool(names) and all(n == f"{BATCH}.parquet" or n.startswith("imp-") for n in names)
    return isinstance(meta.get("imported"), dict) or "importing" in meta


def imported_run_ids(exp_dir: str | Path) -> set[str] | None:
    """The run ids an import wrote (the experiment's scope), or None for a native experiment; RecordError
    when the import did not finish (run it again) or its record is damaged."""
    meta = read_meta(Path(exp_dir))
    refuse_unfinished_import(Path(exp_dir), meta)
    info = meta.get("imported")
    return set(info.get("run_ids", [])) if isinstance(info, dict) else None


def imported_status(exp_dir: str | Path) -> pd.DataFrame:
    """`harness status` of an imported experiment: its runs per (task, recipe) by status, none pending."""
    from harness.schedule.status import STATUS_COLUMNS

    ids = imported_run_ids(exp_dir) or set()
    runs = load_runs(exp_dir)
    runs = runs[runs["run_id"].isin(ids)]
    try:  # the file's order of tasks and recipes, as the experiment file keeps it
        doc = tomllib.loads((Path(exp_dir) / SPEC_COPY).read_text())
        tasks, recipes = list(doc.get("tasks", [])), list(doc.get("recipes", {}))
    except (OSError, tomllib.TOMLDecodeError):
        tasks, recipes = [], []
    tasks += sorted(set(runs["task"]) - set(tasks))
    recipes += sorted(set(runs["recipe"]) - set(recipes))
    runs = runs.assign(_t=runs["task"].map(tasks.index), _r=runs["recipe"].map(recipes.index)).sort_values(["_t", "_r"])
    rows = []
    for (task, recipe), group in runs.groupby(["task", "recipe"], sort=False):
        counts = {s: int((group["status"] == s).sum()) for s in RUN_STATUSES}
        wall = group["wall_time_s"].astype(float)
        mean = float(wall.mean()) if wall.notna().any() else float("nan")
        rows.append({"task": task, "recipe": recipe, "total": len(group), **counts, "pending": 0, "mean_run_s": mean,
                     "eta_s": 0.0})  # fmt: skip
    frame = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    frame.attrs.update(experiment=f"{Path(exp_dir).name} (imported)", slots="-", driver=None)
    return frame
