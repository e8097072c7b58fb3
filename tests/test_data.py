"""Task data: loaders, errors with path and line, subsets, Zhang's held-out protocol, metrics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.experiment import data as D


def test_real_rte_and_mrpc_row_counts(glue_dir: Path):
    # Row counts and label balance from GLUE's published statistics (shared/data/glue/SOURCES.md).
    rte = D.load_split("rte", "train", glue_dir)
    assert len(rte) == 2490
    assert Counter(e.label for e in rte) == {1: 1249, 0: 1241}
    mrpc = D.load_split("mrpc", "dev", glue_dir)
    assert len(mrpc) == 408 and Counter(e.label for e in mrpc) == {1: 279, 0: 129}
    cola = D.load_split("cola", "train", glue_dir)
    assert len(cola) == 8551 and cola[0].text_b is None
    stsb = D.load_split("stsb", "dev", glue_dir)
    assert len(stsb) == 1500 and all(0 <= e.label <= 5 for e in stsb)
    mnli = D.load_split("mnli", "train", glue_dir)
    assert len(mnli) == 9815 and Counter(e.label for e in mnli)[0] == 3479


def test_majority_baselines_match_zhang_et_al(glue_dir: Path):
    # Zhang et al. 2021 report majority baselines on the val / test halves of the dev set:
    # RTE 52.9 / 52.5 accuracy, MRPC 81.3 / 81.2 F1, CoLA 0 / 0 MCC (PAPERS.md).
    for task, expected in (("rte", (52.9, 52.5)), ("mrpc", (81.3, 81.2)), ("cola", (0.0, 0.0))):
        train = D.load_split(task, "train", glue_dir)
        splits = D.eval_splits(task, D.load_split(task, "dev", glue_dir), "heldout", split_seed=0, eval_size=None)
        val = 100 * D.majority_baseline(task, train, splits.val)
        test = 100 * D.majority_baseline(task, train, splits.test)
        assert (round(val, 1), round(test, 1)) == expected, task


def test_heldout_halves_are_disjoint_per_label_and_fixed(glue_dir: Path):
    dev = D.load_split("rte", "dev", glue_dir)
    a = D.eval_splits("rte", dev, "heldout", split_seed=0, eval_size=None)
    b = D.eval_splits("rte", dev, "heldout", split_seed=0, eval_size=None)
    assert a == b
    assert set(a.val).isdisjoint(a.test) and len(a.val) + len(a.test) == len(dev)
    for label, count in Counter(e.label for e in dev).items():
        assert sum(e.label == label for e in a.val) == count // 2
    c = D.eval_splits("rte", dev, "heldout", split_seed=1, eval_size=None)
    assert c.val != a.val
    plain = D.eval_splits("rte", dev, "dev", split_seed=0, eval_size=None)
    assert plain.test is None and len(plain.val) == len(dev)


def test_stratified_sample_keeps_proportions_and_depends_on_seed():
    examples = [D.Example(str(i), None, int(i < 30)) for i in range(100)]  # 30% positives
    sub = D.stratified_sample(examples, 20, seed=1)
    assert len(sub) == 20 and sum(e.label for e in sub) == 6
    assert D.stratified_sample(examples, 20, seed=1) == sub
    assert D.stratified_sample(examples, 20, seed=2) != sub
    assert D.stratified_sample(examples, None, seed=1) == examples


def test_missing_file_and_malformed_rows_name_path_and_line(tmp_path: Path):
    with pytest.raises(D.DataError, match=r"RTE/train.tsv: missing"):
        D.load_split("rte", "train", tmp_path)
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n")
    with pytest.raises(D.DataError, match=r"train.tsv: line 3: 3 columns, expected at least 4"):
        D.load_split("rte", "train", tmp_path)
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(D.DataError, match=r"line 2: label 'maybe' is not one of"):
        D.load_split("rte", "train", tmp_path)
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_split("rte", "train", tmp_path / "nowhere")


def test_metrics_against_closed_forms_and_scipy():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, gold, 1 - gold)
    tp = np.sum((pred == 1) & (gold == 1))
    tn = np.sum((pred == 0) & (gold == 0))
    fp = np.sum((pred == 1) & (gold == 0))
    fn = np.sum((pred == 0) & (gold == 1))
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert D.compute_metric("matthews", pred, gold) == pytest.approx(mcc)
    # MCC equals the Pearson correlation of two binary vectors (phi coefficient).
    assert D.compute_metric("matthews", pred, gold) == pytest.approx(stats.pearsonr(pred, gold)[0])
    assert D.compute_metric("f1", pred, gold) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert D.compute_metric("accuracy", pred, gold) == pytest.approx((tp + tn) / 200)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert D.compute_metric("spearman", x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert D.compute_metric("spearman", np.ones(50), y) == 0.0  # constant predictor


def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tiny_glue_dir: Path):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tiny_glue_dir))
    assert len(D.load_split("rte", "train")) == 80
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tiny_glue_dir / "missing"))
    with pytest.raises(D.DataError, match=r"\$HARNESS_DATA_DIR"):
        D.load_split("rte", "train")


def test_majority_baseline_is_the_best_constant_even_on_a_balanced_subset(glue_dir: Path):
    # A class-balanced 300-example RTE subset has no training majority; the bar must still be the
    # 52.5 a constant "entailment" predictor scores on the test half, not the 47.5 of the other class.
    train = D.stratified_sample(D.load_split("rte", "train", glue_dir), 300, seed=0)
    assert Counter(e.label for e in train) == {0: 150, 1: 150}
    splits = D.eval_splits("rte", D.load_split("rte", "dev", glue_dir), "heldout", split_seed=0, eval_size=None)
    assert round(100 * D.majority_baseline("rte", train, splits.test), 1) == 52.5
