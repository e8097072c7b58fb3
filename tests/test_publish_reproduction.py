"""The committed reports' header: wall time and machine come from the log and the runs, never by hand."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import publish_reproduction as publish


def _runs(provenance: dict, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"provenance": [json.dumps(provenance)] * n, "wall_time_s": [10.0] * n,
                         "task": ["sst2"] * n, "recipe": ["a", "a", "b"][:n]})  # fmt: skip


def test_wall_time_is_the_drivers_summary_line(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("$ harness run\n# exit 0, wall 120.0 s\nx: 3 run(s) in 98.4 s on local (2 slot(s)): 3 done\n")
    assert publish.wall_of(log, _runs({}), 3) == "98 s for 3 runs on 2 worker slots"
    log.write_text(
        "x: 2 run(s) in 50.0 s on local (2 slot(s)): 2 done; 0 already stored, 1 reused from other experiments"
    )
    assert (
        publish.wall_of(log, _runs({}), 3) == "50 s for 2 runs on 2 worker slots (1 more reused from other experiments)"
    )


def test_a_run_stopped_at_its_budget_says_how_many_runs_finished(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("$ harness run\n# exit None, wall 251.3 s\n\n--- stderr\ninterrupted\n")
    text = publish.wall_of(log, _runs({}), 216)
    assert "after 251 s" in text and "3 of the 216 planned runs finished" in text


def test_without_a_log_the_wall_time_is_the_summed_run_time():
    assert publish.wall_of(None, _runs({}), None) == "30 s of summed run time for 3 runs"


def test_machine_names_the_gpu_or_the_cpu_threads():
    gpu = {"device": "cuda:0", "device_name": "NVIDIA H200", "torch": "2.11.0+cu130", "transformers": "5.17.0"}
    assert publish.machine_of(_runs(gpu)) == "NVIDIA H200 (torch 2.11.0+cu130, transformers 5.17.0)"
    cpu = {"device": "cpu", "device_name": "x86_64", "threads": 1, "torch": "2.13.0+cpu", "transformers": "5"}
    assert publish.machine_of(_runs(cpu)).startswith("x86_64 CPU, 1 thread(s) per run")
    assert publish.seeds_per_arm(_runs(cpu)) == "1-2"


def test_the_model_line_names_the_model_not_the_spec_keyword(tmp_path: Path):
    args = argparse.Namespace(scale="testable", include=None, model_note=None, log=None)
    runs = _runs({}).assign(model="packaged", sample_size=500, spec=json.dumps({"max_seq_length": 64}))
    head = publish.header(args, runs, "x", None, "elsewhere")
    assert "> - Model: all-MiniLM-L6-v2 (packaged)." in head
    elsewhere = runs.assign(model=str(tmp_path / "my-model"))
    assert str(tmp_path) not in publish.header(args, elsewhere, "x", None, "elsewhere")


TOML = """
name = "regen"
tasks = ["rte", "sst2", "stsb"]
model = "tiny-model"
eval_protocol = "heldout"
seeds = 3
[recipes.standard]
[recipes.reinit2]
reinit_layers = 2
[scale.gpu]
seeds = 4
"""


def _store(tmp_path: Path, data: Path, keep, sha: str = "abc123") -> tuple[Path, Path, set[str]]:
    """A store of the regen experiment at scale gpu holding only the planned runs `keep(spec)` selects."""
    from harness.experiment.config import load_experiment
    from harness.storage.records import base_row
    from harness.storage.scope import remember_spec
    from harness.storage.store import write_run

    toml = tmp_path / "regen.toml"
    toml.write_text(TOML)
    results = tmp_path / "results"
    exp = load_experiment(toml, scale="gpu", data_dir=str(data))
    remember_spec(exp, results / "regen", "gpu", str(data))
    kept = set()
    for i, spec in enumerate(exp.runs):
        if keep(spec):
            row = {**base_row(spec), "status": "done", "score": 70.0 + i % 5, "metric": "accuracy", "steps_done": 1,
                   "total_steps": 1, "attempts": 1, "wall_time_s": 2.0,
                   "provenance": json.dumps({"git_sha": sha, "device": "cpu", "threads": 1})}  # fmt: skip
            write_run(results / "regen", row, [])
            kept.add(spec.run_id)
    return toml, results, kept


def _planned(command: str, data: Path, cwd: Path) -> set[str]:
    """The run ids a `harness run FILE --scale S --set ...` command plans (parsed as the CLI parses it)."""
    import shlex

    from harness.experiment.config import load_experiment
    from harness.experiment.overrides import parse_assignments

    argv = shlex.split(command)
    assert argv[:2] == ["harness", "run"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    scale = argv[argv.index("--scale") + 1]
    spec = load_experiment(cwd / argv[2], scale=scale, data_dir=str(data), overrides=parse_assignments(sets))
    return {r.run_id for r in spec.runs}


@pytest.mark.parametrize(
    ("case", "keep", "sets"),
    [
        ("all", lambda s: True, {}),
        ("two of three tasks (a run stopped at its budget)", lambda s: s.task != "stsb", {"tasks": ["rte", "sst2"]}),
        ("one recipe", lambda s: s.recipe.name == "reinit2", {"only_recipes": ["reinit2"]}),
        ("fewer seeds", lambda s: s.init_seed <= 2, {"seeds": [1, 2]}),
    ],
)
def test_the_regenerate_command_plans_exactly_the_stored_runs(tmp_path, tiny_glue_dir, case, keep, sets):
    from harness.report.regenerate import regenerate

    toml, _, kept = _store(tmp_path, tiny_glue_dir, keep)
    regen = regenerate(toml, "gpu", kept, data_dir=str(tiny_glue_dir), shown_as="regen.toml")
    assert regen.exact and dict(regen.sets) == sets, case
    assert _planned(regen.command(), tiny_glue_dir, tmp_path) == kept  # the command, as a user would type it


def test_runs_no_restriction_can_plan_are_said_to_be_inexact(tmp_path, tiny_glue_dir):
    from harness.report.regenerate import regenerate

    toml, _, kept = _store(tmp_path, tiny_glue_dir, lambda s: s.task == "rte" or s.init_seed == 1)
    regen = regenerate(toml, "gpu", kept, data_dir=str(tiny_glue_dir))
    assert not regen.exact and regen.stored == len(kept) and regen.planned != len(kept)


def test_published_report_has_the_checked_command_code_state_and_only_its_files(tmp_path, tiny_glue_dir, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tiny_glue_dir))
    toml, results, kept = _store(tmp_path, tiny_glue_dir, lambda s: s.task != "stsb", sha="f3a157d+dirty")
    out = tmp_path / "docs" / "regen"
    (out.parent).mkdir(parents=True)
    assert publish.main(["--results", str(results), "--experiment", str(toml), "--scale", "gpu",
                         "--out", str(out)]) == 0  # fmt: skip
    md = (out / "report.md").read_text()
    head = md.split("\n\n", 1)[0]
    assert '--set \'tasks=["rte", "sst2"]\'' in head and f"plans exactly the {len(kept)} runs" in head
    assert "Code: all 16 runs from commit `f3a157d+dirty`, a checkout with uncommitted changes" in head
    assert str(tmp_path) not in md  # no absolute path of this machine
    assert "Variance decomposition" not in md and "degenerate.png" not in md  # paired seeds, no degenerate run
    files = md.split("\n## Files\n", 1)[1]
    listed = set(re.findall(r"\| `([^`]+)` \|", files))
    assert (
        listed == {p.name for p in out.iterdir()} and "report.html" not in listed and "analysis/*.parquet" not in files
    )
    assert all(re.search(rf"\| `{re.escape(name)}` \| \w", files) for name in listed)  # each file says what it is


def test_paper_forest_is_drawn_from_the_committed_verdict_tables(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_report_figures import verdict_frame

    for name, rows in (("table1", slice(0, 4)), ("small_data", slice(4, 7))):
        (tmp_path / name).mkdir()
        verdict_frame().iloc[rows].to_csv(tmp_path / name / "verdicts.csv", index=False)
    assert publish.main(["--paper-forest", str(tmp_path)]) == 0
    assert (tmp_path / "forest.png").stat().st_size > 5000
    assert publish.main(["--paper-forest", str(tmp_path / "table1")]) == 2  # no reports under it: a clear error


def test_a_store_trained_on_a_model_folder_of_another_machine_is_not_checked(tmp_path, tiny_glue_dir):
    import argparse

    toml, results, _ = _store(tmp_path, tiny_glue_dir, lambda s: True)
    meta = results / "regen" / "experiment.json"
    meta.write_text(meta.read_text().replace('"overrides": {}', '"overrides": {"model": "/gone/minilm-fp32"}'))
    args = argparse.Namespace(experiment=str(toml), scale="gpu")
    reason = publish.plan(args, results / "regen", publish.scoped_runs(results / "regen", "gpu"))
    assert isinstance(reason, str) and "model folder …/gone/minilm-fp32 is not on this machine" in reason
    assert publish.regenerate_line(reason, "regen", "gpu").startswith("Regenerate: not checked here (the runs'")
