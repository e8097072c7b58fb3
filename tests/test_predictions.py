"""Per-example predictions: the run keeps those of its selected checkpoint; the store keeps one part per run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.experiment import data as D
from harness.experiment.config import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.storage.store import load_predictions, write_predictions, write_run
from harness.training.loop import keep_predictions, selected_predictions
from harness.training.pipeline import train_run


def _point(val: float, step: int) -> dict:
    return {"val_metric": val, "step": step}


def test_keep_predictions_holds_earliest_best_and_latest():
    kept = None
    for i, val in enumerate([50.0, 70.0, 70.0, 60.0]):
        kept = keep_predictions(kept, _point(val, i + 1), {"val": [float(i)], "test": [float(i)]})
    assert kept.best == {"val": [1.0], "test": [1.0]}  # the first of the two 70s
    assert kept.final == {"val": [3.0], "test": [3.0]}
    curve = [_point(50.0, 1)]
    best_spec = RunSpec(task="rte", model="m", recipe=Recipe(select="best"), init_seed=1, order_seed=1)
    final_spec = replace(best_spec, recipe=Recipe(select="final"))
    assert selected_predictions(best_spec, curve, kept, "done")["val"] == [1.0]
    assert selected_predictions(final_spec, curve, kept, "done")["val"] == [3.0]
    assert selected_predictions(best_spec, curve, kept, "diverged") is None
    assert selected_predictions(best_spec, [], None, "done") is None


@pytest.mark.parametrize("select", ["best", "final"])
def test_run_predictions_reproduce_its_score(tiny_model_dir: Path, tiny_glue_dir: Path, select: str):
    recipe = Recipe(lr=1e-3, epochs=2.0, batch_size=8, warmup_ratio=0.1, select=select)
    spec = RunSpec(task="rte", model=str(tiny_model_dir), recipe=recipe, init_seed=1, order_seed=2, sample_size=32,
                   max_seq_length=48, num_evals=4, eval_size=20)  # fmt: skip
    result = train_run(spec, RunContext(data_dir=str(tiny_glue_dir), threads=1))
    splits = D.eval_splits(spec.task, D.load_split(spec.task, "dev", str(tiny_glue_dir)), spec.eval_protocol,
                           spec.split_seed, spec.eval_size)  # fmt: skip
    preds = result.predictions
    assert preds is not None and len(preds["val"]) == len(splits.val) and len(preds["test"]) == len(splits.test)
    test_acc = 100 * D.compute_metric("accuracy", preds["test"], [e.label for e in splits.test])
    val_acc = 100 * D.compute_metric("accuracy", preds["val"], [e.label for e in splits.val])
    assert test_acc == pytest.approx(result.run["score"])
    expected_val = result.run["val_best"] if select == "best" else result.run["val_final"]
    assert val_acc == pytest.approx(expected_val)


def _run_row(run_id: str) -> dict:
    return {"run_id": run_id, "experiment": "x", "task": "rte", "recipe": "r", "model": "m", "config_key": "rte/r",
            "init_seed": 1, "order_seed": 1, "sample_seed": 0, "status": "done", "score": 50.0, "steps_done": 1,
            "total_steps": 1, "attempts": 1}  # fmt: skip


def test_store_round_trip_and_only_stored_runs(tmp_path: Path):
    write_predictions(tmp_path, "a", {"val": [0.0, 1.0, 1.0], "test": [1.0, 0.0]})
    write_run(tmp_path, _run_row("a"), [])
    write_predictions(tmp_path, "orphan", {"val": [1.0]})  # no runs/ part: a crash mid-write
    frame = load_predictions(tmp_path)
    assert list(frame["run_id"].unique()) == ["a"]
    assert frame[frame["split"] == "val"]["prediction"].tolist() == [0.0, 1.0, 1.0]
    assert frame[frame["split"] == "test"]["example"].tolist() == [0, 1]
    write_predictions(tmp_path, "a", {"val": [2.5], "test": []})  # a rewrite replaces the part (snapshot too)
    again = load_predictions(tmp_path)
    assert again["prediction"].tolist() == [2.5] and (tmp_path / "predictions.parquet").is_file()


def test_predictions_part_size_for_rte(tmp_path: Path):
    """RTE dev (277 examples) under the held-out protocol: val 138 + test 139 predictions per run."""
    rng = np.random.default_rng(0)
    preds = {"val": rng.integers(0, 2, 138).tolist(), "test": rng.integers(0, 2, 139).tolist()}
    write_predictions(tmp_path, "r", preds)
    size = (tmp_path / "predictions" / "r.parquet").stat().st_size
    assert size < 8_000  # a few KB per run; the measured size is stated in docs/reports.md
