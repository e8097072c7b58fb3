"""The scheduler with the real training function on a tiny random BERT.

Integration: the worker imports harness.training.loop.
"""

from __future__ import annotations

from pathlib import Path

from harness.experiment.config import EarlyStopPolicy, ExperimentSpec, Recipe, RunSpec, SchedulePolicy
from harness.schedule import run_experiment
from harness.storage.store import load_curves, load_runs


def test_real_runs_through_the_scheduler_with_early_stopping(
    tiny_model_dir: Path, tiny_glue_dir: Path, tmp_path: Path
) -> None:
    recipe = Recipe(lr=1e-3, epochs=2.0, batch_size=8, warmup_ratio=0.1)
    runs = tuple(
        RunSpec(
            task="rte",
            model=str(tiny_model_dir),
            recipe=recipe,
            init_seed=s,
            order_seed=s,
            sample_size=32,
            max_seq_length=48,
            num_evals=4,
            eval_size=20,
            experiment="tiny",
        )
        for s in (1, 2, 3)
    )
    policy = SchedulePolicy(threads_per_run=1, early_stop=EarlyStopPolicy(at=0.25, keep=1))
    exp = ExperimentSpec(name="tiny", runs=runs, schedule=policy)
    summary = run_experiment(exp, tmp_path, data_dir=str(tiny_glue_dir), max_workers=3, progress=False)
    stored = load_runs(tmp_path / "tiny")
    assert len(stored) == 3 and summary.failed == 0, stored["error"].tolist()
    assert sorted(stored["status"]) == ["done", "stopped", "stopped"]  # keep = 1 seed of 3 at the rung
    curves = load_curves(tmp_path / "tiny")
    stopped = stored.loc[stored["status"] == "stopped", "run_id"]
    assert curves[curves["run_id"].isin(stopped)]["fraction"].max() < 1.0
    assert summary.compute_saved_runs > 1.0
