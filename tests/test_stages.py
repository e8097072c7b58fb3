"""Intermediate-task stages: trained once per first-stage spec, cached, encoder handed to the target run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.experiment.config import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training.models import load_classifier
from harness.training.pipeline import train_run
from harness.training.stages import intermediate as stages


def _spec(model_dir: Path, **recipe) -> RunSpec:
    base = Recipe(lr=1e-3, epochs=1.0, batch_size=8, intermediate_task="sst2", intermediate_size=24)
    return RunSpec(task="rte", model=str(model_dir), recipe=replace(base, **recipe), init_seed=1, order_seed=1,
                   sample_size=16, max_seq_length=32, num_evals=2, eval_size=16)  # fmt: skip


def test_stage_spec_is_the_intermediate_task_seeded_by_sample_seed(tiny_model_dir: Path):
    spec = _spec(tiny_model_dir)
    stage = stages.intermediate_spec(spec)
    assert stage.task == "sst2" and stage.sample_size == 24 and stage.recipe.intermediate_task is None
    assert stage.init_seed == stage.order_seed == spec.sample_seed
    # Target seeds share one first stage; another first-stage size is another stage.
    assert stages.intermediate_spec(replace(spec, init_seed=7, order_seed=9)).run_id == stage.run_id
    assert stages.intermediate_spec(_spec(tiny_model_dir, intermediate_size=32)).run_id != stage.run_id


def test_stage_is_trained_once_and_its_encoder_starts_the_target(
    tiny_model_dir: Path, tiny_glue_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, cache_dir=str(tmp_path))
    spec = _spec(tiny_model_dir)
    calls = []
    original = stages.save_encoder_once

    def counting(folder, train, save_head=False):
        return original(folder, lambda: (calls.append(1), train())[1], save_head)

    monkeypatch.setattr(stages, "save_encoder_once", counting)
    first = stages.intermediate_checkpoint(spec, ctx)
    second = stages.intermediate_checkpoint(replace(spec, init_seed=2, order_seed=2), ctx)
    assert len(calls) == 1 and first.path == second.path and first.record["spec"]
    saved = load_file(first.path)
    model = load_classifier(str(tiny_model_dir), num_labels=2)
    original_weight = model.base_model.embeddings.word_embeddings.weight.detach().clone()
    first.load_encoder_into(model)
    loaded = model.base_model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert not torch.equal(original_weight, saved["embeddings.word_embeddings.weight"])  # the stage trained
    result = train_run(spec, ctx)
    assert result.run["status"] == "done" and len(calls) == 1  # the target run reused the cached stage


def test_stage_of_a_custom_task_trains_on_the_intermediate_tasks_data(tiny_model_dir: Path, tiny_glue_dir: Path):
    """With a custom target task the first stage must load SST-2's data, not the custom task's."""
    from harness.experiment import data as D
    from harness.experiment.config import parse_experiment

    exp = parse_experiment(
        {"name": "x", "task": "reviews", "model": str(tiny_model_dir), "seeds": 1,
         "custom_tasks": {"reviews": {"folder": "REV", "text_columns": ["text"], "label_column": "label",
                                      "labels": ["0", "1"], "metric": "accuracy"}},
         "recipes": {"two": {"intermediate_task": "sst2", "intermediate_size": 24}}},
    )  # fmt: skip
    stage = stages.intermediate_spec(exp.runs[0])
    assert stage.task == "sst2" and stage.custom_task is None
    assert stage.task_def == D.get_task("sst2")
    examples = D.load_split(stage.task_def, "train", tiny_glue_dir)  # the custom folder REV does not exist
    assert len(examples) == 80 and examples[0].text_b is None


def _saved_once(folder: Path, model_dir: Path) -> dict:
    from harness.training.stages.cache import save_encoder_once

    return save_encoder_once(folder, lambda: (load_classifier(str(model_dir), num_labels=2), {"steps": 3}), True)


def test_the_stage_cache_never_writes_through_a_planted_link(tiny_model_dir: Path, tmp_path: Path):
    """The cache sits in a results folder that may come from someone else: a link at its lock is refused in one
    line naming it, its record and weights replace a link instead of writing into its target (they were written
    through it), and a linked stage folder is refused before anything is written outside the cache."""
    from harness.storage.safe_files import UnsafePathError
    from harness.training.stages.cache import stage_folder

    ctx = RunContext(cache_dir=str(tmp_path / "cache"))
    victim = tmp_path / "victim.txt"
    victim.write_text("USER DATA")
    locked = stage_folder(ctx, "stages", "aaaa")
    (locked / ".lock").symlink_to(victim)
    with pytest.raises(UnsafePathError, match=r"\.lock is a symbolic link"):
        _saved_once(locked, tiny_model_dir)
    assert victim.read_text() == "USER DATA" and not (locked / "encoder.safetensors").exists()

    folder = stage_folder(ctx, "stages", "bbbb")
    for name in ("record.json", "head.safetensors", "encoder.safetensors"):
        (folder / name).symlink_to(tmp_path / f"victim-{name}")
        (tmp_path / f"victim-{name}").write_text("USER DATA")
    (folder / "encoder.safetensors").unlink()  # a present encoder means a finished stage: nothing would be written
    assert _saved_once(folder, tiny_model_dir) == {"steps": 3}
    assert all((tmp_path / f"victim-{n}").read_text() == "USER DATA" for n in ("record.json", "head.safetensors"))
    assert not any((folder / n).is_symlink() for n in ("record.json", "head.safetensors"))
    assert load_file(folder / "encoder.safetensors")

    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "cache" / "tapt").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="tapt is a symbolic link"):
        stage_folder(ctx, "tapt", "cccc")
    assert list(outside.iterdir()) == []
