"""The Ray backend on a local Ray instance: the same behaviour as the local backend (skipped without Ray)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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
