"""One run end to end on a tiny random BERT and tiny data: determinism, curves, statuses."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from harness.experiment.config import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training.loop import batch_order, eval_steps
from harness.training.pipeline import train_run


def _spec(model_dir: Path, **changes) -> RunSpec:
    recipe = Recipe(lr=1e-3, epochs=2.0, batch_size=8, warmup_ratio=0.1)
    base = RunSpec(task="rte", model=str(model_dir), recipe=recipe, init_seed=1, order_seed=2, sample_size=32,
                   max_seq_length=48, num_evals=4, eval_size=20)  # fmt: skip
    return replace(base, **changes)


def test_same_spec_gives_identical_results(tiny_model_dir: Path, tiny_glue_dir: Path):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1)
    a = train_run(_spec(tiny_model_dir), ctx)
    b = train_run(_spec(tiny_model_dir), ctx)
    assert a.curve == b.curve
    for key in ("score", "val_best", "test_best", "loss_first", "loss_last", "flops"):
        assert a.run[key] == b.run[key], key
    c = train_run(_spec(tiny_model_dir, order_seed=3), ctx)
    assert c.run["loss_last"] != a.run["loss_last"]


def test_record_and_curve_contents(tiny_model_dir: Path, tiny_glue_dir: Path):
    result = train_run(_spec(tiny_model_dir), RunContext(data_dir=str(tiny_glue_dir), threads=1))
    run, curve = result.run, result.curve
    assert run["status"] == "done" and run["total_steps"] == 8 and run["steps_done"] == 8
    assert [p["step"] for p in curve] == [2, 4, 6, 8]
    assert all(0 <= p["val_metric"] <= 100 and 0 <= p["test_metric"] <= 100 for p in curve)
    best = max(curve, key=lambda p: (p["val_metric"], -p["step"]))
    assert run["score"] == best["test_metric"] and run["best_step"] == best["step"]
    assert run["majority_val"] == pytest.approx(50.0) and run["metric"] == "accuracy"
    assert run["wall_time_s"] > 0 and run["peak_mem_mb"] > 0 and run["flops"] > 0
    assert '"torch"' in run["provenance"]


def test_dev_protocol_and_final_selection(tiny_model_dir: Path, tiny_glue_dir: Path):
    recipe = Recipe(lr=1e-3, epochs=2.0, batch_size=8, select="final")
    spec = _spec(tiny_model_dir, eval_protocol="dev", task="sst2", recipe=recipe)
    result = train_run(spec, RunContext(data_dir=str(tiny_glue_dir), threads=1))
    assert math.isnan(result.run["test_final"]) and result.run["score"] == result.curve[-1]["val_metric"]


def test_regression_task(tiny_model_dir: Path, tiny_glue_dir: Path):
    result = train_run(_spec(tiny_model_dir, task="stsb"), RunContext(data_dir=str(tiny_glue_dir), threads=1))
    assert result.run["metric"] == "spearman" and -100 <= result.run["score"] <= 100


def test_nan_loss_ends_as_diverged(tiny_model_dir: Path, tiny_glue_dir: Path):
    spec = _spec(tiny_model_dir, recipe=Recipe(lr=1e30, epochs=2.0, batch_size=8, grad_clip=0.0, warmup_ratio=0.0))
    result = train_run(spec, RunContext(data_dir=str(tiny_glue_dir), threads=1))
    assert result.run["status"] == "diverged" and math.isnan(result.run["score"])
    assert result.run["steps_done"] < result.run["total_steps"]


def test_on_eval_false_stops_the_run(tiny_model_dir: Path, tiny_glue_dir: Path):
    seen = []

    def stop_after_first(point) -> bool:
        seen.append(point)
        return False

    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, on_eval=stop_after_first)
    result = train_run(_spec(tiny_model_dir), ctx)
    assert result.run["status"] == "stopped" and len(result.curve) == 1 and result.run["steps_done"] == 2
    assert seen[0].fraction == pytest.approx(0.25) and seen[0].config_key == "rte/standard"


def test_micro_batches_accumulate_to_the_same_update(tiny_model_dir: Path, tiny_glue_dir: Path):
    # Dropout off so the two paths see identical forward passes; gradient accumulation then
    # reproduces the full-batch update up to float rounding.
    spec = _spec(tiny_model_dir, recipe=Recipe(lr=1e-3, epochs=1.0, batch_size=8, dropout=0.0))
    full = train_run(spec, RunContext(data_dir=str(tiny_glue_dir), threads=1))
    micro = train_run(spec, RunContext(data_dir=str(tiny_glue_dir), threads=1, micro_batch_size=3))
    assert micro.run["loss_last"] == pytest.approx(full.run["loss_last"], rel=1e-4)
    assert micro.run["val_best"] == full.run["val_best"]


def test_batch_order_and_eval_steps():
    import torch

    batches = batch_order(10, 4, 7, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(i for b in batches[:3] for i in b) == list(range(10))
    assert eval_steps(100, 4) == [25, 50, 75, 100]
    assert eval_steps(3, 10) == [1, 2, 3]


@pytest.mark.real
def test_packaged_model_learns_sst2(packaged_model: str, glue_dir: Path):
    """A real pre-trained encoder on real data beats the majority class within 50 updates.

    (The packaged MiniLM's [CLS]/pooler path starts nearly constant across inputs: it needs all six
    layers and a lr around 1e-4 to move off the majority class this quickly.)
    """
    spec = RunSpec(task="sst2", model=packaged_model, recipe=Recipe(lr=1e-4, max_steps=50, batch_size=16),
                   init_seed=1, order_seed=1, sample_size=800, max_seq_length=48, num_evals=2,
                   eval_size=200, eval_protocol="dev")  # fmt: skip
    result = train_run(spec, RunContext(data_dir=str(glue_dir), threads=2))
    assert result.run["status"] == "done"
    assert result.run["score"] > result.run["majority_val"] + 10


def test_custom_csv_task_trains(tiny_model_dir: Path, tmp_path: Path):
    from harness.experiment.config import parse_experiment

    folder = tmp_path / "reviews"
    folder.mkdir()
    for name, n in (("train.csv", 40), ("dev.csv", 20)):
        rows = [f'"review {i}, {"great" if i % 2 else "awful"}",{"pos" if i % 2 else "neg"}' for i in range(n)]
        (folder / name).write_text("text,stars\n" + "\n".join(rows) + "\n")
    exp = parse_experiment(
        {"name": "own", "task": "reviews", "model": str(tiny_model_dir), "seeds": 1, "num_evals": 2,
         "max_seq_length": 32, "recipes": {"a": {"lr": 1e-3, "epochs": 1.0, "batch_size": 8}},
         "custom_tasks": {"reviews": {"folder": "reviews", "text_columns": ["text"], "label_column": "stars",
                                      "labels": ["neg", "pos"], "metric": "f1"}}},
    )  # fmt: skip
    result = train_run(exp.runs[0], RunContext(data_dir=str(tmp_path), threads=1))
    assert result.run["status"] == "done" and result.run["metric"] == "f1" and result.run["task"] == "reviews"
