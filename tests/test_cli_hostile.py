"""Hostile input and faults at the command line: folder names, the lock, read-only and full disks, outcomes."""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import json
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers (spawn) inherit sys.path: fakes_schedule imports there

import harness.schedule
from harness import cli
from harness.cli import main
from harness.experiment.config import load_experiment
from harness.experiment.spec import Recipe, RunSpec
from harness.report.render import markdown_to_html
from harness.schedule.lock import ExperimentLock
from harness.storage.records import failed_row
from harness.storage.scope import RecordWarning, read_meta, remember_spec
from harness.storage.store import BadPartWarning, load_runs

TOML = """
name = "{name}"
task = "rte"
model = "fake"
seeds = {seeds}
num_evals = 2
[recipes.a]
[schedule]
max_retries = 0
"""


def _toml(tmp_path: Path, name: str = "x", seeds: int = 3) -> Path:
    path = tmp_path / f"{name.replace('/', '_')}.toml"
    path.write_text(TOML.format(name=name, seeds=seeds))
    return path


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`harness run` with a fake train function and no preflight (no model, no data)."""
    monkeypatch.setenv("FAKE_SLEEP", "0.05")
    monkeypatch.setenv("FAKE_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cli, "preflight", lambda experiment, data_dir: None)
    real = harness.schedule.run_experiment

    def use(fn: str) -> None:
        monkeypatch.setattr(
            harness.schedule, "run_experiment", functools.partial(real, train_fn=f"fakes_schedule:{fn}")
        )

    use("sleepy")
    return use


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# 1. Security ------------------------------------------------------------------------------------------


def test_report_html_embeds_only_its_own_figures(tmp_path: Path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"TOP-SECRET-BYTES")
    report = tmp_path / "results" / "x" / "report"
    report.mkdir(parents=True)
    (report / "fig.png").write_bytes(b"OWN-FIGURE")
    (report / "link.png").symlink_to(secret)
    md = f"# r\n\n![a]({secret})\n\n![b](../../../secret.png)\n\n![c](link.png)\n\n![d](fig.png)\n"
    page = markdown_to_html(md, report)
    assert base64.b64encode(b"TOP-SECRET-BYTES").decode() not in page
    assert page.count("not embedded") == 3 and base64.b64encode(b"OWN-FIGURE").decode() in page


@pytest.mark.parametrize("name", ["../outside", "/tmp/abs-outside", ".."])
def test_analyze_and_report_refuse_names_that_leave_the_results_root(tmp_path: Path, name: str, capsys):
    results = tmp_path / "results"
    results.mkdir()
    outside = (results / name).resolve() if not name.startswith("/") else Path(name)
    (outside / "runs").mkdir(parents=True, exist_ok=True)
    spec = _toml(tmp_path, name)
    before = _tree(outside)
    for command in (["analyze", str(spec)], ["report", str(spec)], ["analyze", name], ["report", name]):
        assert main(["--results", str(results), *command]) == 2
        assert "not a plain folder name" in capsys.readouterr().err
    assert _tree(outside) == before


def test_ray_address_in_experiment_file_is_a_config_error(tmp_path: Path, capsys):
    spec = tmp_path / "r.toml"
    spec.write_text(TOML.format(name="r", seeds=1) + 'ray_address = "ray://evil:10001"\n')
    assert main(["--results", str(tmp_path), "run", str(spec)]) == 2
    assert "--ray-address" in capsys.readouterr().err


# 2. The spec copy ---------------------------------------------------------------------------------------


def test_refused_driver_leaves_the_spec_copy_alone(tmp_path: Path, fake_runs, capsys):
    results = tmp_path / "results"
    (results / "x").mkdir(parents=True)
    (results / "x" / "experiment.toml").write_text("# the spec the stored runs were made from\n")
    with ExperimentLock(results / "x"):
        assert main(["--results", str(results), "run", str(_toml(tmp_path)), "--quiet"]) == 2
    assert "already being run" in capsys.readouterr().err
    assert (results / "x" / "experiment.toml").read_text() == "# the spec the stored runs were made from\n"
    assert main(["--results", str(results), "run", str(_toml(tmp_path)), "--quiet"]) == 0
    assert (results / "x" / "experiment.toml").read_text() == _toml(tmp_path).read_text()


# 3. Read-only and full ------------------------------------------------------------------------------------


def test_read_only_store_status_analyze_and_report_to_another_folder(tmp_path: Path, fake_runs, monkeypatch, capsys):
    results = tmp_path / "results"
    spec = _toml(tmp_path, seeds=4)
    assert main(["--results", str(results), "run", str(spec), "--quiet"]) == 0
    exp = results / "x"
    (exp / "runs.parquet").unlink(missing_ok=True)  # so the first load would write a snapshot
    before = _tree(exp)
    import harness.storage.store as store

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(args[0]) if args else None)

    real_replace_file = store.replace_file

    def read_only_exp(where: Path, content: object) -> Path:
        if str(where).startswith(str(exp)):  # every Parquet file of the store is written through it
            refuse(where)
        return real_replace_file(where, content)

    monkeypatch.setattr(store, "replace_file", read_only_exp)
    assert main(["--results", str(results), "status", str(spec)]) == 0
    assert main(["--results", str(results), "analyze", "x", "--out", str(tmp_path / "tables")]) == 0
    assert (tmp_path / "tables" / "summary.parquet").is_file()
    assert main(["--results", str(results), "report", "x", "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    assert _tree(exp) == before  # nothing written under the read-only store
    capsys.readouterr()
    import harness.analysis.pipeline as pipeline

    monkeypatch.setattr(pipeline, "write_parquet_atomic", lambda frame, path: refuse(path))
    assert main(["--results", str(results), "analyze", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "--out" in err


def test_disk_full_ends_with_one_line_keeps_stored_runs_and_resumes(tmp_path: Path, fake_runs, monkeypatch, capsys):
    results = tmp_path / "results"
    spec = _toml(tmp_path, seeds=5)
    import harness.schedule.core as core

    real_write = core.write_run
    calls = {"n": 0}

    def write_until_full(exp_dir: Path, run: dict, curve: list) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(exp_dir / "runs" / f"{run['run_id']}.parquet"))
        real_write(exp_dir, run, curve)

    monkeypatch.setattr(core, "write_run", write_until_full)
    assert main(["--results", str(results), "run", str(spec), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: disk full writing") and "resume" in err
    stored = load_runs(results / "x")
    assert len(stored) == 2 and set(stored["status"]) == {"done"}
    monkeypatch.setattr(core, "write_run", real_write)
    assert main(["--results", str(results), "run", str(spec), "--quiet"]) == 0
    assert len(load_runs(results / "x")) == 5
    assert "2 already stored" in capsys.readouterr().out


# 4. Outcomes -------------------------------------------------------------------------------------------


def test_run_exits_nonzero_when_runs_failed_after_printing_the_summary(tmp_path: Path, fake_runs, capsys):
    fake_runs("raise_on_seed_3")
    assert main(["--results", str(tmp_path / "results"), "run", str(_toml(tmp_path)), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "2 done" in out and "1 failed" in out
    assert "1 run(s) failed" in err


def test_report_on_zero_runs_is_one_line(tmp_path: Path, capsys):
    (tmp_path / "x" / "runs").mkdir(parents=True)
    assert main(["--results", str(tmp_path), "report", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no stored runs") and err.count("\n") == 1


def test_stored_error_keeps_type_and_message_and_the_tail():
    spec = RunSpec(task="rte", model="m", recipe=Recipe(), init_seed=1, order_seed=1)
    error = "ValueError: the real cause\nTraceback (most recent call last):\n" + "  frame\n" * 2000 + "ValueError: end"
    kept = failed_row(spec, error, 1)["error"]
    assert kept.startswith("ValueError: the real cause") and kept.endswith("ValueError: end")
    assert len(kept) <= 4100 and "characters cut" in kept


def test_unknown_hub_id_offline_fails_at_preflight_in_seconds(tmp_path: Path, tiny_glue_dir: Path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    spec = tmp_path / "hub.toml"
    spec.write_text(TOML.format(name="hub", seeds=2).replace('"fake"', '"nobody-here/no-such-model-xyz"'))
    start = time.monotonic()
    assert main(["--results", str(tmp_path / "r"), "run", str(spec), "--data-dir", str(tiny_glue_dir)]) == 2
    assert time.monotonic() - start < 60  # a hang is what this guards against (it was ~53 s per attempt)
    err = capsys.readouterr().err
    assert "no-such-model-xyz" in err and "HF_HUB_OFFLINE" in err
    assert not (tmp_path / "r" / "hub" / "runs").exists()


@pytest.mark.parametrize(
    ("top", "recipe", "field"),
    [
        ("max_seq_length = 4096", "", "'max_seq_length' = 4096 but model"),  # the tiny model has 256 positions
        ("", "reinit_layers = 50", "'reinit_layers' = 50 but the model has 4 layers"),
        ("model_layers = 10", "", "'model_layers' = 10 but model"),
        ("", "head_warmup_steps = 500", "'head_warmup_steps' = 500 but a run of task 'rte' has 10 updates"),
    ],
)
def test_preflight_checks_fields_against_the_model_and_data(
    tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path, top: str, recipe: str, field: str, capsys
):
    spec = tmp_path / "p.toml"
    spec.write_text(
        f'name = "p"\ntask = "rte"\nmodel = "{tiny_model_dir}"\nseeds = 2\n{top}\n'
        f"[recipes.a]\nepochs = 1\nbatch_size = 8\n{recipe}\n"
    )
    assert main(["--results", str(tmp_path / "r"), "run", str(spec), "--data-dir", str(tiny_glue_dir)]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not (tmp_path / "r" / "p" / "runs").exists()


def test_env_ray_address_reaches_the_backend(tmp_path: Path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "preflight", lambda experiment, data_dir: None)
    monkeypatch.setattr(harness.schedule, "run_experiment", lambda *a, **k: seen.update(k) or _Summary())
    monkeypatch.setenv("RAY_ADDRESS", "ray://from-env:10001")
    assert main(["--results", str(tmp_path), "run", str(_toml(tmp_path)), "--backend", "ray"]) == 0
    assert seen["ray_address"] == "ray://from-env:10001"


class _Summary:
    failed = 0

    def __str__(self) -> str:
        return "ok"


# 5. Hostile input II: what a results folder holds must not destroy a user's files ----------------------------


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_report_out_keeps_a_users_own_files(tmp_path: Path, fake_runs, capsys):
    results = tmp_path / "results"
    for name in ("x", "y"):
        assert main(["--results", str(results), "run", str(_toml(tmp_path, name, seeds=4)), "--quiet"]) == 0
    desk = tmp_path / "Desktop"
    desk.mkdir()
    (desk / "holiday.png").write_bytes(b"MY PHOTO")
    (desk / "notes.txt").write_text("mine")
    for _ in range(2):  # a second report replaces its own files, and only those
        assert main(["--results", str(results), "report", "x", "--out", str(desk)]) == 0
        assert (desk / "holiday.png").read_bytes() == b"MY PHOTO" and (desk / "notes.txt").read_text() == "mine"
        assert (desk / "report.md").is_file() and (desk / "seeds.png").is_file()
    assert main(["--results", str(results), "report", "--compare", "x", "y", "--out", str(desk)]) == 0
    assert (desk / "holiday.png").read_bytes() == b"MY PHOTO" and "x vs y" in (desk / "report.md").read_text()
    capsys.readouterr()
    clash = tmp_path / "thesis"
    clash.mkdir()
    (clash / "report.md").write_text("MY THESIS")
    assert main(["--results", str(results), "report", "x", "--out", str(clash)]) == 2
    assert "report.md was not written by harness" in _one_line(capsys)
    assert (clash / "report.md").read_text() == "MY THESIS"
    assert sorted(p.name for p in clash.iterdir()) == ["analysis", "report.md"]  # the tables are the harness's own


def test_report_folder_drops_figures_it_no_longer_draws(tmp_path: Path, fake_runs):
    results = tmp_path / "results"
    assert main(["--results", str(results), "run", str(_toml(tmp_path, seeds=4)), "--quiet"]) == 0
    report = results / "x" / "report"
    report.mkdir(parents=True)
    (report / "old_figure.png").write_bytes(b"from a report before manifests")
    assert main(["--results", str(results), "report", "x"]) == 0
    assert not (report / "old_figure.png").exists() and (report / "seeds.png").is_file()
    manifest = json.loads((report / ".harness-report.json").read_text())["files"]
    assert "seeds.png" in manifest and "report.md" in manifest and not list(report.glob(".report-staging-*"))


@pytest.mark.parametrize("planted", [".driver.lock", "experiment.json", "experiment.toml"])
def test_a_planted_file_link_is_never_written_through(tmp_path: Path, fake_runs, capsys, planted: str):
    results = tmp_path / "results"
    (results / "x").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("USER DATA\n")
    (results / "x" / planted).symlink_to(victim)
    with pytest.warns(RecordWarning) if planted == "experiment.json" else contextlib.nullcontext():  # set aside
        code = main(["--results", str(results), "run", str(_toml(tmp_path)), "--quiet"])
    assert victim.read_text() == "USER DATA\n"  # was truncated (the lock) or overwritten (the records)
    if planted == ".driver.lock":  # the lock is refused in one line: nothing runs
        assert code == 2 and ".driver.lock is a symbolic link" in _one_line(capsys)
        assert not (results / "x" / "runs").exists()
    else:  # the record is replaced by a real file beside the runs
        assert code == 0 and not (results / "x" / planted).is_symlink() and (results / "x" / planted).stat().st_size


@pytest.mark.parametrize(("folder", "command"), [("runs", "run"), ("analysis", "analyze"), ("report", "report")])
def test_a_planted_folder_link_is_refused_in_one_line(tmp_path: Path, fake_runs, capsys, folder: str, command: str):
    results = tmp_path / "results"
    spec = _toml(tmp_path, seeds=2)
    if command != "run":
        assert main(["--results", str(results), "run", str(spec), "--quiet"]) == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (results / "x").mkdir(parents=True, exist_ok=True)
    (results / "x" / folder).symlink_to(outside, target_is_directory=True)
    capsys.readouterr()
    args = [str(spec), "--quiet"] if command == "run" else ["x"]
    assert main(["--results", str(results), command, *args]) == 2
    assert f"x/{folder} is a symbolic link" in _one_line(capsys)
    assert list(outside.iterdir()) == []  # nothing sent outside the results root


def test_a_planted_link_at_a_table_or_figure_is_replaced_not_followed(tmp_path: Path, fake_runs):
    results = tmp_path / "results"
    assert main(["--results", str(results), "run", str(_toml(tmp_path, seeds=3)), "--quiet"]) == 0
    victims = {}
    for rel in ("analysis/summary.parquet", "report/report.md", "report/seeds.png", "runs.parquet"):
        victim = tmp_path / f"victim-{rel.replace('/', '-')}"
        victim.write_text("USER DATA")
        (results / "x" / rel).parent.mkdir(exist_ok=True)
        (results / "x" / rel).symlink_to(victim)
        victims[rel] = victim
    (results / "x" / "runs" / "ffffffffffffffff.parquet").write_bytes(b"new part")  # so the snapshot is rewritten
    with pytest.warns(BadPartWarning):
        assert main(["--results", str(results), "report", "x"]) == 0
    for rel, victim in victims.items():
        assert victim.read_text() == "USER DATA", rel
        assert not (results / "x" / rel).is_symlink(), rel


def test_a_damaged_experiment_record_is_rebuilt_by_run_and_refused_in_one_line(tmp_path: Path, fake_runs, capsys):
    results = tmp_path / "results"
    spec = _toml(tmp_path, seeds=3)
    assert main(["--results", str(results), "run", str(spec), "--quiet"]) == 0
    (results / "x" / "experiment.json").write_text("")  # what a kill or a full disk left under the old writer
    capsys.readouterr()
    for command in (["analyze", "x"], ["report", "x"], ["status", "x"]):
        assert main(["--results", str(results), *command]) == 2
        err = _one_line(capsys)
        assert "experiment.json is damaged (empty)" in err and "harness run" in err
    with pytest.warns(RecordWarning, match="rebuilt"):
        assert main(["--results", str(results), "run", str(spec), "--quiet"]) == 0  # the suggested fix works
    assert "3 already stored" in capsys.readouterr().out
    assert main(["--results", str(results), "analyze", "x"]) == 0
    assert list((results / "x").glob("experiment.json.damaged-*"))


def test_a_full_disk_while_the_record_is_written_leaves_the_previous_one(tmp_path: Path):
    exp = tmp_path / "x"
    remember_spec(load_experiment(_toml(tmp_path, seeds=2)), exp, None)
    before = (exp / "experiment.json").read_bytes()
    bigger = load_experiment(_toml(tmp_path, seeds=40))
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before), hard))  # a write past this size fails: a full disk
    try:
        with pytest.raises(OSError):
            remember_spec(bigger, exp, "cpu")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert (exp / "experiment.json").read_bytes() == before and read_meta(exp)["runs"] == 2


def test_a_name_too_long_for_a_folder_and_a_results_root_that_is_a_file(tmp_path: Path, capsys):
    spec = tmp_path / "long.toml"
    spec.write_text(TOML.format(name="n" * 300, seeds=1))
    assert main(["--results", str(tmp_path / "r"), "run", str(spec)]) == 2
    assert "is 300 bytes long; at most 100" in _one_line(capsys)
    (tmp_path / "afile").write_text("not a folder")
    for command in (["run", str(_toml(tmp_path))], ["analyze", "x"], ["report", "x"], ["status", "x"]):
        assert main(["--results", str(tmp_path / "afile"), *command]) == 2
        assert "afile (from --results) is a file" in _one_line(capsys)


def test_workers_below_one_is_refused_not_a_hang(tmp_path: Path, fake_runs, capsys):
    done: list[int] = []
    for workers in ("-1", "0"):
        argv = ["--results", str(tmp_path / "r"), "run", str(_toml(tmp_path, seeds=2)), "--quiet", "--workers", workers]
        thread = threading.Thread(target=lambda a=argv: done.append(main(a)), daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), f"--workers {workers} hangs"  # it waited forever for 0 slots
        assert done[-1] == 2 and "--workers" in _one_line(capsys)


def test_analyze_and_report_say_a_driver_is_still_running(tmp_path: Path, fake_runs, capsys):
    results = tmp_path / "results"
    assert main(["--results", str(results), "run", str(_toml(tmp_path, seeds=3)), "--quiet"]) == 0
    capsys.readouterr()
    with ExperimentLock(results / "x"):
        for command in ("analyze", "report"):
            assert main(["--results", str(results), command, "x"]) == 0
            assert "note: a driver is running x now" in capsys.readouterr().err
    assert main(["--results", str(results), "analyze", "x"]) == 0
    assert "driver" not in capsys.readouterr().err


def test_export_out_makes_no_folders_and_replaces_only_with_force(tmp_path: Path, fake_runs, capsys):
    results = tmp_path / "results"
    assert main(["--results", str(results), "run", str(_toml(tmp_path, seeds=2)), "--quiet"]) == 0
    capsys.readouterr()
    nowhere = tmp_path / "no" / "such" / "folder" / "runs.csv"
    assert main(["--results", str(results), "export", "x", "--out", str(nowhere)]) == 2
    assert "does not exist; create it first" in _one_line(capsys) and not (tmp_path / "no").exists()
    mine = tmp_path / "mine.csv"
    mine.write_text("my table")
    assert main(["--results", str(results), "export", "x", "--out", str(mine)]) == 2
    assert "exists; pass --force" in _one_line(capsys) and mine.read_text() == "my table"
    assert main(["--results", str(results), "export", "x", "--out", str(mine), "--force"]) == 0
    assert mine.read_text().startswith("run_id,")


def _one_example_task(tmp_path: Path, model: Path, dev_rows: int, sample_size: int) -> Path:
    data = tmp_path / "data" / "tiny"
    data.mkdir(parents=True, exist_ok=True)
    rows = [f"example {i} text,{'pos' if i % 2 else 'neg'}" for i in range(8)]
    (data / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    (data / "dev.csv").write_text("text,label\n" + "\n".join(rows[:dev_rows]) + "\n")
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        f'name = "tiny"\ntask = "tiny"\nmodel = "{model}"\nseeds = 2\nsample_size = {sample_size}\n'
        f'data_dir = "{tmp_path / "data"}"\n[recipes.a]\nepochs = 1\n[custom_tasks.tiny]\nfolder = "tiny"\n'
        'text_columns = ["text"]\nlabel_column = "label"\nlabels = ["neg", "pos"]\nmetric = "f1"\n'
    )
    return spec


def test_a_dev_set_of_one_example_is_refused_before_any_run(tmp_path: Path, tiny_model_dir: Path, capsys):
    spec = _one_example_task(tmp_path, tiny_model_dir, dev_rows=1, sample_size=4)
    assert main(["--results", str(tmp_path / "r"), "run", str(spec)]) == 2
    err = _one_line(capsys)
    assert "dev set has 1 example(s)" in err and "needs at least 4 per split" in err
    assert not (tmp_path / "r" / "tiny" / "runs").exists()


def test_a_sample_size_not_below_the_training_set_gets_a_note(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch, capsys
):
    monkeypatch.setattr(harness.schedule, "run_experiment", lambda *a, **k: _Summary())
    spec = _one_example_task(tmp_path, tiny_model_dir, dev_rows=8, sample_size=50)
    assert main(["--results", str(tmp_path / "r"), "run", str(spec)]) == 0
    assert "note: sample_size = 50 is not below the 8 training examples of task 'tiny'" in capsys.readouterr().err
