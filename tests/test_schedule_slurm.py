"""The SLURM backend through submitit's LocalExecutor: a real submitit code path (jobs are separate
processes, results are submitit's pickles, preemption is submitit's requeue), no cluster needed."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # jobs and the driver script import fakes_schedule from here

from slurm_driver import slurm_experiment

from harness.experiment.config import ConfigError, parse_experiment
from harness.experiment.spec import SlurmPolicy
from harness.schedule import run_experiment
from harness.schedule.backend import Attempt, Finished, GroupAttempt, Started
from harness.schedule.core import ScheduleError
from harness.schedule.slurm_backend import SlurmBackend, slurm_parameters
from harness.storage.store import load_curves, load_events, load_runs, stored_run_ids

pytest.importorskip("submitit", reason="the SLURM backend needs the extra: pip install -e '.[slurm]'")
HERE = Path(__file__).parent
ROOT = HERE.parent


@pytest.fixture(autouse=True)
def _env(fake_state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "0.4")  # submitit's jobs start slower than local workers
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _run(exp, root: Path, fn: str, workers: int = 3):
    return run_experiment(exp, root, train_fn=f"fakes_schedule:{fn}", max_workers=workers, progress=False)


def test_killed_job_is_retried_and_every_run_stored_with_its_curve(tmp_path: Path) -> None:
    """Seed 2's job kills itself (SIGKILL) mid-run: no result pickle -> Crashed -> the core retries it."""
    summary = _run(slurm_experiment("s", 3), tmp_path, "die_once_on_seed_2")
    runs = load_runs(tmp_path / "s").set_index("init_seed")
    assert (summary.backend, summary.done, summary.retries, summary.failed) == ("slurm", 3, 1, 0)
    assert runs.loc[2, "attempts"] == 2 and set(runs.drop(index=2)["attempts"]) == {1}
    assert len(list((tmp_path / "s" / "slurm" / "logs").glob("*_submitted.pkl"))) == 4  # 3 jobs + 1 retry
    assert len(load_curves(tmp_path / "s")) == 3 * 4
    retry = load_events(tmp_path / "s").query("kind == 'retry'")
    assert len(retry) == 1 and "UncompletedJobError" in retry["message"].iloc[0]


def test_array_per_configuration_and_early_stop_rungs(tmp_path: Path) -> None:
    from harness.experiment.config import EarlyStopPolicy

    exp = slurm_experiment("arr", 4, early_stop=EarlyStopPolicy(at=0.5, keep=2))
    policy = dataclasses.replace(exp.schedule, slurm=SlurmPolicy(cluster="local", gpus_per_run=0, array=True))
    exp = dataclasses.replace(exp, schedule=policy)
    summary = _run(exp, tmp_path, "sleepy", workers=4)
    assert (summary.done, summary.stopped) == (2, 2)  # answers reached the jobs through the shared folder
    runs = load_runs(tmp_path / "arr").set_index("init_seed")
    assert set(runs[runs.status == "stopped"].index) == {2, 4}  # val_curve levels: seed 3 > 1 > 4 > 2


def test_preempted_job_is_requeued_by_submitit_and_finishes(tmp_path: Path) -> None:
    exp = slurm_experiment("pre", 1, num_evals=4)
    backend = SlurmBackend(
        "fakes_schedule:sleepy", {"cache_dir": str(tmp_path / ".cache")}, folder=tmp_path / "slurm",
        policy=SlurmPolicy(cluster="local", gpus_per_run=0),
    )  # fmt: skip
    os.environ["FAKE_SLEEP"] = "3"
    attempt = Attempt(exp.runs[0])
    with backend:
        backend.submit(attempt)
        got: list = []
        deadline = time.monotonic() + 60
        while not any(isinstance(m, Started) for m in got) and time.monotonic() < deadline:
            got += backend.messages(0.5)
        time.sleep(0.5)
        pid = int(next(m for m in got if isinstance(m, Started)).device.split("pid ")[1].split(",")[0])
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends a job it preempts (submitit's --signal=USR2)
        while not any(isinstance(m, Finished) for m in got) and time.monotonic() < deadline:
            got += backend.messages(0.5)
    starts = [m for m in got if isinstance(m, Started)]
    assert len(starts) == 2, got  # the same job ran the attempt again after its requeue
    assert isinstance(got[-1], Finished) and got[-1].result.run["status"] == "done"
    log = "".join(p.read_text() for p in sorted((tmp_path / "slurm" / "logs").glob("*_log.*")))
    assert "this job is preempted" in log and "Requeued job" in log


def _controllers(folder: Path) -> list[int]:
    alive = []
    for record in (folder / "jobs").glob("*.json"):
        pid = int(record.read_text().split('"job_id": "')[1].split('"')[0])
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except OSError:
            pass
    return alive


def test_driver_killed_then_resumed_collects_finished_jobs_and_stores_every_run_once(tmp_path: Path) -> None:
    n = 6
    env = {**os.environ, "FAKE_SLEEP": "1.5"}
    cmd = [sys.executable, str(HERE / "slurm_driver.py"), str(tmp_path), str(n), "3"]
    exp_dir, slurm = tmp_path / "slurmkill", tmp_path / "slurmkill" / "slurm"
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list((slurm / "jobs").glob("*.json"))) < 3:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    stored_at_kill = stored_run_ids(exp_dir)
    assert len(stored_at_kill) < n
    while _controllers(slurm) and time.monotonic() < deadline:  # the orphaned jobs run to their end
        time.sleep(0.2)
    submitted_before = len(list((slurm / "logs").glob("*_submitted.pkl")))
    final = subprocess.run(cmd, env={**env, "FAKE_SLEEP": "0.2"}, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    runs = load_runs(exp_dir)
    spec = slurm_experiment("slurmkill", n)
    assert sorted(runs["run_id"]) == sorted(s.run_id for s in spec.runs) and set(runs["status"]) == {"done"}
    collected = 3 - len(stored_at_kill)  # jobs of the dead driver that finished after it died
    submitted_after = len(list((slurm / "logs").glob("*_submitted.pkl"))) - submitted_before
    assert submitted_after == n - len(stored_at_kill) - collected, final.stdout
    assert len(load_curves(exp_dir)) == 4 * n


def test_schedule_slurm_section_is_validated() -> None:
    base = {"name": "x", "task": "rte", "model": "m", "seeds": 1, "recipes": {"a": {}}}
    spec = parse_experiment({**base, "schedule": {"backend": "slurm", "slurm": {"partition": "gpu", "time_min": 30}}})
    assert spec.schedule.slurm == SlurmPolicy(partition="gpu", time_min=30)
    for bad, match in (
        ({"time_min": 0}, "time_min' = 0; must be >= 1"),
        ({"partiton": "gpu"}, r"unknown field\(s\) \['partiton'\]"),
        ({"cluster": "pbs"}, "cluster' = 'pbs'; allowed: slurm, local"),
        ({"gpus_per_run": "1"}, "gpus_per_run' = '1' \\(str\\) must be int"),
        ({"mem_gb": -1}, "mem_gb' = -1.0; must be > 0"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_experiment({**base, "schedule": {"slurm": bad}})


def test_sbatch_file_gets_partition_time_gpus_and_the_preemption_signal() -> None:
    from submitit.slurm.slurm import _make_sbatch_string

    policy = SlurmPolicy(partition="gpu", time_min=30, gpus_per_run=1, cpus_per_run=4, mem_gb=32, account="lab")
    text = _make_sbatch_string(command="python -m x", folder="/tmp/f", **slurm_parameters(policy, threads=1))
    for line in ("--partition=gpu", "--time=30", "--gpus-per-node=1", "--cpus-per-task=4", "--mem=32GB",
                 "--account=lab", "--signal=USR2@"):  # fmt: skip
        assert f"#SBATCH {line}" in text, (line, text)


def test_slurm_cluster_without_srun_fails_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with pytest.raises(ScheduleError, match='cluster = "local"'):
        SlurmBackend("fakes_schedule:sleepy", {"cache_dir": "x"}, folder=tmp_path, policy=SlurmPolicy())


def _slurm_groups(name: str, seeds: int, k: int, **kw):
    exp = slurm_experiment(name, seeds, **kw)
    runs = tuple(dataclasses.replace(s, engine="vectorised") for s in exp.runs)
    return dataclasses.replace(exp, runs=runs, schedule=dataclasses.replace(exp.schedule, seeds_per_worker=k))


def test_seed_groups_run_as_jobs_and_a_killed_group_job_is_retried(tmp_path: Path) -> None:
    exp = _slurm_groups("sg", 6, 3)
    summary = run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy", max_workers=2, progress=False,
                             group_fn="fakes_groups:group_dies_once_with_seed_2")  # fmt: skip
    runs = load_runs(tmp_path / "sg").set_index("init_seed")
    assert (summary.backend, summary.done, summary.retries) == ("slurm", 6, 1)
    assert set(runs["notes"].str.extract(r"group=(\d+)")[0]) == {"3"}
    assert list(runs.loc[[1, 2, 3], "attempts"]) == [2, 2, 2] and list(runs.loc[[4, 5, 6], "attempts"]) == [1, 1, 1]
    assert len(list((tmp_path / "sg" / "slurm" / "logs").glob("*_submitted.pkl"))) == 3  # 2 group jobs + 1 retry
    assert len(load_curves(tmp_path / "sg")) == 6 * 4


def test_early_stop_answers_reach_the_members_of_a_group_job(tmp_path: Path) -> None:
    from harness.experiment.config import EarlyStopPolicy

    exp = _slurm_groups("sges", 4, 4, early_stop=EarlyStopPolicy(at=0.5, keep=2))
    summary = run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy", max_workers=1, progress=False,
                             group_fn="fakes_groups:group_sleepy")  # fmt: skip
    runs = load_runs(tmp_path / "sges").set_index("init_seed")
    assert (summary.done, summary.stopped) == (2, 2) and set(runs[runs.status == "stopped"].index) == {2, 4}
    assert summary.compute_saved_runs == 0.0  # the group kept computing its stopped members


def test_a_new_driver_takes_finished_members_of_an_old_group_job(tmp_path: Path) -> None:
    """Resume: members an earlier driver's group job finished are collected; only the others are submitted."""
    specs = _slurm_groups("sgr", 3, 3).runs

    def finals(group: GroupAttempt) -> list[Finished]:
        """A fresh backend (a new driver) on the same folder runs `group` to its end."""
        backend = SlurmBackend(
            "fakes_schedule:sleepy", {"cache_dir": str(tmp_path / ".cache")}, folder=tmp_path / "slurm",
            policy=SlurmPolicy(cluster="local", gpus_per_run=0), group_fn="fakes_groups:group_sleepy",
        )  # fmt: skip
        got: list = []
        deadline = time.monotonic() + 60
        with backend:
            backend.submit(group)
            while len([m for m in got if isinstance(m, Finished)]) < len(group.specs) and time.monotonic() < deadline:
                got += backend.messages(0.5)
        return [m for m in got if isinstance(m, Finished)]

    first = finals(GroupAttempt(specs[:2]))
    assert {m.key for m in first} == {f"{s.run_id}#1" for s in specs[:2]}
    logs = tmp_path / "slurm" / "logs"
    submitted = len(list(logs.glob("*_submitted.pkl")))
    again = finals(GroupAttempt(specs))  # the new driver cut a group of three
    assert {m.key for m in again} == {f"{s.run_id}#1" for s in specs}
    assert len(list(logs.glob("*_submitted.pkl"))) == submitted + 1  # one job, for the third run only
    taken = {m.key: m.result.run["notes"] for m in again}
    assert all("group=2" in taken[f"{s.run_id}#1"] for s in specs[:2]) and "group=1" in taken[f"{specs[2].run_id}#1"]


def test_the_slurm_folder_never_sends_a_file_through_a_planted_link(tmp_path: Path) -> None:
    """results/<experiment>/slurm may come from someone else: a linked sub-folder is refused in one line before
    a job is submitted, and an answer file planted as a link is replaced, its target left alone."""
    from harness.storage.safe_files import UnsafePathError

    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "planted" / "slurm").mkdir(parents=True)
    (tmp_path / "planted" / "slurm" / "jobs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="jobs is a symbolic link"):
        SlurmBackend("fakes_schedule:sleepy", {"cache_dir": "x"}, folder=tmp_path / "planted" / "slurm",
                     policy=SlurmPolicy(cluster="local", gpus_per_run=0))  # fmt: skip
    assert list(outside.iterdir()) == []

    backend = SlurmBackend("fakes_schedule:sleepy", {"cache_dir": "x"}, folder=tmp_path / "slurm",
                           policy=SlurmPolicy(cluster="local", gpus_per_run=0))  # fmt: skip
    victim = tmp_path / "victim.txt"
    victim.write_text("USER DATA")
    (tmp_path / "slurm" / "answers" / "run-1").symlink_to(victim)
    backend.answer("run-1", keep=True)
    assert victim.read_text() == "USER DATA"
    assert (tmp_path / "slurm" / "answers" / "run-1").read_text() == "1"
    assert not (tmp_path / "slurm" / "answers" / "run-1").is_symlink()
