"""Malformed task files: every error names the file and the line; nothing is silently merged or coerced."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.experiment import data as D
from harness.experiment.tasks import TaskDef


def _task(fmt: str, **kw: object) -> TaskDef:
    ext = {"jsonl": "jsonl", "csv": "csv", "tsv": "tsv"}[fmt]
    fields = {
        "name": "mine", "folder": "mine", "fmt": fmt, "text_columns": ("text",), "label_column": "label",
        "labels": ("neg", "pos"), "metric": "accuracy", "train_file": f"train.{ext}", "dev_file": f"dev.{ext}", **kw,
    }  # fmt: skip
    return TaskDef(**fields)


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    (tmp_path / "mine").mkdir(exist_ok=True)
    path = tmp_path / "mine" / name
    path.write_bytes(content)
    return path


def test_a_latin1_byte_names_file_and_line(tmp_path: Path):
    _write(tmp_path, "train.csv", b"text,label\ngood,pos\ncaf\xe9,neg\n")
    with pytest.raises(D.DataError, match=r"train.csv: line 3: byte b'\\xe9' is not UTF-8"):
        D.load_split(_task("csv"), "train", tmp_path)
    _write(tmp_path, "train.jsonl", b'{"text": "a", "label": "pos"}\n{"text": "caf\xe9", "label": "neg"}\n')
    with pytest.raises(D.DataError, match=r"train.jsonl: line 2: .*not UTF-8"):
        D.load_split(_task("jsonl"), "train", tmp_path)


def test_jsonl_line_that_is_not_an_object_or_has_null_text(tmp_path: Path):
    _write(tmp_path, "train.jsonl", b'{"text": "a", "label": "pos"}\n42\n')
    with pytest.raises(D.DataError, match=r"train.jsonl: line 2: expected a JSON object .* got a JSON number"):
        D.load_split(_task("jsonl"), "train", tmp_path)
    _write(tmp_path, "train.jsonl", b'{"text": "a", "label": "pos"}\n\n{"text": null, "label": "neg"}\n')
    with pytest.raises(D.DataError, match=r"train.jsonl: line 3: key\(s\) \['text'\] are null"):
        D.load_split(_task("jsonl"), "train", tmp_path)


def test_unterminated_csv_quote_is_an_error_not_a_merge(tmp_path: Path):
    _write(tmp_path, "train.csv", b'text,label\nfine,pos\n"broken quote,neg\nthird,pos\nfourth,neg\n')
    with pytest.raises(D.DataError, match=r"train.csv: line \d+: malformed CSV"):
        D.load_split(_task("csv"), "train", tmp_path)
    _write(tmp_path, "train.csv", b'text,label\n"a ""quoted"" word, and a comma",pos\n"two\nlines",neg\n')
    examples = D.load_split(_task("csv"), "train", tmp_path)  # valid quoting still reads
    assert [e.text_a for e in examples] == ['a "quoted" word, and a comma', "two\nlines"]


def test_one_class_training_set_is_refused(tmp_path: Path):
    _write(tmp_path, "train.csv", b"text,label\na,pos\nb,pos\nc,pos\n")
    with pytest.raises(D.DataError, match=r"train.csv: every training example has label \['pos'\]"):
        D.load_split(_task("csv"), "train", tmp_path)
    _write(tmp_path, "dev.csv", b"text,label\na,pos\n")
    assert len(D.load_split(_task("csv"), "dev", tmp_path)) == 1  # a one-class dev set is only a poor metric


def test_errors_name_the_file_and_line_never_its_text(tmp_path: Path):
    _write(tmp_path, "train.csv", b"root:x:0:0:SECRET-FIRST-LINE,other\nb,pos\n")
    with pytest.raises(D.DataError) as info:
        D.load_split(_task("csv"), "train", tmp_path)
    assert "train.csv: line 1: column 'text'" in str(info.value) and "SECRET" not in str(info.value)
    _write(tmp_path, "train.jsonl", b'{"text": "a", "label": "pos"}\n["SECRET-ARRAY"]\n')
    with pytest.raises(D.DataError) as info:
        D.load_split(_task("jsonl"), "train", tmp_path)
    assert "got a JSON array" in str(info.value) and "SECRET" not in str(info.value)
