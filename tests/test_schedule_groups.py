"""Seed groups on the local backend (`[schedule] seeds_per_worker`), with the fakes of tests/fakes_groups.py."""

from __future__ import annotations

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
from harness.schedule.groups import plan_attempts
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
    assert [len(g.specs) for g in groups] == [2, 2, 1, 2, 2, 1]
    assert all(len({s.recipe.name for s in g.specs}) == 1 for g in groups)
    assert [a.spec.recipe.name for a in attempts if not hasattr(a, "specs")] == ["c", "c"]


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
    _run(exp, tmp_path, "group_oom_above_2")
    runs = load_runs(tmp_path / "oom")
    assert set(runs["status"]) == {"done"} and set(runs["attempts"]) == {2}
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"2"}
    message = load_events(tmp_path / "oom").query("kind == 'retry'")["message"].iloc[0]
    assert "K halved" in message and "groups of 2" in message


def test_out_of_memory_on_every_try_ends_failed_with_the_error(tmp_path: Path) -> None:
    exp = group_experiment("oomfail", 3, 3, max_retries=0)
    summary = _run(exp, tmp_path, "group_oom_above_2")
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


def test_groups_need_the_local_backend(tmp_path: Path) -> None:
    from harness.schedule import ScheduleError

    with pytest.raises(ScheduleError, match="seeds_per_worker"):
        run_experiment(group_experiment("ray", 2, 2), tmp_path, backend="ray", progress=False)
