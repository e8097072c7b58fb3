"""Run identity: the run id follows the training data, the weights and SPEC_VERSION, and nothing else."""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from harness.experiment import fingerprint, spec
from harness.experiment.config import RunSpec, parse_experiment
from harness.training.stages.intermediate import intermediate_spec
from harness.training.stages.tapt import tapt_spec

EXP = {"name": "e", "task": "rte", "model": "m", "seeds": 2, "recipes": {"a": {}}}


@pytest.fixture
def glue(tiny_glue_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny GLUE folder that a test may edit."""
    return Path(shutil.copytree(tiny_glue_dir, tmp_path / "glue"))


def ids(root: Path | None, **changes: object) -> list[str]:
    return [r.run_id for r in parse_experiment({**EXP, **changes}, "e.toml", data_dir=root).runs]


def _append(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line)


def test_run_id_changes_with_the_training_data_and_only_with_it(glue: Path, tmp_path: Path):
    before = ids(glue)
    # Same content elsewhere, or a newer mtime with the same content: same runs.
    assert ids(Path(shutil.copytree(glue, tmp_path / "copy"))) == before
    os.utime(glue / "RTE" / "train.tsv", ns=(1, 1))
    assert ids(glue) == before
    # Another task's file is not this run's data.
    _append(glue / "SST-2" / "train.tsv", "extra good\t1\n")
    assert ids(glue) == before
    _append(glue / "RTE" / "train.tsv", "999\ta yes\tb\tentailment\n")
    after = ids(glue)
    assert set(after).isdisjoint(before)
    _append(glue / "RTE" / "dev.tsv", "999\ta yes\tb\tentailment\n")
    assert set(ids(glue)).isdisjoint(after)


def test_hub_and_local_data_are_different_runs(glue: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    hub = parse_experiment(EXP, "e.toml").runs[0]
    assert dict(hub.data_fingerprints) == {"rte": "hub:nyu-mll/glue/rte@main"}
    assert set(ids(glue)).isdisjoint(r.run_id for r in parse_experiment(EXP, "e.toml").runs)
    # $HARNESS_DATA_DIR, the file's data_dir and the explicit one resolve the same way.
    monkeypatch.setenv("HARNESS_DATA_DIR", str(glue))
    assert ids(None) == ids(glue) == ids(None, data_dir=str(glue))


def test_run_id_changes_with_the_weights(tiny_model_dir: Path, tmp_path: Path, glue: Path):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    before = ids(glue, model=str(model))
    assert ids(glue, model=str(Path(shutil.copytree(model, tmp_path / "same")))) == before  # content, not path
    packaged = [ids(glue, model=name) for name in sorted(fingerprint.PACKAGED_ALIASES)]
    assert packaged[0] == packaged[1] == packaged[2]  # three names of one set of weights
    weights = next(p for p in model.iterdir() if p.suffix in (".safetensors", ".bin"))
    _append(weights, "x")
    assert set(ids(glue, model=str(model))).isdisjoint(before)


def test_hub_and_packaged_models_are_named_by_id_revision_or_hash(glue: Path):
    hub = parse_experiment({**EXP, "model": "bert-base-uncased"}, "e.toml", data_dir=glue).runs[0]
    assert hub.model_fingerprint == "hub:bert-base-uncased@main"
    packaged = parse_experiment({**EXP, "model": "packaged"}, "e.toml", data_dir=glue).runs[0]
    assert packaged.model_fingerprint == f"sha256:{fingerprint.PACKAGED_SHA256}"


def test_run_id_changes_with_the_spec_version(glue: Path, monkeypatch: pytest.MonkeyPatch):
    run = parse_experiment(EXP, "e.toml", data_dir=glue).runs[0]
    before = run.run_id
    monkeypatch.setattr(spec, "SPEC_VERSION", spec.SPEC_VERSION + 1)
    assert dataclasses.replace(run).run_id != before  # a fresh spec: run_id is cached per instance


def test_spec_version_is_bumped_past_the_one_that_ignored_data_and_weights():
    assert spec.SPEC_VERSION >= 2
    assert "bump" in (spec.__doc__ or "").lower() or "SPEC_VERSION" in (spec.__doc__ or "")


def test_each_file_is_hashed_once_per_process(glue: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[Path] = []
    original = fingerprint.hash_file
    monkeypatch.setattr(fingerprint, "hash_file", lambda p: (calls.append(p), original(p))[1])
    monkeypatch.setattr(fingerprint, "_CACHE", {})
    ids(glue)
    ids(glue, seeds=5)
    assert sorted(p.name for p in calls) == ["dev.tsv", "train.tsv"]
    _append(glue / "RTE" / "train.tsv", "999\ta yes\tb\tentailment\n")
    ids(glue)
    assert len(calls) == 3  # the changed file (new size and mtime) is hashed again, the other is not


def test_fingerprints_survive_the_json_round_trip(glue: Path):
    run = parse_experiment({**EXP, "recipes": {"a": {"intermediate_task": "sst2"}}}, "e.toml", data_dir=glue).runs[0]
    assert RunSpec.from_json(run.to_json()) == run and RunSpec.from_json(run.to_json()).run_id == run.run_id


def test_stage_caches_are_keyed_by_the_stage_tasks_data(glue: Path):
    def stage_ids() -> tuple[str, str]:
        exp = {**EXP, "recipes": {"a": {"intermediate_task": "sst2"}, "t": {"tapt_steps": 5}}}
        runs = {r.recipe.name: r for r in parse_experiment(exp, "e.toml", data_dir=glue).runs}
        return intermediate_spec(runs["a"]).run_id, tapt_spec(runs["t"]).run_id

    first_stage, tapt = stage_ids()
    _append(glue / "RTE" / "train.tsv", "999\ta yes\tb\tentailment\n")  # the target's data: not the first stage's
    stage, tapt_after = stage_ids()
    assert stage == first_stage and tapt_after != tapt  # TAPT reads the target task's own text
    _append(glue / "SST-2" / "train.tsv", "extra good\t1\n")
    assert stage_ids()[0] != first_stage


def test_the_intermediate_stage_keeps_only_its_own_tasks_fingerprint(glue: Path):
    run = parse_experiment({**EXP, "recipes": {"a": {"intermediate_task": "sst2"}}}, "e.toml", data_dir=glue).runs[0]
    assert set(dict(run.data_fingerprints)) == {"rte", "sst2"}
    stage = intermediate_spec(run)
    assert dict(stage.data_fingerprints) == {"sst2": dict(run.data_fingerprints)["sst2"]}
    assert stage.model_fingerprint == run.model_fingerprint
    assert replace(run, data_fingerprints=()).run_id != run.run_id
