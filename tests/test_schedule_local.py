"""The scheduler core on the local backend, with the fake training functions of tests/fakes_schedule.py."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers (spawn) inherit sys.path: fakes_schedule imports there

from fakes_schedule import make_experiment, val_curve

from harness.experiment.config import EarlyStopPolicy
from harness.schedule import ExperimentLocked, decide, experiment_status, format_status, run_experiment
from harness.schedule.local import discover_gpus, plan_slots
from harness.schedule.lock import ExperimentLock
from harness.storage.store import load_curves, load_events, load_runs, stored_run_ids

HERE = Path(__file__).parent
ROOT = HERE.parent


@pytest.fixture(autouse=True)
def _fake_env(fake_state: Path) -> None:
    """Every test here runs the fake train functions against a fresh state folder (conftest.fake_state)."""


def _run(exp, root: Path, fn: str, workers: int = 2):
    return run_experiment(exp, root, train_fn=f"fakes_schedule:{fn}", max_workers=workers, progress=False)


def test_worker_killed_mid_run_is_retried_and_others_stored_once(tmp_path: Path) -> None:
    exp = make_experiment("kill", 4)
    summary = _run(exp, tmp_path, "die_once_on_seed_2")
    runs = load_runs(tmp_path / "kill").set_index("init_seed")
    assert sorted(runs.index) == [1, 2, 3, 4] and runs["run_id"].is_unique
    assert set(runs["status"]) == {"done"}
    assert runs.loc[2, "attempts"] == 2 and set(runs.drop(index=2)["attempts"]) == {1}
    assert (summary.done, summary.retries, summary.failed) == (4, 1, 0)
    events = load_events(tmp_path / "kill")
    retry = events[events["kind"] == "retry"]
    assert len(retry) == 1 and "SIGKILL" in retry["message"].iloc[0]


def test_exception_ends_as_failed_after_retries_with_its_error(tmp_path: Path) -> None:
    exp = make_experiment("raise", 3, max_retries=1)
    summary = _run(exp, tmp_path, "raise_on_seed_3")
    runs = load_runs(tmp_path / "raise").set_index("init_seed")
    assert runs.loc[3, "status"] == "failed" and runs.loc[3, "attempts"] == 2
    assert "ValueError: boom in seed 3" in runs.loc[3, "error"] and "Traceback" in runs.loc[3, "error"]
    assert list(runs.loc[[1, 2], "status"]) == ["done", "done"]
    assert len(list(Path(os.environ["FAKE_STATE_DIR"]).glob("*.attempt-*"))) == 2  # max_retries + 1 tries
    assert (summary.failed, summary.retries) == (1, 1)
    kinds = load_events(tmp_path / "raise")["kind"].tolist()
    assert kinds.count("retry") == 1 and kinds.count("failed") == 1


def test_oom_is_retried_with_half_the_micro_batch(tmp_path: Path) -> None:
    exp = make_experiment("oom", 2)  # seed 1 raises torch.OutOfMemoryError, seed 2 RuntimeError("out of memory")
    _run(exp, tmp_path, "oom_unless_small")
    runs = load_runs(tmp_path / "oom")
    assert set(runs["status"]) == {"done"} and set(runs["attempts"]) == {2}
    assert all("micro_batch_size=8 " in note for note in runs["notes"])  # batch 16 -> 8: accumulation x2
    messages = load_events(tmp_path / "oom").query("kind == 'retry'")["message"]
    assert all("micro_batch_size=8" in m for m in messages)


def test_diverged_is_a_result_never_retried(tmp_path: Path) -> None:
    exp = make_experiment("nan", 2)
    summary = _run(exp, tmp_path, "diverge_on_seed_1")
    runs = load_runs(tmp_path / "nan").set_index("init_seed")
    assert runs.loc[1, "status"] == "diverged" and runs.loc[1, "attempts"] == 1
    assert len(list(Path(os.environ["FAKE_STATE_DIR"]).glob("*.attempt-*"))) == 1
    assert (summary.diverged, summary.retries) == (1, 0)


def test_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    small = make_experiment("resume", 2)
    _run(small, tmp_path, "sleepy")
    first = {r: t for r, t in zip(*load_runs(tmp_path / "resume")[["run_id", "finished_at"]].T.values, strict=True)}
    bigger = make_experiment("resume", 4)
    summary = _run(bigger, tmp_path, "sleepy")
    assert (summary.skipped, summary.done) == (2, 2)
    runs = load_runs(tmp_path / "resume")
    assert len(runs) == 4 and runs["run_id"].is_unique
    again = {r: t for r, t in zip(runs["run_id"], runs["finished_at"], strict=True) if r in first}
    assert again == first  # the stored ones were not re-run
    assert _run(bigger, tmp_path, "sleepy").skipped == 4


def test_early_stopping_stops_exactly_the_runs_the_rule_names(tmp_path: Path) -> None:
    policy = EarlyStopPolicy(at=0.25, keep=0.5)
    exp = make_experiment("es", 5, ("a", "b"), early_stop=policy)
    summary = _run(exp, tmp_path, "sleepy", workers=5)  # slots >= seeds per configuration: one full rung each
    runs = load_runs(tmp_path / "es")
    expected: set[str] = set()
    for recipe in ("a", "b"):
        specs = [s for s in exp.runs if s.recipe.name == recipe]
        expected |= decide({s.run_id: val_curve(s, 0.25) for s in specs}, policy.keep)
    assert set(runs.loc[runs["status"] == "stopped", "run_id"]) == expected
    assert len(expected) == 4 and set(runs.loc[~runs["run_id"].isin(expected), "status"]) == {"done"}
    curves = load_curves(tmp_path / "es")
    assert set(curves[curves["run_id"].isin(expected)]["fraction"]) == {0.25}  # the curve so far
    assert summary.stopped == 4 and summary.compute_saved_runs == pytest.approx(4 * 0.75)
    events = load_events(tmp_path / "es")
    assert len(events[events["kind"] == "early_stop"]) == 4
    assert all("saved 0.75 run" in m for m in events.query("kind == 'early_stop'")["message"])
    assert len(events[events["kind"] == "rung"]) == 2


def test_early_stopping_with_fewer_slots_than_seeds_does_not_deadlock(tmp_path: Path) -> None:
    exp = make_experiment("es2", 8, early_stop=EarlyStopPolicy(at=0.25, keep=0.5))
    summary = _run(exp, tmp_path, "sleepy", workers=2)
    assert summary.finished == 8 and summary.stopped == 4  # exactly the declared share, whatever the slots
    assert "partial cohort" in " ".join(load_events(tmp_path / "es2")["message"])


def test_second_driver_refuses_clearly(tmp_path: Path) -> None:
    exp = make_experiment("locked", 2)
    with ExperimentLock(tmp_path / "locked"), pytest.raises(ExperimentLocked) as err:
        _run(exp, tmp_path, "sleepy")
    text = str(err.value)
    assert str(tmp_path / "locked" / ".driver.lock") in text and f"pid {os.getpid()}" in text
    assert stored_run_ids(tmp_path / "locked") == set()


def test_second_driver_process_refuses_while_the_first_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}", "FAKE_SLEEP": "0.5"}
    first = subprocess.Popen([sys.executable, str(HERE / "fakes_schedule.py"), str(tmp_path), "6", "1"], env=env)
    try:
        lock = tmp_path / "killme" / ".driver.lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ExperimentLocked, match=f"pid {first.pid} "):
            run_experiment(make_experiment("killme", 6), tmp_path, train_fn="fakes_schedule:sleepy", progress=False)
    finally:
        first.kill()
        first.wait()


def _orphans(tag: str) -> list[int]:
    """Pids of live processes whose environment carries `tag` (workers of a killed driver)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if tag.encode() in (proc / "environ").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


def test_driver_killed_at_random_points_then_resumed_stores_every_run_once(tmp_path: Path) -> None:
    n = 24
    tag = f"HARNESS_KILL_TEST={uuid.uuid4().hex}"  # unique: another session may run this test at the same time
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}", "FAKE_SLEEP": "0.5", tag.split("=")[0]: tag}
    cmd = [sys.executable, str(HERE / "fakes_schedule.py"), str(tmp_path), str(n), "2"]
    exp_dir = tmp_path / "killme"
    seed = int(os.environ.get("HARNESS_KILL_SEED", time.time_ns() % 10**6))  # printed: rerun with it to reproduce
    rng = random.Random(seed)
    log = [f"kill seed {seed}"]
    kills = [signal.SIGKILL, signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL]
    for round_, sig in enumerate(kills):
        before = len(stored_run_ids(exp_dir))
        driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.8, 2.2)  # start-up takes ~1 s: some kills land before the first run ends
        time.sleep(delay)
        driver.send_signal(sig)
        code = driver.wait(timeout=30)
        deadline = time.monotonic() + 10  # PR_SET_PDEATHSIG delivery, and exit, take longer on a loaded machine
        while _orphans(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        stored = stored_run_ids(exp_dir)
        log.append(f"round {round_}: {sig.name} after {delay:.2f}s, exit {code}, stored {before} -> {len(stored)}")
        assert _orphans(tag) == [], "workers outlived their driver"
        assert len(load_runs(exp_dir)) == len(stored)  # loaders never see temp files
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert final.returncode == 0, final.stderr
    log.append(f"final: {final.stdout.strip()}")
    print("\n".join(log))
    exp = make_experiment("killme", n)
    runs = load_runs(exp_dir)
    assert sorted(runs["run_id"]) == sorted(s.run_id for s in exp.runs)  # every run, exactly once
    assert set(runs["status"]) == {"done"}
    curves = load_curves(exp_dir)
    assert len(curves) == 4 * n and not curves.duplicated(["run_id", "eval_index"]).any()
    leftovers = list(exp_dir.glob("*/.*.tmp"))  # a kill mid-write may leave a hidden temp part: never loaded
    print(f"hidden temp parts left by kills: {len(leftovers)}")


def test_status_counts_and_eta(tmp_path: Path) -> None:
    done = make_experiment("st", 3, max_retries=0)
    _run(done, tmp_path, "raise_on_seed_3")
    bigger = make_experiment("st", 5, ("a", "b"), max_retries=0)
    frame = experiment_status(bigger, tmp_path, slots=2)
    a = frame.set_index("recipe").loc["a"]
    assert (a["total"], a["done"], a["failed"], a["pending"]) == (5, 2, 1, 2)
    b = frame.set_index("recipe").loc["b"]
    assert (b["done"], b["pending"]) == (0, 5)
    assert a["mean_run_s"] > 0 and b["eta_s"] == pytest.approx(5 * b["mean_run_s"] / 2)  # b uses the overall mean
    text = format_status(frame)
    assert "pending 7" in text and "no driver running" in text and "ETA" in text


def test_slot_planning_packs_runs_per_gpu_and_respects_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = plan_slots(["0", "3"], runs_per_gpu=2, threads_per_run=2, max_workers=None)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "3", "0", "3"]
    assert {s.device for s in slots} == {"cuda:0"} and slots[0].env["OMP_NUM_THREADS"] == "2"
    cpu = plan_slots([], runs_per_gpu=4, threads_per_run=1, max_workers=None, cpus=2)
    assert [s.device for s in cpu] == ["cpu", "cpu"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert discover_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert discover_gpus() == []


def test_unknown_train_function_fails_before_any_worker(tmp_path: Path) -> None:
    from harness.schedule import ScheduleError

    with pytest.raises(ScheduleError, match="no_such_module"):
        run_experiment(make_experiment("bad", 1), tmp_path, train_fn="no_such_module:f", progress=False)


def test_identical_runs_stored_by_another_experiment_are_reused_not_rerun(tmp_path: Path) -> None:
    first = make_experiment("first", 3, recipes=("a",))
    _run(first, tmp_path, "sleepy")
    # Same specs (recipe a, here named "a2": a name is not part of the spec) plus a new recipe b: only b's
    # runs train; a's are copied with their curves, under this experiment's names.
    second = make_experiment("second", 3, recipes=("a", "b"))
    renamed = [dataclasses.replace(r, recipe=dataclasses.replace(r.recipe, name="a2")) if r.recipe.name == "a" else r
               for r in second.runs]  # fmt: skip
    second = dataclasses.replace(second, runs=tuple(renamed))
    summary = _run(second, tmp_path, "sleepy")
    assert (summary.reused, summary.done, summary.skipped) == (3, 3, 0)
    runs = load_runs(tmp_path / "second")
    assert len(runs) == 6 and set(runs["experiment"]) == {"second"}
    copied = runs[runs["recipe"] == "a2"]
    assert set(copied["config_key"]) == {"rte/a2"} and copied["spec"].str.contains('"name": "a2"').all()
    original = load_runs(tmp_path / "first").set_index("run_id")
    assert list(copied.set_index("run_id").loc[original.index, "score"]) == list(original["score"])
    assert copied["notes"].str.contains("reused from first").all()
    assert len(load_curves(tmp_path / "second")) == len(load_curves(tmp_path / "first")) * 2
    assert set(load_events(tmp_path / "second").query("kind == 'reused'")["run_id"]) == set(copied["run_id"])


def test_retry_failed_reruns_only_the_stored_failed_runs(tmp_path: Path) -> None:
    exp = make_experiment("rf", 3, max_retries=0)
    _run(exp, tmp_path, "raise_on_seed_3")
    before = load_runs(tmp_path / "rf").set_index("init_seed")
    assert before.loc[3, "status"] == "failed"
    assert _run(exp, tmp_path, "sleepy").skipped == 3  # a plain resume leaves failed runs alone
    text = format_status(experiment_status(exp, tmp_path, slots=1))
    assert "failed runs (1;" in text and f"{before.loc[3, 'run_id']}  rte/a  ValueError: boom in seed 3" in text
    summary = run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy", max_workers=2, progress=False,
                             retry_failed=True)  # fmt: skip
    assert (summary.skipped, summary.done, summary.failed) == (2, 1, 0)
    after = load_runs(tmp_path / "rf").set_index("init_seed")
    assert set(after["status"]) == {"done"} and after["run_id"].is_unique
    assert (after.loc[[1, 2], "finished_at"] == before.loc[[1, 2], "finished_at"]).all()  # not re-run
    assert "failed runs" not in format_status(experiment_status(exp, tmp_path, slots=1))


def test_a_failed_record_keeps_the_first_line_of_a_long_error() -> None:
    from harness.storage.records import failed_row

    spec = make_experiment("long", 1).runs[0]
    row = failed_row(spec, "ValueError: the cause\n" + "  frame\n" * 2000, attempts=1)
    assert row["error"].startswith("ValueError: the cause") and len(row["error"]) <= 4100
