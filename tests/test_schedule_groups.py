"""Seed groups on the local backend (`[schedule] seeds_per_worker`), with the fakes of tests/fakes_groups.py."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers inherit sys.path: the fakes import there

from fakes_groups import group_experiment
from fakes_schedule import make_experiment

from harness.experiment.config import EarlyStopPolicy
from harness.schedule import run_experiment
from harness.schedule.groups import group_counts, plan_attempts, plan_groups
from harness.storage.store import load_curves, load_events, load_runs, stored_run_ids

HERE = Path(__file__).parent
ROOT = HERE.parent


@pytest.fixture(autouse=True)
def _fake_env(fake_state: Path) -> None:
    """Every test here runs the fake train functions against a fresh state folder (conftest.fake_state)."""


def _run(exp, root: Path, group_fn: str, workers: int = 2):
    return run_experiment(
        exp, root, train_fn="fakes_schedule:sleepy", group_fn=f"fakes_groups:{group_fn}", max_workers=workers,
        progress=False,
    )  # fmt: skip


def _trained(run_id: str) -> int:
    return len(list(Path(os.environ["FAKE_STATE_DIR"]).glob(f"{run_id}.group-*")))


def test_plan_groups_k_runs_of_one_configuration_and_leaves_loop_runs_alone() -> None:
    exp = group_experiment("plan", 5, 2, recipes=("a", "b"))
    loop = make_experiment("plan", 2, recipes=("c",)).runs
    attempts = plan_attempts([*exp.runs, *loop], 2, None)
    groups = [a for a in attempts if hasattr(a, "specs")]
    assert [len(g.specs) for g in groups] == [2, 2, 2, 2, 1, 1]  # largest first
    assert all(len({s.recipe.name for s in g.specs}) == 1 for g in groups)
    assert [a.spec.recipe.name for a in attempts if not hasattr(a, "specs")] == ["c", "c"]


def _sizes_by_recipe(planned) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for group in planned:
        assert len({s.recipe.name for s in group}) == 1  # never two configurations in one group
        out.setdefault(group[0].recipe.name, []).append(len(group))
    return out


def test_groups_are_balanced_and_at_least_one_per_slot() -> None:
    one = group_experiment("bal", 150, 64).runs
    planned = plan_groups(one, 64, slots=8)
    assert sorted(len(g) for g in planned) == [18, 18] + [19] * 6  # never 64 + 64 + 22
    assert sorted(s.run_id for g in planned for s in g) == sorted(s.run_id for s in one)


def test_three_recipes_of_fifty_seeds_fill_eight_slots() -> None:
    runs = group_experiment("three", 50, 64, recipes=("a", "b", "c")).runs
    planned = plan_groups(runs, 64, slots=8)
    sizes = _sizes_by_recipe(planned)
    assert len(planned) == 8 and sorted(map(sorted, sizes.values())) == [[16, 17, 17], [16, 17, 17], [25, 25]]
    assert len({s.run_id for g in planned for s in g}) == 150 == sum(len(g) for g in planned)
    assert [len(g) for g in planned] == sorted((len(g) for g in planned), reverse=True)  # largest first


def test_groups_fill_whole_waves_of_slots_and_respect_k() -> None:
    runs = group_experiment("waves", 50, 16, recipes=("a", "b", "c")).runs
    planned = plan_groups(runs, 16, slots=8)  # at least 4 groups per recipe (K = 16): 12, rounded up to 16
    assert len(planned) == 16 and max(map(len, planned)) <= 13
    assert all(max(v) - min(v) <= 1 for v in _sizes_by_recipe(planned).values())
    assert [len(g) for g in plan_groups(runs[:3], 64, slots=8)] == [1, 1, 1]  # no more groups than runs


def test_group_counts_give_extra_groups_to_the_largest_groups() -> None:
    assert group_counts({"a": 100, "b": 10}, {"a": 64, "b": 64}, 4) == {"a": 3, "b": 1}
    assert group_counts({"a": 5}, {"a": 2}, 1) == {"a": 3}
    assert group_counts({"a": 2, "b": 2}, {"a": 8, "b": 8}, 8) == {"a": 2, "b": 2}


def test_group_size_is_capped_by_the_memory_estimate(tmp_path: Path) -> None:
    import json

    from harness.schedule.memory import specs_memory

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 2,
                                                    "num_attention_heads": 2, "intermediate_size": 16}))  # fmt: skip
    runs = [dataclasses.replace(s, model=str(folder)) for s in group_experiment("mem", 20, 16).runs]
    budget = specs_memory(runs[:5]).total  # exactly five seeds fit one slot
    planned = plan_groups(runs, 16, slots=2, memory_per_slot=budget)
    assert sorted(map(len, planned)) == [5, 5, 5, 5]
    assert sorted(map(len, plan_groups(runs, 16, slots=2))) == [10, 10]  # no memory limit known
    # four fit: at least 5 groups, rounded up to 3 whole waves of 2 slots
    assert sorted(map(len, plan_groups(runs, 16, slots=2, memory_per_slot=budget - 1))) == [3, 3, 3, 3, 4, 4]


def test_groups_sized_to_the_gpu_memory_estimate_never_hit_the_oom(tmp_path: Path, monkeypatch) -> None:
    """One (pretend) GPU whose free memory holds two seeds: the groups are planned at two, so a function that
    fails groups above 2 with out-of-memory never does (before: one group of 4, an OOM, then K halved)."""
    import json

    from harness.schedule import local
    from harness.schedule.memory import PROCESS_RESERVE, specs_memory

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 2,
                                                    "num_attention_heads": 2, "intermediate_size": 16}))  # fmt: skip
    exp = group_experiment("fits", 4, 4)
    exp = dataclasses.replace(exp, runs=tuple(dataclasses.replace(s, model=str(folder)) for s in exp.runs))
    free = PROCESS_RESERVE + specs_memory(exp.runs[:2]).total
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(local, "gpu_free_bytes", lambda gpus: {"0": free})
    summary = _run(exp, tmp_path, "group_oom_above_2", workers=1)
    runs = load_runs(tmp_path / "fits")
    assert summary.retries == 0 and set(runs["attempts"]) == {1} and set(runs["status"]) == {"done"}
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"2"}
    assert (
        "memory: the largest group needs" in load_events(tmp_path / "fits").query("kind == 'groups'")["message"].iloc[0]
    )


def test_groups_on_two_slots_split_one_configuration_in_two(tmp_path: Path) -> None:
    exp = group_experiment("split", 6, 8)  # K = 8 would be one group of 6 leaving a slot idle
    _run(exp, tmp_path, "group_sleepy")
    runs = load_runs(tmp_path / "split")
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"3"}
    assert runs["notes"].str.extract(r"pid=(\d+)")[0].nunique() == 2
    message = load_events(tmp_path / "split").query("kind == 'groups'")["message"].iloc[0]
    assert "6 run(s) of 1 configuration(s) in 2 group(s) of 3 run(s) for 2 slot(s)" in message


def test_each_run_of_a_group_keeps_its_own_id_row_and_curve(tmp_path: Path) -> None:
    exp = group_experiment("grp", 6, 3)
    summary = _run(exp, tmp_path, "group_sleepy")
    runs = load_runs(tmp_path / "grp")
    assert sorted(runs["run_id"]) == sorted(s.run_id for s in exp.runs) and set(runs["status"]) == {"done"}
    assert summary.done == 6 and summary.retries == 0
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"3"}
    assert runs["notes"].str.extract(r"pid=(\d+)")[0].nunique() == 2  # two workers, three runs each
    curves = load_curves(tmp_path / "grp")
    assert len(curves) == 6 * 4 and not curves.duplicated(["run_id", "eval_index"]).any()
    assert all(_trained(s.run_id) == 1 for s in exp.runs)


def test_killed_group_worker_loses_only_its_group_which_is_retried(tmp_path: Path) -> None:
    exp = group_experiment("kill", 6, 3)
    summary = _run(exp, tmp_path, "group_dies_once_with_seed_2")
    runs = load_runs(tmp_path / "kill").set_index("init_seed")
    assert set(runs["status"]) == {"done"} and summary.retries == 1
    assert list(runs.loc[[1, 2, 3], "attempts"]) == [2, 2, 2] and list(runs.loc[[4, 5, 6], "attempts"]) == [1, 1, 1]
    retry = load_events(tmp_path / "kill").query("kind == 'retry'")["message"]
    assert len(retry) == 1 and "SIGKILL" in retry.iloc[0] and "group of 3" in retry.iloc[0]


def test_out_of_memory_halves_k_and_retries(tmp_path: Path) -> None:
    exp = group_experiment("oom", 4, 4)
    _run(exp, tmp_path, "group_oom_above_2", workers=1)  # one slot: one group of 4
    runs = load_runs(tmp_path / "oom")
    assert set(runs["status"]) == {"done"} and set(runs["attempts"]) == {2}
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"2"}
    message = load_events(tmp_path / "oom").query("kind == 'retry'")["message"].iloc[0]
    assert "K halved" in message and "groups of 2" in message


def test_out_of_memory_on_every_try_ends_failed_with_the_error(tmp_path: Path) -> None:
    exp = group_experiment("oomfail", 3, 3, max_retries=0)
    summary = _run(exp, tmp_path, "group_oom_above_2", workers=1)
    runs = load_runs(tmp_path / "oomfail")
    assert summary.failed == 3 and set(runs["status"]) == {"failed"}
    assert all("out of memory" in e for e in runs["error"])


def test_early_stopping_inside_a_group_stops_the_worst_seeds(tmp_path: Path) -> None:
    exp = group_experiment("es", 4, 4, early_stop=EarlyStopPolicy(at=0.5, keep=2))
    summary = _run(exp, tmp_path, "group_sleepy")
    runs = load_runs(tmp_path / "es").set_index("init_seed")
    levels = {s: 50.0 + (s * 37 % 23) for s in range(1, 5)}  # fakes_schedule.val_curve
    best = sorted(levels, key=levels.get, reverse=True)[:2]
    assert sorted(runs.index[runs["status"] == "done"]) == sorted(best)
    assert summary.stopped == 2
    # the engine kept the stopped runs in the batch (no `dropped_at`): nothing saved, and the events say why
    assert summary.compute_saved_runs == 0.0 and summary.compute_saved_s == 0.0
    events = load_events(tmp_path / "es").query("kind == 'early_stop'")["message"]
    assert len(events) == 2 and all("kept computing it" in m and "saved 0.00 run" in m for m in events)


def test_early_stopping_counts_savings_for_runs_the_engine_dropped_from_the_batch(tmp_path: Path) -> None:
    exp = group_experiment("esdrop", 4, 4, early_stop=EarlyStopPolicy(at=0.5, keep=2))
    summary = _run(exp, tmp_path, "group_drops_stopped")
    assert summary.stopped == 2 and summary.compute_saved_runs == pytest.approx(2 * 0.5)
    events = load_events(tmp_path / "esdrop").query("kind == 'early_stop'")["message"]
    assert all("dropped from its seed group's batch at 0.50; saved 0.50 run" in m for m in events)


def test_compute_saved_counts_only_what_left_the_batch() -> None:
    from harness.schedule.early_stop import compute_saved

    assert compute_saved(0.25, in_group=False, dropped_at=None) == 0.75  # a run alone: its process ended
    assert compute_saved(0.25, in_group=True, dropped_at=None) == 0.0  # frozen in its group's batch
    assert compute_saved(0.25, in_group=True, dropped_at=0.4) == pytest.approx(0.6)  # left the batch later


def test_driver_killed_then_resumed_reruns_only_the_missing_ids(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}", "FAKE_SLEEP": "1.5"}
    cmd = [sys.executable, str(HERE / "fakes_groups.py"), str(tmp_path), "8", "2"]
    exp_dir = tmp_path / "killgroups"
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(stored_run_ids(exp_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    first = stored_run_ids(exp_dir)
    assert 2 <= len(first) < 8, "kill the driver between groups"
    exp = group_experiment("killgroups", 8, 2)
    summary = _run(exp, tmp_path, "group_sleepy")
    runs = load_runs(tmp_path / "killgroups")
    assert sorted(runs["run_id"]) == sorted(s.run_id for s in exp.runs)  # every run exactly once
    assert summary.skipped == len(first) and summary.done == 8 - len(first)
    assert all(_trained(r) == 1 for r in first)  # a stored run is never trained again
