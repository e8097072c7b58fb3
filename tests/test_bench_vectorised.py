"""benchmarks/bench_vectorised.py, vectorised_fair.py and group_independence.py at a CPU size (the GPU sizes run in
`make gpu-check` on a GPU; `make gpu-check DRY=1` runs these same paths on a CPU)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_vectorised as bench
import group_independence as gi
import vectorised_fair as fair

from harness.storage.records import RunContext


@pytest.mark.slow
def test_cpu_section_trains_the_same_runs_by_both_loops_and_by_groups(tiny_model_dir: Path, tiny_glue_dir: Path):
    rows = bench.run_cpu_section(
        str(tiny_model_dir), str(tiny_glue_dir), runs=2, steps=2, ks=(1, 2), sample_size=8, batch_size=4,
        eval_size=16, threads=1,
    )  # fmt: skip
    assert [r["how"] for r in rows] == [
        "loop, torch dropout (before SPEC_VERSION 3)", "loop, hash dropout", "vectorised K=1", "vectorised K=2",
    ]  # fmt: skip
    assert all(r["runs"] == 2 and r["done"] == 2 and r["runs_per_hour"] > 0 and r["cpu_s"] > 0 for r in rows)
    assert rows[1]["speedup"] == 1.0 and rows[0]["speedup"] > 0
    text = bench.table(rows, "# t")
    assert text.count("\n| ") == 5 and "vectorised K=2" in text


def test_the_torch_dropout_row_really_trains_the_old_loop(tiny_model_dir: Path, tiny_glue_dir: Path):
    """Inside `torch_dropout()` the loop keeps nn.Dropout (other masks, other losses); outside, hash dropout."""
    from harness.training.loop import fine_tune

    spec = bench.bench_specs(str(tiny_model_dir), 1, 3, 8, 4, eval_size=16, lr=1e-3)[0]
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1)
    hashed = fine_tune(spec, ctx)[0].run["loss_mean"]
    with bench.torch_dropout():
        torch_losses = fine_tune(spec, ctx)[0].run["loss_mean"]
    assert hashed == fine_tune(spec, ctx)[0].run["loss_mean"] and torch_losses != hashed


def test_group_independence_passes_on_cpu_and_fails_an_engine_that_trains_differently(
    tiny_model_dir: Path, tiny_glue_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    specs = bench.bench_specs(str(tiny_model_dir), 4, 4, 16, 4, eval_size=16, lr=1e-3)
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1)
    rows = gi.check(specs, ctx, (2, 4), 2, gi.FP32_CPU)
    assert [r["row"] for r in rows] == ["group of 2 vs loop (2 runs)", "group of 4 vs loop (2 runs)"]
    assert all(r["within_tolerance"] and "error" not in r and r["agreement"] == 1.0 for r in rows)
    from harness.training.vectorised import engine

    schedule = engine.linear_warmup_decay
    monkeypatch.setattr(engine, "linear_warmup_decay", lambda *a: 3 * schedule(*a))
    broken = gi.check(specs, ctx, (2,), 2, gi.FP32_CPU)
    assert not broken[0]["within_tolerance"] and "loss gap" in broken[0]["error"]


@pytest.mark.slow
def test_fair_rows_run_through_harness_run_and_the_same_runs_score_the_same(tiny_model_dir: Path, tiny_glue_dir):
    """Loop and groups of 2, each through `harness run` (cold + warm), precision checked in the stored runs."""
    protocol = fair.dry_run(str(tiny_model_dir), str(tiny_glue_dir))
    protocol = dataclasses.replace(protocol, rows=(fair.Row("fp32", 1), fair.Row("fp32", seeds_per_worker=2)))
    rows = fair.run_fair(protocol)
    assert [r["row"] for r in rows] == ["loop, 1 process(es)/GPU, fp32", "groups of K=2, fp32"]
    assert all("error" not in r for r in rows), rows
    loop, groups = rows
    assert loop["precision"] == groups["precision"] == "fp32 matmuls in ieee fp32"
    assert groups["max_run_gap"] == 0.0 and groups["scores"] == loop["scores"]  # one definition of a run
    assert loop["cold_s"] > 0 and len(loop["warm_all_s"]) == 1 and groups["speedup"] > 0 and 0 < groups["mfu"] < 1
    text = fair.render(rows, protocol, "CPU")
    assert "| groups of K=2, fp32 | fp32 matmuls in ieee fp32 | 2 |" in text


def test_a_row_whose_workers_computed_in_another_precision_fails(tmp_path: Path):
    import pandas as pd

    from harness.storage import store

    runs = pd.DataFrame({"status": ["done", "done"], "provenance": ['{"precision": "fp32 matmuls in tf32"}'] * 2})
    store_dir = tmp_path / "fair"
    store_dir.mkdir()
    original = store.load_runs
    try:
        store.load_runs = lambda path: runs  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="computed in"):
            fair.checked_runs(fair.Row("bf16", 1), tmp_path, 2)
        assert fair.checked_runs(fair.Row("tf32", 1), tmp_path, 2) is runs
    finally:
        store.load_runs = original


@pytest.mark.slow
def test_the_phase_profile_accounts_for_a_group_run_in_a_child(tiny_model_dir: Path, tiny_glue_dir: Path):
    """`bench_vectorised.py --profile`: the child imports the workload (bench_runs) and times every phase."""
    import profile_group

    args = profile_group.parser().parse_args(
        ["--model", str(tiny_model_dir), "--data-dir", str(tiny_glue_dir), "--runs", "2", "--k", "2", "--steps", "2",
         "--sample-size", "8", "--eval-size", "16", "--reps", "1"]
    )  # fmt: skip
    text = profile_group.profile_table(args)
    assert "| forward |" in text and "| optimizer (with gradient gather) |" in text and "| **total** |" in text
