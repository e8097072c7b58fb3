"""Warm workers of the local backend: a slot's process serves its attempts in turn; a crash still costs one."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers inherit sys.path: the fakes import there

from fakes_groups import group_experiment
from fakes_schedule import make_experiment

from harness.experiment.config import ExperimentSpec, Recipe, RunSpec, SchedulePolicy
from harness.schedule import run_experiment
from harness.schedule.local import LocalBackend, memory_per_slot, parse_free_memory, plan_slots
from harness.schedule.memory import PROCESS_RESERVE
from harness.storage.store import load_curves, load_runs


@pytest.fixture(autouse=True)
def _fake_env(fake_state: Path) -> None:
    """Every test here runs the fake train functions against a fresh state folder (conftest.fake_state)."""


def _pids(exp_dir: Path) -> dict[int, int]:
    """init_seed -> pid of the worker that stored it (the fakes write `pid=` in the notes)."""
    runs = load_runs(exp_dir).dropna(subset=["notes"])  # a failed run has no notes
    found = zip(runs["init_seed"], runs["notes"], strict=True)
    return {int(seed): int(re.search(r"pid=(\d+)", note).group(1)) for seed, note in found}


def test_one_slot_trains_every_run_in_one_warm_process(tmp_path: Path) -> None:
    exp = make_experiment("warm", 4)
    run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy", max_workers=1, progress=False)
    assert len(set(_pids(tmp_path / "warm").values())) == 1


def test_seed_groups_reuse_the_slot_worker_too(tmp_path: Path) -> None:
    exp = group_experiment("warmgroups", 4, 1)  # K = 1: four groups one after another on one slot
    run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy", group_fn="fakes_groups:group_sleepy",
                   max_workers=1, progress=False)  # fmt: skip
    assert len(set(_pids(tmp_path / "warmgroups").values())) == 1


def test_a_killed_worker_costs_its_run_and_the_slot_gets_a_fresh_process(tmp_path: Path) -> None:
    exp = make_experiment("warmkill", 4)
    summary = run_experiment(exp, tmp_path, train_fn="fakes_schedule:die_once_on_seed_2", max_workers=1,
                             progress=False)  # fmt: skip
    pids = _pids(tmp_path / "warmkill")
    assert (summary.done, summary.retries) == (4, 1)
    assert pids[1] != pids[2] and pids[2] == pids[3] == pids[4]  # seed 2's retry and the rest: the new worker


def test_a_worker_whose_run_raised_is_not_reused(tmp_path: Path) -> None:
    exp = make_experiment("warmraise", 4, max_retries=1)
    run_experiment(exp, tmp_path, train_fn="fakes_schedule:raise_on_seed_3", max_workers=1, progress=False)
    runs = load_runs(tmp_path / "warmraise").set_index("init_seed")
    pids = _pids(tmp_path / "warmraise")
    raised = {int(p) for p in re.findall(r"boom in seed 3 \(pid (\d+)\)", runs.loc[3, "error"])}
    assert runs.loc[3, "status"] == "failed" and pids[1] == pids[2]
    assert pids[4] != pids[1] and pids[4] not in raised  # two crashes, two fresh processes


def test_warm_workers_off_is_one_process_per_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_WARM_WORKERS", "0")
    exp = make_experiment("cold", 3)
    run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy", max_workers=1, progress=False)
    assert len(set(_pids(tmp_path / "cold").values())) == 3


def test_memory_per_slot_shares_each_gpu_between_its_slots() -> None:
    gib = 2**30
    slots = plan_slots(["0", "1"], runs_per_gpu=2, threads_per_run=1, max_workers=3)  # gpu0, gpu1, gpu0
    assert memory_per_slot(slots, {"0": 10 * gib, "1": 30 * gib}) == (10 * gib - 2 * PROCESS_RESERVE) // 2
    assert memory_per_slot(slots, {"0": 10 * gib}) is None  # a GPU's free memory unknown: no limit
    assert memory_per_slot(plan_slots([], 1, 1, 2, cpus=2), {}) is None
    smi = "0, GPU-aa11, 81000\n1, GPU-bb22, [N/A]\n"  # nvidia-smi's csv: index, UUID, free MiB
    assert parse_free_memory(smi) == {"0": 81000 * 2**20, "GPU-aa11": 81000 * 2**20}
    backend = LocalBackend("fakes_schedule:sleepy", {}, gpus=["0"], gpu_free={"0": 5 * gib}, runs_per_gpu=2)
    assert backend.memory_per_slot == (5 * gib - 2 * PROCESS_RESERVE) // 2 and "GiB per slot" in backend.describe()


def _tiny_experiment(name: str, model: Path, seeds: tuple[int, ...]) -> ExperimentSpec:
    recipe = Recipe(lr=1e-3, max_steps=6, batch_size=4, warmup_ratio=0.1)
    runs = tuple(
        RunSpec(
            "rte",
            str(model),
            recipe,
            s,
            s,
            experiment=name,
            sample_size=16,
            max_seq_length=32,
            num_evals=2,
            eval_size=12,
        )
        for s in seeds
    )
    return ExperimentSpec(name=name, runs=runs, schedule=SchedulePolicy(threads_per_run=1))


def test_a_run_trained_after_another_in_a_warm_worker_equals_a_fresh_process(
    tiny_model_dir: Path, tiny_glue_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real training function: seed 2 trained second in seed 1's process gives exactly the numbers it
    gives trained alone in a fresh one (each run seeds itself; nothing a run leaves behind changes another)."""
    warm = _tiny_experiment("warm", tiny_model_dir, (1, 2))
    run_experiment(warm, tmp_path, data_dir=str(tiny_glue_dir), max_workers=1, progress=False)
    monkeypatch.setenv("HARNESS_WARM_WORKERS", "0")
    cold = _tiny_experiment("cold", tiny_model_dir, (2,))
    run_experiment(cold, tmp_path / "fresh", data_dir=str(tiny_glue_dir), max_workers=1, progress=False)
    columns = ["val_best", "val_final", "score", "steps_done", "status"]
    a = load_runs(tmp_path / "warm").set_index("run_id").loc[[cold.runs[0].run_id], columns]
    b = load_runs(tmp_path / "fresh" / "cold").set_index("run_id")[columns]
    assert a.to_dict() == b.to_dict() and set(a["status"]) == {"done"}
    key = ["eval_index", "val_metric", "train_loss"]
    curve_a = load_curves(tmp_path / "warm").query("run_id == @cold.runs[0].run_id")[key].reset_index(drop=True)
    curve_b = load_curves(tmp_path / "fresh" / "cold")[key].reset_index(drop=True)
    assert curve_a.equals(curve_b)
