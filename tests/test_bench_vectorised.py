"""benchmarks/bench_vectorised.py: its CPU path at a tiny size (the GPU section runs on a GPU machine only)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_vectorised as bench
import pytest


@pytest.mark.slow
def test_cpu_section_trains_the_same_runs_by_loop_and_by_groups(tiny_model_dir: Path, tiny_glue_dir: Path) -> None:
    rows = bench.run_cpu_section(
        str(tiny_model_dir), str(tiny_glue_dir), runs=2, steps=2, ks=(1, 2), sample_size=8, batch_size=4, eval_size=16
    )
    assert [r["how"] for r in rows] == ["loop, one run at a time", "vectorised K=1", "vectorised K=2"]
    assert all(r["runs"] == 2 and r["done"] == 2 and r["runs_per_hour"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[2]["speedup"] > 0
    text = bench.table(rows, "# t")
    assert text.count("\n| ") == 4 and "vectorised K=2" in text


def test_gpu_section_is_a_function_of_model_data_and_out_dirs() -> None:
    params = inspect.signature(bench.run_gpu_section).parameters
    assert list(params)[:3] == ["model_dir", "data_dir", "out_dir"]
    assert all(p.default is not inspect.Parameter.empty for p in list(params.values())[3:])
