"""Task data: loading (local files or the hub), few-sample subsets, eval protocols, metrics.

Everything here is plain Python + numpy/scipy (no torch): it is shared by the
training loop and by tests that check protocols without a model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.experiment.tasks import TASKS, TaskDef

DATA_DIR_ENV = "HARNESS_DATA_DIR"


class DataError(ValueError):
    """Missing or malformed task data: the message names the path and line."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float  # class id, or a float score for regression


@dataclass(frozen=True)
class EvalSplits:
    """What a run is selected on (val) and what it reports (test; None under the plain dev protocol)."""

    val: tuple[Example, ...]
    test: tuple[Example, ...] | None


def get_task(name: str | TaskDef) -> TaskDef:
    if isinstance(name, TaskDef):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data directory: an explicit one, else $HARNESS_DATA_DIR, else None (use the hub)."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "the experiment's data_dir" if explicit else f"${DATA_DIR_ENV}"
        raise DataError(f"data directory {path} (from {source}) does not exist; point it at a GLUE folder")
    return path


# ---------------------------------------------------------------------------
# Loading


def _label_of(task: TaskDef, raw: str, where: str) -> int | float:
    if task.is_regression:
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{where}: label {_clip(raw)} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: label {_clip(raw)} is not finite")
        return value
    try:
        return task.labels.index(raw.strip())
    except ValueError:
        raise DataError(f"{where}: label {_clip(raw)} is not one of {list(task.labels)}") from None


def _clip(value: str, limit: int = 20) -> str:
    """A field's value for an error message, cut short: errors name a value, they never echo a file's text."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def _kind(value: object) -> str:
    names = {list: "a JSON array", str: "a JSON string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a JSON number")


def _read_text(path: Path) -> str:
    """The file as UTF-8 (a BOM allowed); a byte that is not UTF-8 is an error naming its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: byte {raw[exc.start : exc.start + 1]!r} is not UTF-8 ({exc.reason}); "
            "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def _read_tsv(task: TaskDef, path: Path, delimiter: str) -> list[Example]:
    csv.field_size_limit(sys.maxsize)
    examples = []
    with io.StringIO(_read_text(path), newline="") as handle:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        # strict: a stray or unterminated quote is an error, not two rows silently merged into one
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting, strict=True)
        header: list[str] | None = next(reader, None) if task.has_header else None
        if task.has_header and header is None:
            raise DataError(f"{path}: empty file")

        def index(col: str | int) -> int:
            if isinstance(col, int):
                return col
            if header is None or col not in header:
                width = len(header) if header is not None else 0
                raise DataError(  # the header is the file's text: named by its size, never echoed
                    f"{path}: line 1: column {col!r} is not among the header's {width} column name(s); check "
                    "'text_columns' and 'label_column' against the file's first line"
                )
            return header.index(col)

        text_idx = [index(c) for c in task.text_columns]
        label_idx = index(task.label_column)
        width = max([*text_idx, label_idx]) + 1
        for row in _rows(reader, path):
            if not row:
                continue
            where = f"{path}: line {reader.line_num}"
            if len(row) < width:
                raise DataError(f"{where}: {len(row)} columns, expected at least {width}")
            texts = [row[i] for i in text_idx]
            examples.append(
                Example(texts[0], texts[1] if len(texts) > 1 else None, _label_of(task, row[label_idx], where))
            )
    return examples


def _rows(reader: Iterator[list[str]], path: Path) -> Iterator[list[str]]:
    """The reader's rows; a quoting error names the line where the reader stopped."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = getattr(reader, "line_num", "?")
            raise DataError(
                f'{path}: line {line}: malformed CSV ({exc}); close the quote or escape it by doubling ("")'
            ) from None
        yield row


def _read_jsonl(task: TaskDef, path: Path) -> list[Example]:
    examples = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object with keys {list(task.text_columns)}, got {_kind(obj)}")
        missing = [c for c in (*task.text_columns, task.label_column) if c not in obj]
        if missing:
            raise DataError(f"{where}: missing key(s) {missing}")
        empty = [c for c in (*task.text_columns, task.label_column) if obj[c] is None]
        if empty:
            raise DataError(f"{where}: key(s) {empty} are null; give text (a string) and a label")
        texts = [str(obj[c]) for c in task.text_columns]
        label = _label_of(task, str(obj[task.label_column]), where)
        examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def _read_file(task: TaskDef, path: Path) -> list[Example]:
    if not path.is_file():
        raise DataError(
            f"{path}: missing; task {task.name!r} expects {task.folder}/{path.name} in the data directory "
            f"(set ${DATA_DIR_ENV}, or unset it to load from the hub)"
        )
    if task.fmt == "jsonl":
        examples = _read_jsonl(task, path)
    else:
        examples = _read_tsv(task, path, "\t" if task.fmt == "tsv" else ",")
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def _load_from_hub(task: TaskDef, split: str) -> list[Example]:
    if task.hub is None:
        raise DataError(f"task {task.name!r} has no hub source; set ${DATA_DIR_ENV} to a folder with its files")
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError(f"loading {task.name} from the hub needs `datasets`: {exc}") from exc
    hub_split = {"train": "train", "dev": "validation_matched" if task.name == "mnli" else "validation"}[split]
    try:
        ds = datasets.load_dataset(*task.hub, split=hub_split)
    except Exception as exc:
        raise DataError(
            f"could not load {task.hub[0]}/{task.hub[1]} ({hub_split}) from the hub: {exc}. "
            f"Offline? Set ${DATA_DIR_ENV} to a local GLUE folder."
        ) from exc
    cols = task.hub_text_columns
    out = []
    for row in ds:
        label = float(row["label"]) if task.is_regression else int(row["label"])
        if task.name == "rte":  # the hub's RTE ids are 0=entailment, ours 1=entailment (GLUE TSV order)
            label = 1 - label
        out.append(Example(row[cols[0]], row[cols[1]] if len(cols) > 1 else None, label))
    return out


def load_split(task_name: str | TaskDef, split: str, data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """`split` is "train" or "dev"; reads `<data_dir>/<folder>/<file>` or falls back to the hub."""
    task = get_task(task_name)
    if split not in ("train", "dev"):
        raise DataError(f"split {split!r}: use 'train' or 'dev'")
    root = resolve_data_dir(data_dir)
    if root is None:
        examples = _load_from_hub(task, split)
        where = f"{task.hub[0] if task.hub else task.name} ({split})"
    else:
        path = root / task.folder / (task.train_file if split == "train" else task.dev_file)
        examples, where = _read_file(task, path), str(path)
    if split == "train":
        check_label_variety(task, examples, where)
    return examples


def tokenize(tokenizer: Any, examples: Sequence[Example], max_length: int) -> list[dict[str, list[int]]]:
    """Each example's tokenizer fields (a text pair where the task has one), truncated to max_length: the one
    tokenisation every engine and benchmark feeds its model."""
    texts_b = [e.text_b for e in examples]
    enc = tokenizer(
        [e.text_a for e in examples],
        texts_b if any(t is not None for t in texts_b) else None,
        truncation=True,
        max_length=max_length,
    )
    return [{k: enc[k][i] for k in enc} for i in range(len(examples))]


def check_label_variety(task: TaskDef, examples: Sequence[Example], where: str) -> None:
    """A classifier trained on one class learns a constant: refuse it instead of training silently."""
    if task.is_regression:
        return
    found = {e.label for e in examples}
    if len(found) < 2:
        names = [task.labels[int(i)] for i in sorted(found)]
        raise DataError(
            f"{where}: every training example has label {names}; task {task.name!r} needs at least two of "
            f"{list(task.labels)} (check the label column {task.label_column!r} and the file)"
        )


# ---------------------------------------------------------------------------
# Subsets and protocols


def _strata(examples: Sequence[Example], is_regression: bool) -> dict[object, list[int]]:
    """Group indices by label; regression scores are binned by quartile so subsets keep the spread."""
    groups: dict[object, list[int]] = defaultdict(list)
    if is_regression:
        edges = np.quantile([e.label for e in examples], [0.25, 0.5, 0.75])
        for i, e in enumerate(examples):
            groups[int(np.searchsorted(edges, e.label))].append(i)
    else:
        for i, e in enumerate(examples):
            groups[e.label].append(i)
    return dict(sorted(groups.items(), key=lambda kv: str(kv[0])))


def stratified_sample(
    examples: Sequence[Example], n: int | None, seed: int, is_regression: bool = False
) -> list[Example]:
    """n examples drawn without replacement, keeping label proportions (largest remainder)."""
    if n is None or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    groups = _strata(examples, is_regression)
    total = len(examples)
    quotas = {k: n * len(v) / total for k, v in groups.items()}
    counts = {k: int(q) for k, q in quotas.items()}
    by_remainder = sorted(groups, key=lambda k: (-(quotas[k] - counts[k]), str(k)))
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    chosen: list[int] = []
    for k, idx in groups.items():
        chosen.extend(rng.sample(idx, counts[k]))
    return [examples[i] for i in sorted(chosen)]


def heldout_split(dev: Sequence[Example], split_seed: int, is_regression: bool = False) -> EvalSplits:
    """Zhang et al. 2021: the dev set split per label into a validation half and a test half.

    The split seed is fixed per experiment, independent of the run seeds, so every
    run sees the same halves.
    """
    rng = random.Random(split_seed)
    val: list[int] = []
    test: list[int] = []
    for idx in _strata(dev, is_regression).values():
        shuffled = list(idx)
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        val.extend(shuffled[:half])
        test.extend(shuffled[half:])
    return EvalSplits(tuple(dev[i] for i in sorted(val)), tuple(dev[i] for i in sorted(test)))


def eval_splits(
    task_name: str | TaskDef, dev: Sequence[Example], protocol: str, split_seed: int, eval_size: int | None
) -> EvalSplits:
    """The evaluation sets of a run: plain dev (val only) or Zhang's held-out halves."""
    task = get_task(task_name)
    dev = stratified_sample(dev, eval_size, split_seed, task.is_regression)
    if protocol == "dev":
        return EvalSplits(tuple(dev), None)
    if protocol == "heldout":
        return heldout_split(dev, split_seed, task.is_regression)
    raise DataError(f"eval_protocol {protocol!r}: use 'dev' or 'heldout'")


# ---------------------------------------------------------------------------
# Metrics (returned as fractions; the store keeps x100)


def compute_metric(metric: str, predictions: Sequence[float], labels: Sequence[float]) -> float:
    preds = np.asarray(predictions, dtype=float)
    gold = np.asarray(labels, dtype=float)
    if preds.shape != gold.shape or preds.size == 0:
        raise ValueError(f"metric {metric}: {preds.size} predictions for {gold.size} labels")
    if metric == "accuracy":
        return float(np.mean(preds == gold))
    if metric == "f1":
        return _f1(preds, gold)
    if metric == "acc_f1":  # Dodge et al. 2020 report MRPC as the mean of accuracy and F1
        return (float(np.mean(preds == gold)) + _f1(preds, gold)) / 2
    if metric == "matthews":
        return _matthews(preds, gold)
    if metric in ("spearman", "pearson"):
        if np.ptp(preds) == 0 or np.ptp(gold) == 0:
            return 0.0  # a constant predictor carries no correlation (the papers' majority baseline)
        from scipy import stats  # only the correlation metrics need it: `harness run --dry-run` stays light

        fn = stats.spearmanr if metric == "spearman" else stats.pearsonr
        return float(fn(preds, gold)[0])
    raise ValueError(f"unknown metric {metric!r}")


def _f1(preds: np.ndarray, gold: np.ndarray) -> float:
    tp = float(np.sum((preds == 1) & (gold == 1)))
    fp = float(np.sum((preds == 1) & (gold != 1)))
    fn = float(np.sum((preds != 1) & (gold == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _matthews(preds: np.ndarray, gold: np.ndarray) -> float:
    tp = float(np.sum((preds == 1) & (gold == 1)))
    tn = float(np.sum((preds != 1) & (gold != 1)))
    fp = float(np.sum((preds == 1) & (gold != 1)))
    fn = float(np.sum((preds != 1) & (gold == 1)))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def majority_baseline(task_name: str | TaskDef, train: Sequence[Example], split: Sequence[Example]) -> float:
    """The failed-run bar (Mosbach et al.): the metric of the best constant predictor on `split`.

    For classification that is the split's majority class (for F1 the positive class): a run at or below
    it learned nothing a constant could not do. Taking the best constant, not the training majority, keeps
    the bar meaningful on class-balanced few-sample subsets, where the training "majority" is a tie. For
    regression the constant is the training mean, which scores 0 correlation.
    """
    task = get_task(task_name)
    gold = [e.label for e in split]
    if task.is_regression:
        return compute_metric(task.metric, [float(np.mean([e.label for e in train]))] * len(split), gold)
    return max(compute_metric(task.metric, [float(c)] * len(split), gold) for c in range(task.num_labels))
