"""Cloze-style fine-tuning (PET): pattern rendering, verbaliser ids, logits = MLM scores at the mask, the head check."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertModel

from harness.experiment.config import ConfigError, Recipe, RunSpec, validate_run
from harness.experiment.tasks import TASKS
from harness.storage.records import RunContext
from harness.training.loop import Encoded
from harness.training.pipeline import train_run
from harness.training.recipes import cloze

RTE = TASKS["rte"]
# The tiny model's vocabulary is characters: a variant of RTE whose verbalisers are one token there.
RTE_CHARS = dataclasses.replace(RTE, name="rte_chars", verbalizers=("n", "y"))


@pytest.fixture
def rte_chars(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(TASKS, RTE_CHARS.name, RTE_CHARS)
    return RTE_CHARS


@pytest.fixture(scope="module")
def char_model_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def headless_model_dir(char_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved as a bare encoder (like the packaged sentence encoder): no cls.predictions.*."""
    folder = tmp_path_factory.mktemp("headless")
    shutil.copytree(char_model_dir, folder, dirs_exist_ok=True)
    (folder / "model.safetensors").unlink()
    BertModel.from_pretrained(char_model_dir).save_pretrained(folder)
    return folder


def test_rendered_rte_pattern():
    text = cloze.render_pattern(RTE, "A man sleeps.", "A man is awake.", "[MASK]")
    assert text == "A man sleeps. ? [MASK] , A man is awake."


def test_tokenizer_gives_the_rendered_string_and_keeps_the_mask(char_model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(char_model_dir)
    wrapped = cloze.ClozeTokenizer(tokenizer, RTE_CHARS)
    enc = wrapped(["the cat sat.", "a dog"], ["on a mat", "ran far"], truncation=True, max_length=128)
    for i, (a, b) in enumerate([("the cat sat.", "on a mat"), ("a dog", "ran far")]):
        expected = tokenizer(cloze.render_pattern(RTE_CHARS, a, b, tokenizer.mask_token))
        assert enc["input_ids"][i] == expected["input_ids"]
        assert enc["token_type_ids"][i] == [0] * len(expected["input_ids"])
    # Over-long: the longer text is cut, the mask and both ends survive.
    long = wrapped(["xx " * 30], ["yyyyy"], max_length=30)["input_ids"][0]
    assert len(long) == 30 and long.count(tokenizer.mask_token_id) == 1
    assert long[0] == tokenizer.cls_token_id and long[-1] == tokenizer.sep_token_id
    assert long[-6:-1] == tokenizer("yyyyy", add_special_tokens=False)["input_ids"]  # text_b whole, text_a cut


def test_verbaliser_must_be_one_token(char_model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(char_model_dir)
    with pytest.raises(ConfigError, match=r"task 'rte': verbaliser 'no' is 2 token\(s\).*single-token verbalizers"):
        cloze.verbalizer_ids(RTE, tokenizer, "tiny")
    assert cloze.verbalizer_ids(RTE_CHARS, tokenizer) == tokenizer.convert_tokens_to_ids(["n", "y"])


def test_registered_verbalisers_are_single_tokens_of_the_packaged_vocab(packaged_model: str):
    from harness.training.models import load_tokenizer

    tokenizer = load_tokenizer(packaged_model)
    for task in TASKS.values():
        if task.cloze_pattern:
            ids = cloze.verbalizer_ids(task, tokenizer, packaged_model)
            assert tokenizer.convert_ids_to_tokens(ids) == list(task.verbalizers), task.name


def _batch(model_dir: Path, task, n: int = 4) -> dict[str, torch.Tensor]:
    from harness.experiment.data import Example

    tokenizer = cloze.ClozeTokenizer(AutoTokenizer.from_pretrained(model_dir), task)
    examples = [Example("the cat sat" * (i + 1), "a dog ran", i % 2) for i in range(n)]
    return Encoded(tokenizer, examples, 64, regression=False).batch(list(range(n)))


def test_logits_are_the_mlm_logits_of_the_verbalisers_at_the_mask(char_model_dir: Path, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(char_model_dir)
    model, note = cloze.load_cloze_model(str(char_model_dir), RTE_CHARS, tokenizer)
    reference = AutoModelForMaskedLM.from_pretrained(char_model_dir)
    model.eval(), reference.eval()
    batch = _batch(char_model_dir, RTE_CHARS)
    assert batch["attention_mask"].min() == 0  # padded rows are part of the check
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        out = model(**batch)
        vocab = reference(**inputs).logits  # [batch, seq, vocab]
    position = (batch["input_ids"] == tokenizer.mask_token_id).int().argmax(1)
    ids = tokenizer.convert_tokens_to_ids(["n", "y"])
    expected = vocab[torch.arange(len(position)), position][:, ids]
    assert out.logits.shape == (4, 2)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, F.cross_entropy(expected, batch["labels"]), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(cloze, "_single_head", lambda m: None)  # the generic path: full MLM forward
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, expected, rtol=1e-5, atol=1e-5)
    assert note == ""


def test_no_new_parameters(char_model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(char_model_dir)
    model, _ = cloze.load_cloze_model(str(char_model_dir), RTE_CHARS, tokenizer, layers=2)
    reference = AutoModelForMaskedLM.from_pretrained(char_model_dir, num_hidden_layers=2)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes == {n: p.shape for n, p in reference.named_parameters()}
    assert cloze.is_cloze_model(model) and not cloze.is_cloze_model(reference)


def test_missing_mlm_head_is_flagged_loudly(char_model_dir: Path, headless_model_dir: Path, caplog):
    assert cloze.mlm_head_is_pretrained(str(char_model_dir))
    assert not cloze.mlm_head_is_pretrained(str(headless_model_dir))
    with caplog.at_level(logging.WARNING, logger="harness.training.recipes.cloze"):
        assert cloze.cloze_head_note(str(char_model_dir)) == ""
        assert not caplog.records
        note = cloze.cloze_head_note(str(headless_model_dir))
    assert note.startswith("WARNING: cloze head is randomly initialised") and "cls.predictions." in note
    assert str(headless_model_dir) in note and caplog.records[0].levelno == logging.WARNING


def _spec(model_dir: Path, task: str = "rte_chars", **recipe_fields) -> RunSpec:
    recipe = Recipe(name="cloze", lr=1e-3, max_steps=6, batch_size=8, cloze=True, dropout=0.0, **recipe_fields)
    return RunSpec(task=task, model=str(model_dir), recipe=recipe, init_seed=1, order_seed=2, sample_size=32,
                   max_seq_length=48, num_evals=2, eval_size=20)  # fmt: skip


def test_cloze_run_end_to_end(char_model_dir: Path, headless_model_dir: Path, tiny_glue_dir: Path, rte_chars):
    ctx = RunContext(data_dir=str(tiny_glue_dir), threads=1)
    result = train_run(_spec(char_model_dir), ctx)
    assert result.run["status"] == "done" and result.run["steps_done"] == 6
    assert 0 <= result.run["score"] <= 100 and "WARNING" not in result.run["notes"]
    headless = train_run(_spec(headless_model_dir), ctx)
    assert headless.run["status"] == "done"
    assert headless.run["notes"].startswith("WARNING: cloze head is randomly initialised")


def test_cloze_needs_a_classification_task_with_a_pattern():
    with pytest.raises(ConfigError, match=r"recipe 'cloze' field 'cloze' = true but task 'stsb' is a regression"):
        validate_run(_spec(Path("unused"), task="stsb"), "exp.toml")
    validate_run(_spec(Path("unused"), task="rte"), "exp.toml")
