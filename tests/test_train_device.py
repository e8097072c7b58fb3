"""The run loop with precision, determinism and phase timings, on CPU with the tiny model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.experiment.config import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training.device import DeviceError
from harness.training.pipeline import train_run


def _spec(model_dir: Path, **recipe_changes) -> RunSpec:
    recipe = replace(Recipe(lr=1e-3, epochs=2.0, batch_size=8, warmup_ratio=0.1), **recipe_changes)
    return RunSpec(task="rte", model=str(model_dir), recipe=recipe, init_seed=1, order_seed=2, sample_size=32,
                   max_seq_length=48, num_evals=4, eval_size=20)  # fmt: skip


def test_phases_are_recorded_and_add_up(tiny_model_dir: Path, tiny_glue_dir: Path):
    run = train_run(_spec(tiny_model_dir), RunContext(data_dir=str(tiny_glue_dir), threads=1)).run
    phases = json.loads(run["phases"])
    assert set(phases) == {"data", "model", "tokenize", "train", "eval"}
    assert all(v >= 0 for v in phases.values()) and phases["train"] > 0 and phases["eval"] > 0
    assert sum(phases.values()) <= run["wall_time_s"] + 0.01


def test_bf16_trains_on_cpu_and_differs_from_fp32(tiny_model_dir: Path, tiny_glue_dir: Path):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1)
    fp32 = train_run(_spec(tiny_model_dir), ctx).run
    bf16 = train_run(_spec(tiny_model_dir, precision="bf16"), ctx).run
    assert bf16["status"] == "done" and bf16["steps_done"] == bf16["total_steps"]
    assert bf16["loss_first"] != fp32["loss_first"]  # autocast really changed the arithmetic
    assert bf16["loss_first"] == pytest.approx(fp32["loss_first"], rel=0.05)
    assert bf16["run_id"] != fp32["run_id"]


def test_fp16_on_cpu_is_refused_naming_the_field(tiny_model_dir: Path, tiny_glue_dir: Path):
    with pytest.raises(DeviceError, match="recipe 'standard': field 'precision' = 'fp16' needs a CUDA GPU"):
        train_run(_spec(tiny_model_dir, precision="fp16"), RunContext(data_dir=str(tiny_glue_dir), threads=1))


def test_deterministic_run_repeats_exactly(tiny_model_dir: Path, tiny_glue_dir: Path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, deterministic=True)
        a = train_run(_spec(tiny_model_dir), ctx)
        assert torch.are_deterministic_algorithms_enabled()
        b = train_run(_spec(tiny_model_dir), ctx)
        assert a.curve == b.curve and a.run["loss_last"] == b.run["loss_last"]
    finally:
        torch.use_deterministic_algorithms(before)
