"""Hostile input and faults at the command line: folder names, the lock, read-only and full disks, outcomes."""

from __future__ import annotations

import base64
import errno
import functools
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers (spawn) inherit sys.path: fakes_schedule imports there

import harness.schedule
from harness import cli
from harness.cli import main
from harness.experiment.spec import Recipe, RunSpec
from harness.report.render import markdown_to_html
from harness.schedule.lock import ExperimentLock
from harness.storage.records import failed_row
from harness.storage.store import load_runs

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

    real_write_table = store.pq.write_table

    def read_only_exp(table: object, where: object, *args: object, **kwargs: object) -> None:
        if str(where).startswith(str(exp)):  # pandas writes through the same function: refuse only the store
            refuse(where)
        real_write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(store.pq, "write_table", read_only_exp)
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
