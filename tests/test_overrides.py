"""`--set key=value`: parsed as TOML values, validated like the file, recorded beside the results."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cli import main
from harness.experiment.config import ConfigError, load_experiment
from harness.experiment.overrides import parse_assignments

ROOT = Path(__file__).resolve().parents[1]

FILE = textwrap.dedent(
    """
    name = "ov"
    task = "rte"
    model = "packaged"
    seeds = 2

    [defaults]
    lr = 2e-5

    [recipes.base]
    [recipes.fast]
    lr = 1e-4

    [scale.cpu]
    seeds = 3
    """
)


@pytest.fixture
def exp_file(tmp_path: Path) -> Path:
    path = tmp_path / "ov.toml"
    path.write_text(FILE)
    return path


def test_values_are_toml_and_bare_strings_are_strings():
    got = parse_assignments(["seeds=20", "model=/data/minilm", "recipes.base.bias_correction=false", "seeds=[1, 5]"])
    assert got == {"seeds": [1, 5], "model": "/data/minilm", "recipes.base.bias_correction": False}


def test_overrides_reach_top_level_defaults_schedule_and_recipes(exp_file: Path):
    sets = {
        "seeds": 4,
        "model": "/somewhere/minilm",
        "defaults.batch_size": 32,
        "schedule.runs_per_gpu": 8,
        "recipes.fast.precision": "bf16",
        "deterministic": True,
    }
    exp = load_experiment(exp_file, overrides=sets)
    assert len(exp.runs) == 8 and {r.model for r in exp.runs} == {"/somewhere/minilm"}
    assert {r.recipe.batch_size for r in exp.runs} == {32}
    assert exp.schedule.runs_per_gpu == 8 and exp.schedule.deterministic
    assert {r.recipe.name: r.recipe.precision for r in exp.runs} == {"base": "fp32", "fast": "bf16"}


def test_overrides_win_over_the_scale_section(exp_file: Path):
    assert len(load_experiment(exp_file, scale="cpu").runs) == 6
    assert len(load_experiment(exp_file, scale="cpu", overrides={"seeds": 5}).runs) == 10


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"recipes.base.lr": -1}, "field 'lr' = -1.0; must be > 0"),
        ({"recipes.nope.lr": 1e-5}, "no recipe 'nope'"),
        ({"recipes.base.precision": "fp8"}, "'precision' = 'fp8'"),
        ({"schedule.runs_per_gpu": 0}, "'schedule.runs_per_gpu' = 0"),
        ({"sedes": 3}, "unknown top-level key(s) ['sedes']"),
        ({"model.path": "x"}, "'model' is a top-level value"),
    ],
)
def test_bad_overrides_fail_like_the_file_would(exp_file: Path, sets, message):
    with pytest.raises(ConfigError) as info:
        load_experiment(exp_file, overrides=sets)
    assert message in str(info.value) and "--set" in str(info.value)


def test_precision_is_in_the_run_id_but_fp32_keeps_old_ids(exp_file: Path):
    base = load_experiment(exp_file).runs[0]
    same = load_experiment(exp_file, overrides={"defaults.precision": "fp32"}).runs[0]
    bf16 = load_experiment(exp_file, overrides={"defaults.precision": "bf16"}).runs[0]
    assert base.run_id == same.run_id != bf16.run_id
    assert "precision" not in base.canonical()["recipe"]


def test_overrides_are_recorded_with_the_results(exp_file: Path, tmp_path: Path, monkeypatch):
    from harness import cli

    monkeypatch.setattr(cli, "preflight", lambda *a: None)

    def fake_run(*a, **k):  # the driver writes the spec copy once it holds the lock
        k["on_locked"]()
        return SimpleNamespace(failed=0)

    monkeypatch.setattr("harness.schedule.run_experiment", fake_run)
    results = tmp_path / "results"
    argv = ["--results", str(results), "run", str(exp_file), "--set", "seeds=3", "--set", "model=/m"]
    assert main(argv) == 0
    meta = json.loads((results / "ov" / "experiment.json").read_text())
    assert meta["overrides"] == {"seeds": 3, "model": "/m"} and meta["runs"] == 6


def test_a_config_error_comes_back_without_importing_torch(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(FILE.replace("lr = 1e-4", 'lr = "fast"'))
    code = (
        "import sys; from harness.cli import main; rc = main(['run', sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'transformers', 'pandas', 'scipy') if m in sys.modules]; "
        "print(rc, heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert out.stdout.strip() == "2 []", out.stdout + out.stderr
    assert "field 'lr' = 'fast'" in out.stderr
