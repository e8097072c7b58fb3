"""TAPT: BERT masking statistics, the cached stage keyed by its spec, the encoder copied into the classifier."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from harness.experiment.config import Recipe, RunSpec
from harness.experiment.tasks import TASKS
from harness.storage.records import RunContext
from harness.training.models import load_classifier
from harness.training.pipeline import train_run
from harness.training.recipes.cloze import load_cloze_model
from harness.training.stages import tapt


@pytest.fixture(scope="module")
def char_model_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


def test_masking_follows_mlm_probability_and_80_10_10():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (400, 64), generator=generator)
    ids[:, 0], ids[:, 40], ids[:, 50:] = 2, 3, 0  # [CLS] .. [SEP] then padding
    special = (ids == 2) | (ids == 3) | (ids == 0)
    inputs, labels = tapt.mask_tokens(ids, special, 0.15, 4, 1000, torch.Generator().manual_seed(1))
    selected = labels != tapt.IGNORE_INDEX
    assert not selected[special].any()  # special tokens and padding are never selected
    assert abs(selected.sum().item() / (~special).sum().item() - 0.15) < 0.01  # n = 19,600 eligible tokens
    assert torch.equal(labels[selected], ids[selected]) and torch.equal(inputs[~selected], ids[~selected])
    n = selected.sum().item()
    masked = (inputs[selected] == 4).sum().item() / n
    kept = (inputs[selected] == ids[selected]).sum().item() / n
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.025 and abs(1 - masked - kept - 0.1) < 0.025
    again = tapt.mask_tokens(ids, special, 0.15, 4, 1000, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def _spec(model_dir: Path, task: str = "rte", **recipe_fields) -> RunSpec:
    fields = {"lr": 1e-3, "max_steps": 4, "batch_size": 8, "tapt_steps": 2, "tapt_lr": 1e-3, **recipe_fields}
    return RunSpec(task=task, model=str(model_dir), recipe=Recipe(name="tapt", **fields), init_seed=1, order_seed=2,
                   sample_size=32, max_seq_length=48, num_evals=2, eval_size=20)  # fmt: skip


def test_stage_is_cached_and_keyed_by_its_spec(char_model_dir, tiny_glue_dir, tmp_path, monkeypatch):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, cache_dir=str(tmp_path))
    calls = []
    real = tapt.train_tapt
    monkeypatch.setattr(tapt, "train_tapt", lambda stage, c: calls.append(stage) or real(stage, c))
    spec = _spec(char_model_dir)
    first = tapt.tapt_checkpoint(spec, ctx)
    mtime = (first.folder / "encoder.safetensors").stat().st_mtime_ns
    assert first.folder == tmp_path / "tapt" / tapt.tapt_spec(spec).run_id and len(calls) == 1
    assert first.record["steps"] == 2 and first.record["texts"] == 80  # the full (tiny) train split
    # Another seed or target lr of the same configuration reuses the stage; the file is not rewritten.
    other_seed = dataclasses.replace(spec, init_seed=7, order_seed=7, recipe=dataclasses.replace(spec.recipe, lr=5e-4))
    assert tapt.tapt_checkpoint(other_seed, ctx).folder == first.folder and len(calls) == 1
    assert (first.folder / "encoder.safetensors").stat().st_mtime_ns == mtime
    longer = tapt.tapt_checkpoint(_spec(char_model_dir, tapt_steps=3), ctx)
    assert longer.folder != first.folder and len(calls) == 2 and longer.record["steps"] == 3


def test_classifier_gets_the_tapt_encoder(char_model_dir, tiny_glue_dir, tmp_path):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, cache_dir=str(tmp_path))
    checkpoint = tapt.tapt_checkpoint(_spec(char_model_dir, tapt_lr=1e-2), ctx)
    original = load_classifier(str(char_model_dir), 2).base_model.state_dict()
    model = load_classifier(str(char_model_dir), 2)
    checkpoint.load_into(model)
    saved = load_file(checkpoint.folder / "encoder.safetensors")
    body = model.base_model.state_dict()
    assert set(saved) == {k for k in body if not k.startswith("pooler.")}
    for key, value in saved.items():
        assert torch.equal(body[key], value), key
    changed = [k for k in saved if not torch.equal(saved[k], original[k])]
    assert "embeddings.word_embeddings.weight" in changed and "encoder.layer.0.attention.self.query.weight" in changed
    assert all(torch.equal(body[k], original[k]) for k in body if k.startswith("pooler."))  # MLM never trains it


def test_tapt_run_end_to_end(char_model_dir, tiny_glue_dir, tmp_path):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, cache_dir=str(tmp_path))
    result = train_run(_spec(char_model_dir, tapt_steps=3), ctx)
    assert result.run["status"] == "done" and result.run["notes"].startswith("tapt ")
    assert "3 MLM steps on 80 rte texts" in result.run["notes"]


def test_tapt_then_cloze_loads_the_tapt_mlm_head(char_model_dir, tiny_glue_dir, tmp_path, monkeypatch):
    task = dataclasses.replace(TASKS["rte"], name="rte_chars", verbalizers=("n", "y"))
    monkeypatch.setitem(TASKS, task.name, task)
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1, cache_dir=str(tmp_path))
    spec = _spec(char_model_dir, task="rte_chars", cloze=True)
    result = train_run(spec, ctx)
    assert result.run["status"] == "done" and "tapt " in result.run["notes"]
    tokenizer = AutoTokenizer.from_pretrained(char_model_dir)
    model, _ = load_cloze_model(str(char_model_dir), task, tokenizer)
    checkpoint = tapt.tapt_checkpoint(spec, ctx)
    checkpoint.load_into(model)
    state = model.state_dict()
    for key, value in load_file(checkpoint.folder / "head.safetensors").items():
        assert torch.equal(state[key], value), key
    assert torch.equal(state["cls.predictions.decoder.weight"], state["bert.embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("field", ["tapt_steps", "tapt_lr", "tapt_mlm_probability"])
def test_every_tapt_field_changes_the_stage_key(char_model_dir, field):
    spec = _spec(char_model_dir)
    changed = dataclasses.replace(
        spec, recipe=dataclasses.replace(spec.recipe, **{field: 2 * getattr(spec.recipe, field)})
    )
    assert tapt.tapt_spec(spec).run_id != tapt.tapt_spec(changed).run_id
