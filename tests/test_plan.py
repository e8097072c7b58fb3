"""`harness run --dry-run` (harness/schedule/plan.py): the plan and the checks, without training or torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.experiment.config import load_experiment
from harness.schedule import groups
from harness.schedule.lock import ExperimentLock
from harness.storage.records import base_row, failed_row
from harness.storage.store import write_run

ROOT = Path(__file__).resolve().parents[1]
GLUE = os.environ.get("HARNESS_DATA_DIR", "")  # read at collection: a later test may point it elsewhere


def _toml(tmp_path: Path, model: Path, glue: Path, extra: str = "", name: str = "plan") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            name = "{name}"
            tasks = ["sst2", "rte"]
            model = "{model}"
            data_dir = "{glue}"
            sample_size = 32
            eval_size = 20
            max_seq_length = 48
            num_evals = 2
            seeds = 5
            {extra}
            [defaults]
            epochs = 1
            batch_size = 8
            [recipes.zeta]
            [recipes.alpha]
            lr = 1e-3
            """
        )
    )
    return path


def _store_done(exp_dir: Path, spec, wall: float) -> None:
    row = {**base_row(spec), "status": "done", "metric": "accuracy", "score": 60.0, "steps_done": 4,
           "total_steps": 4, "attempts": 1, "wall_time_s": wall}  # fmt: skip
    write_run(exp_dir, row, [])


def _rows(out: str) -> dict[str, list[str]]:
    """config -> the cells of its plan row (columns are two or more spaces apart)."""
    cells = (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())
    return {f"{c[0]}/{c[1]}": c for c in cells if len(c) == 13 and c[0] not in ("task", "----")}


def test_dry_run_plans_every_configuration_in_order_and_writes_nothing(
    tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path, capsys
):
    toml = _toml(tmp_path, tiny_model_dir, tiny_glue_dir)
    results = tmp_path / "results"
    assert main(["--results", str(results), "run", str(toml), "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["sst2/zeta", "sst2/alpha", "rte/zeta", "rte/alpha"]  # the file's order
    assert rows["rte/alpha"][2:10] == ["5", "5", "5", "1", "0", "0", "0", "5"]  # runs, init, order, sample, ..., to run
    assert rows["rte/alpha"][10:12] == ["loop", "5 x 1"]
    assert "estimated wall time: no estimate" in out and "would run" in out
    assert "data sst2:" in out and "model " in out and "fields:" in out and "2 slot(s)" in out
    assert not results.exists()  # a plan reads the store; it writes nothing


def test_dry_run_counts_stored_failed_and_reused_runs_and_estimates_from_their_time(
    tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path, capsys
):
    toml = _toml(tmp_path, tiny_model_dir, tiny_glue_dir)
    experiment = load_experiment(toml)
    results = tmp_path / "results"
    rte_alpha = [s for s in experiment.runs if s.config_key == "rte/alpha"]
    for spec, wall in zip(rte_alpha[:2], (10.0, 30.0), strict=False):
        _store_done(results / "plan", spec, wall)
    write_run(results / "plan", failed_row(rte_alpha[2], "boom", 3, "cpu"), [])
    _store_done(results / "other", rte_alpha[3], 20.0)  # an identical run another experiment finished
    before = sorted(p.name for p in (results / "other" / "runs").iterdir())
    assert main(["--results", str(results), "run", str(toml), "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    row = _rows(out)["rte/alpha"]
    assert row[6:10] == ["2", "1", "1", "1"]  # stored, failed, reused, to run
    assert row[12] == "20.0 (2)"  # mean s/run of the two timed runs of this configuration
    assert "no estimate (no stored run of 3 of these configurations)" in out  # the other three: nothing timed
    assert sorted(p.name for p in (results / "other" / "runs").iterdir()) == before  # nothing copied
    assert not (results / "plan" / "runs" / f"{rte_alpha[3].run_id}.parquet").exists()
    main(["--results", str(results), "run", str(toml), "--dry-run", "--workers", "2", "--retry-failed"])
    assert _rows(capsys.readouterr().out)["rte/alpha"][9] == "2"  # the failed run is to run again


def test_dry_run_estimate_is_runs_to_do_times_seconds_per_run_over_slots(
    tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path, capsys
):
    toml = _toml(tmp_path, tiny_model_dir, tiny_glue_dir)
    experiment = load_experiment(toml)
    results = tmp_path / "results"
    by_config: dict[str, list] = {}
    for spec in experiment.runs:
        by_config.setdefault(spec.config_key, []).append(spec)
    for specs in by_config.values():
        _store_done(results / "plan", specs[0], 60.0)  # 4 configurations x 4 runs to do x 60 s, on 2 slots
    assert main(["--results", str(results), "run", str(toml), "--dry-run", "--workers", "2"]) == 0
    assert "estimated wall time: 8m00s" in capsys.readouterr().out


def test_dry_run_shows_the_schedulers_own_seed_groups_and_the_loop_fallback(
    tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path, capsys, monkeypatch
):
    extra = "[schedule]\nseeds_per_worker = 3\n[recipes.lpft]\nhead_warmup_steps = 1\n"
    toml = _toml(tmp_path, tiny_model_dir, tiny_glue_dir, extra=extra)
    assert main(["--results", str(tmp_path / "r"), "run", str(toml), "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["rte/zeta"][10:12] == ["vectorised", "1 x 3, 1 x 2"]
    assert rows["rte/lpft"][10:12] == ["loop", "5 x 1"]
    assert "rte/lpft: one run per worker: head_warmup_steps (LP-FT phases) is not vectorised" in out
    real = groups.plan_attempts
    calls = []

    def other_groups(todo, seeds_per_worker, rung_at, *slots_memory):  # whatever the scheduler decides, the plan shows
        calls.append((len(todo), seeds_per_worker))
        return real(todo, 2, rung_at, *slots_memory)

    monkeypatch.setattr(groups, "plan_attempts", other_groups)
    main(["--results", str(tmp_path / "r"), "run", str(toml), "--dry-run"])
    assert calls == [(30, 3)] and _rows(capsys.readouterr().out)["rte/zeta"][11] == "2 x 2, 1 x 1"


def test_dry_run_exits_2_with_one_line_when_it_would_not_run(
    tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path, capsys
):
    toml = _toml(tmp_path, tiny_model_dir, tiny_glue_dir)
    no_data = tmp_path / "no_data.toml"
    no_data.write_text(toml.read_text().replace('tasks = ["sst2", "rte"]', 'tasks = ["cola"]'))
    assert main(["--results", str(tmp_path / "r"), "run", str(no_data), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "would NOT run" in captured.out and "FAILED: " in captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and "CoLA/train.tsv" in captured.err
    with ExperimentLock(tmp_path / "r" / "plan"):
        assert main(["--results", str(tmp_path / "r"), "run", str(toml), "--dry-run"]) == 2
    assert "is locked by a running driver" in capsys.readouterr().err


def test_dry_run_does_not_import_torch(tmp_path: Path, tiny_model_dir: Path, tiny_glue_dir: Path):
    toml = _toml(tmp_path, tiny_model_dir, tiny_glue_dir)
    code = (
        "import sys; from harness.cli import main; "
        "rc = main(['--results', sys.argv[2], 'run', sys.argv[1], '--dry-run']); "
        "print(rc, [m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(toml), str(tmp_path / "r")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


@pytest.mark.real
def test_dry_run_of_a_paper_file_at_gpu_scale(capsys, tmp_path: Path):
    """The packaged model and the real GLUE data: every check passes and the seed groups are the scale's."""
    if not all((Path(GLUE) / task / "train.tsv").is_file() for task in ("RTE", "SST-2", "STS-B")):
        pytest.skip("no GLUE data folder with RTE, SST-2 and STS-B ($HARNESS_DATA_DIR)")
    toml = ROOT / "experiments" / "zhang2021" / "reinit_layers.toml"
    argv = ["--results", str(tmp_path), "run", str(toml), "--scale", "gpu", "--data-dir", GLUE, "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    experiment = load_experiment(toml, scale="gpu", data_dir=GLUE)
    per_config = len(experiment.runs) // (len(experiment.tasks) * len(experiment.recipes))
    k = experiment.schedule.seeds_per_worker  # the scale's seed groups: one group per configuration when K holds it
    assert f"{len(experiment.runs)} run(s)" in out and "would run" in out
    assert per_config <= k and f"1 x {per_config}" in out
