"""What an import decides for the verdicts: the checkpoint rule where the analysis reads it (expected test
performance selects on validation), `--missing constant`, and the degenerate bar of the split that is scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.seeds.degenerate import degenerate_rules, is_degenerate, rounding_tolerance
from harness.analysis.seeds.emp import expected_max, expected_max_table, expected_test
from harness.importer import ImportOptions, import_runs
from harness.storage.store import load_runs


def _csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _cola_rows(with_val: bool = True) -> list[dict]:
    """CoLA runs whose best test score is not the one of the best validation seed (val and test disagree)."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(1, 31):
        val, test = 60 + rng.normal(0, 3), 60 + rng.normal(0, 3)  # independent: selecting on val buys nothing
        row = {"task": "cola", "condition": "bertadam", "seed": seed, "test_final": round(test, 2),
               "test_best": round(test + 1, 2), "majority": 0.0}  # fmt: skip
        if with_val:
            row.update(val_final=round(val, 2), val_best=round(val + 1, 2))
        rows.append(row)
    return rows


def test_expected_test_of_an_import_selects_on_validation(tmp_path: Path):
    """--select final: the runs keep it in their recipe (where the analysis reads it), so the expected test
    performance is the test score of the best-on-validation seed, not the expected max of the test scores."""
    src = _csv(tmp_path / "runs.csv", _cola_rows())
    import_runs(src, tmp_path / "results", ImportOptions(name="t", select="final"))
    runs = load_runs(tmp_path / "results" / "t")
    table = expected_max_table(runs, n_boot=0)
    max_of_test = expected_max(runs["test_final"].to_numpy(float), n_boot=0)["emp"].to_numpy()
    assert table["test_emp"].iloc[9] < max_of_test[9] - 1  # n = 10: the old number was the max of test
    assert set(table["column"]) == {"val_final"}
    want = expected_test(runs["val_final"].to_numpy(float), runs["test_final"].to_numpy(float), n_boot=0)
    assert table["test_emp"].to_numpy() == pytest.approx(want["emp"].to_numpy())
    assert json.loads(runs["spec"].iloc[0])["recipe"]["select"] == "final"


def test_without_validation_scores_the_curve_says_test_and_there_is_no_expected_test(tmp_path: Path):
    src = _csv(tmp_path / "runs.csv", _cola_rows(with_val=False))
    import_runs(src, tmp_path / "results", ImportOptions(name="t", select="final"))
    table = expected_max_table(load_runs(tmp_path / "results" / "t"), n_boot=0)
    assert set(table["column"]) == {"score (test split)"} and table["test_emp"].isna().all()


def _stsb_rows() -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for recipe, level, holes in (("standard", 86.0, 4), ("mosbach", 88.0, 0)):
        for seed in range(1, 21):
            score = "" if seed <= holes else round(level + rng.normal(0, 1.0), 2)
            rows.append({"task": "stsb", "condition": recipe, "seed": seed, "score": score})
    return rows


def test_missing_constant_scores_the_constant_predictor_and_counts_it_degenerate(tmp_path: Path):
    """A constant predictor's Spearman is NaN in a log: --missing constant scores it 0 (the harness's own value)
    and counts it degenerate, as the docs say; --missing diverged leaves it unscored. The verdicts differ."""
    from harness.analysis.verdicts.claims import claim_verdicts
    from harness.experiment.paper import parse_paper

    src = _csv(tmp_path / "runs.csv", _stsb_rows())
    paper = parse_paper({"source": "s", "claims": [
        {"claim": "Mosbach raises the mean", "task": "stsb", "a": "mosbach", "b": "standard"},
        {"claim": "Mosbach shrinks the spread", "task": "stsb", "a": "mosbach", "b": "standard", "statistic": "std",
         "direction": "less"}]})  # fmt: skip
    labels = {}
    for rule in ("constant", "diverged"):
        import_runs(src, tmp_path / rule, ImportOptions(name="s", missing=rule))
        runs = load_runs(tmp_path / rule / "s")
        holes = runs[(runs["recipe"] == "standard") & (runs["init_seed"] <= 4)]
        assert {json.loads(p)["missing_score"] for p in holes["provenance"]} == {rule}
        assert is_degenerate(holes).all()
        verdicts = claim_verdicts(paper, runs, n_boot=300, n_perm=199)
        labels[rule] = [v.label for v in verdicts]
        assert all(f"--missing {rule}" in " ".join(v.caveats) for v in verdicts)
        if rule == "constant":
            assert (holes["status"] == "done").all() and (holes["score"] == 0.0).all()
        else:
            assert (holes["status"] == "diverged").all() and holes["score"].isna().all()
    # the four constant predictors at 0 make standard's spread huge: the spread claim holds only under "constant"
    assert labels == {"constant": ["reproduced", "reproduced"], "diverged": ["reproduced", "inconclusive"]}


def test_missing_constant_is_printed_in_the_report(tmp_path: Path):
    from harness.experiment.config import load_experiment
    from harness.report import write_report

    src = _csv(tmp_path / "runs.csv", _stsb_rows())
    import_runs(src, tmp_path, ImportOptions(name="s", missing="constant"))
    spec = load_experiment(tmp_path / "s" / "experiment.toml")
    md = write_report(tmp_path / "s", spec=spec, n_boot=100, n_perm=99).read_text()
    assert "4 imported run(s) had no score in the log and were scored as the constant predictor" in md
    assert "`harness import --missing constant`" in md


def _rte_dir(root: Path) -> Path:
    """An RTE dev set of 7 examples, 5 entailment: 71.4% majority on dev, 3 of 4 (75%) on its test half."""
    (root / "RTE").mkdir(parents=True)
    rows = [f"{i}\ta\tb\t{'entailment' if i < 5 else 'not_entailment'}" for i in range(7)]
    for name in ("dev.tsv", "train.tsv"):
        (root / "RTE" / name).write_text("index\tsentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")
    return root


def test_degenerate_bar_of_a_heldout_import_is_the_test_halfs_majority(tmp_path: Path):
    from harness.experiment.data import eval_splits, load_split, majority_baseline

    data = _rte_dir(tmp_path / "glue")
    src = _csv(tmp_path / "runs.csv", [{"task": "rte", "condition": "x", "seed": s, "test_final": 74.0 + s / 10}
                                       for s in range(1, 5)])  # fmt: skip
    import_runs(src, tmp_path / "results", ImportOptions(name="t", data_dir=str(data)))
    runs = load_runs(tmp_path / "results" / "t")
    dev = load_split("rte", "dev", str(data))
    test_half = eval_splits("rte", dev, "heldout", 0, None).test
    assert 100 * majority_baseline("rte", [], test_half) == pytest.approx(75.0)
    assert 100 * majority_baseline("rte", [], dev) == pytest.approx(500 / 7)
    assert runs["majority_test"].tolist() == pytest.approx([75.0] * 4) and runs["majority_val"].isna().all()
    assert is_degenerate(runs).tolist() == [True, True, True, True]  # 74.1-74.4 <= 75.0 (the dev bar said no)
    rules = degenerate_rules(runs)
    tol = rounding_tolerance(runs["score"].to_numpy(float), runs["majority_test"].to_numpy(float))
    assert rules["tolerance"].iloc[0] == tol == 0.5  # a bar stored as 75.0 has no decimals: half a point
    assert f"baseline of the scored test half + {tol:g} (half a unit of the stored scores' precision)" in rules[
        "rule"].iloc[0]  # fmt: skip
