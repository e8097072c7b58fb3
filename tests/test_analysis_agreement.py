"""Churn and per-example agreement as analysis tables (harness/analysis/predictions/agreement.py), queried like
the others."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.analysis.predictions.agreement import prediction_tables, top_flips
from harness.analysis.predictions.churn import churn, flip_rate, most_flipped, recipe_agreement


def _frames(rng: np.random.Generator, n_seeds: int = 4, n_examples: int = 30):
    labels = rng.integers(0, 2, n_examples)
    runs, preds, matrices = [], [], {}
    for recipe, noise in (("base", 0.3), ("better", 0.1)):
        rows = []
        for seed in range(n_seeds):
            p = np.where(rng.random(n_examples) < noise, 1 - labels, labels)
            run_id = f"{recipe}-{seed}"
            runs.append({"run_id": run_id, "task": "rte", "recipe": recipe, "status": "done"})
            preds.append(pd.DataFrame({"run_id": run_id, "split": "test", "example": range(n_examples),
                                       "prediction": p.astype(float)}))  # fmt: skip
            rows.append(p)
        matrices[recipe] = np.array(rows, dtype=float)
    runs.append({"run_id": "crashed", "task": "rte", "recipe": "base", "status": "failed"})  # no predictions
    return pd.DataFrame(runs), pd.concat(preds, ignore_index=True), matrices, labels.astype(float)


def test_tables_hold_the_churn_statistics_of_each_recipe():
    runs, preds, matrices, labels = _frames(np.random.default_rng(0))
    tables = prediction_tables(runs, preds, baseline="base", labels={"rte": labels})
    table = tables["churn"].set_index("recipe")
    for recipe, m in matrices.items():
        res = churn(m)
        row = table.loc[recipe]
        assert (row["churn"], row["ci_low"], row["ci_high"]) == pytest.approx((res.churn, res.ci_low, res.ci_high))
        share = (m == labels).mean(axis=0)
        assert row["always_right"] == (share == 1).sum() and row["flips"] == ((share > 0) & (share < 1)).sum()
        assert row["split"] == "test" and row["n_runs"] == 4 and row["n_examples"] == 30
    per_example = tables["per_example"]
    base = per_example[per_example["recipe"] == "base"]
    np.testing.assert_allclose(base["flip_rate"], flip_rate(matrices["base"]))
    np.testing.assert_allclose(base["share_correct"], (matrices["base"] == labels).mean(axis=0))
    want = most_flipped(matrices["base"], labels, top=5)
    want = want[want["flip_rate"] > 0]
    got = top_flips(per_example, "rte", "base", top=5)
    assert got["example"].tolist() == want["example"].tolist() and got["votes"].tolist() == want["votes"].tolist()
    agreement = tables["recipe_agreement"].iloc[0]
    ref = recipe_agreement(matrices["better"], matrices["base"], labels)
    assert (agreement["a"], agreement["b"]) == ("better", "base")
    assert agreement["p_value"] == ref.p_value and agreement["excess"] == pytest.approx(ref.excess)


def test_without_labels_or_predictions_the_tables_stay_well_formed():
    runs, preds, _, _ = _frames(np.random.default_rng(1))
    tables = prediction_tables(runs, preds)  # no gold labels: the label columns are empty
    assert tables["churn"]["always_right"].isna().all() and tables["per_example"]["share_correct"].isna().all()
    empty = prediction_tables(runs, preds.iloc[0:0])
    assert all(frame.empty for frame in empty.values())
    assert list(empty["churn"].columns) == list(tables["churn"].columns)
    assert prediction_tables(runs, preds, regression={"rte"})["churn"].empty  # no class churn on a regression task


def test_churn_table_answers_a_duckdb_query(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    runs, preds, matrices, labels = _frames(np.random.default_rng(2))
    prediction_tables(runs, preds, labels={"rte": labels})["churn"].to_parquet(tmp_path / "churn.parquet")
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT recipe, round(100 * churn, 3) FROM read_parquet('{tmp_path / 'churn.parquet'}') ORDER BY churn"
        )
        .fetchall()
    )
    assert rows == sorted(((r, round(100 * churn(m).churn, 3)) for r, m in matrices.items()), key=lambda x: x[1])
