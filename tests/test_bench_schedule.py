"""The benchmarks' experiment builders parse (their GPU sections never ran before a GPU was at hand)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_anchor
import bench_schedule

from harness.experiment.config import parse_experiment


@pytest.mark.parametrize("packing", [1, 8])
def test_gpu_experiment_of_bench_schedule_parses(packing: int):
    exp = bench_schedule.gpu_experiment(f"bench-gpu-{packing}", 40, packing)
    assert len(exp.runs) == 40 and exp.schedule.runs_per_gpu == packing
    assert {r.recipe.name for r in exp.runs} == {"few"} and exp.runs[0].recipe.max_steps == 60


def test_anchor_setting_is_a_valid_experiment_via_its_toml():
    import tomllib

    setting = bench_anchor.GPU_SETTING
    text = bench_anchor._toml(setting.experiment("anchor", [1, 2, 3, 4], runs_per_gpu=8))
    exp = parse_experiment(tomllib.loads(text), "<anchor>")
    recipe = exp.runs[0].recipe
    assert len(exp.runs) == 4 and exp.schedule.runs_per_gpu == 8 and exp.runs[0].sample_size is None
    assert (recipe.lr, recipe.batch_size, recipe.epochs, recipe.warmup_ratio) == (2e-5, 16, 3.0, 0.1)
    assert exp.runs[0].max_seq_length == 128 and exp.runs[0].num_evals == 3
