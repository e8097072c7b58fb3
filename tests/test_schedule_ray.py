"""The Ray backend on a local Ray instance: the same behaviour as the local backend (skipped without Ray)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes_groups import group_experiment
from fakes_schedule import make_experiment, val_curve

from harness.experiment.config import EarlyStopPolicy
from harness.schedule import decide, run_experiment
from harness.schedule.ray_backend import _local_pythonpath
from harness.storage.store import load_events, load_runs

ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install 'harness[ray]')")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("state")
    env = {"PYTHONPATH": _local_pythonpath(), "FAKE_STATE_DIR": str(state), "FAKE_SLEEP": "0.3"}
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    # 4 logical CPUs on 2 cores: the fakes sleep, and 4 slots give early stopping one full rung
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def test_ray_retries_a_killed_worker_and_fails_a_raising_run(local_ray: None, tmp_path: Path) -> None:
    exp = make_experiment("ray", 4, max_retries=1)
    summary = run_experiment(exp, tmp_path, backend="ray", train_fn="fakes_schedule:chaos", progress=False)
    runs = load_runs(tmp_path / "ray").set_index("init_seed")
    assert sorted(runs.index) == [1, 2, 3, 4] and runs["run_id"].is_unique
    assert runs.loc[2, "status"] == "done" and runs.loc[2, "attempts"] == 2
    assert runs.loc[3, "status"] == "failed" and "boom in seed 3" in runs.loc[3, "error"]
    assert (summary.backend, summary.done, summary.failed) == ("ray", 3, 1)
    assert set(load_events(tmp_path / "ray")["kind"]) >= {"retry", "failed"}


def test_ray_early_stopping_matches_the_rule(local_ray: None, tmp_path: Path) -> None:
    policy = EarlyStopPolicy(at=0.25, keep=0.5)
    exp = make_experiment("rayes", 4, early_stop=policy)
    summary = run_experiment(exp, tmp_path, backend="ray", train_fn="fakes_schedule:sleepy", progress=False)
    runs = load_runs(tmp_path / "rayes")
    expected = decide({s.run_id: val_curve(s, 0.25) for s in exp.runs}, policy.keep)
    assert set(runs.loc[runs["status"] == "stopped", "run_id"]) == expected and summary.stopped == 2


def test_ray_trains_seed_groups_and_retries_a_killed_group(local_ray: None, tmp_path: Path) -> None:
    exp = group_experiment("raygroups", 6, 3)
    fn = "fakes_groups:group_dies_once_with_seed_2"
    summary = run_experiment(exp, tmp_path, backend="ray", train_fn="fakes_schedule:sleepy", group_fn=fn,
                             max_workers=2, progress=False)  # fmt: skip
    runs = load_runs(tmp_path / "raygroups").set_index("init_seed")
    assert (summary.done, summary.retries, summary.failed) == (6, 1, 0) and set(runs["status"]) == {"done"}
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"3"}  # two groups of 3 on 2 slots
    assert list(runs.loc[[1, 2, 3], "attempts"]) == [2, 2, 2] and list(runs.loc[[4, 5, 6], "attempts"]) == [1, 1, 1]
    retry = load_events(tmp_path / "raygroups").query("kind == 'retry'")["message"]
    assert len(retry) == 1 and "group of 3" in retry.iloc[0]


def test_ray_early_stopping_inside_a_group(local_ray: None, tmp_path: Path) -> None:
    policy = EarlyStopPolicy(at=0.5, keep=2)
    exp = group_experiment("raygroupes", 4, 4, early_stop=policy)
    summary = run_experiment(exp, tmp_path, backend="ray", train_fn="fakes_schedule:sleepy",
                             group_fn="fakes_groups:group_sleepy", max_workers=1, progress=False)  # fmt: skip
    runs = load_runs(tmp_path / "raygroupes")
    expected = decide({s.run_id: val_curve(s, 0.5) for s in exp.runs}, policy.keep)
    assert set(runs.loc[runs["status"] == "stopped", "run_id"]) == expected and summary.stopped == 2
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"4"}  # one group: answers reached its members
