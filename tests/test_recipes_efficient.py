"""BitFit and LoRA: the set of trainable parameters."""

import importlib.util

import pytest
import torch
from conftest import tiny_bert
from transformers import BertForSequenceClassification

from harness.experiment.config import Recipe
from harness.training.recipes import build_optimizer, prepare_model

HAS_PEFT = importlib.util.find_spec("peft") is not None
needs_peft = pytest.mark.skipif(not HAS_PEFT, reason="peft not installed (pip install peft torch==2.13.0)")


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_bitfit_trains_only_biases_and_head():
    model = prepare_model(tiny_bert(), Recipe(bitfit=True), init_seed=0)
    names = {n for n, _ in model.named_parameters()}
    expected = {n for n in names if n.endswith("bias")} | {"classifier.weight"}
    assert trainable(model) == expected
    assert "bert.encoder.layer.0.attention.self.query.bias" in expected
    assert "bert.encoder.layer.0.attention.output.LayerNorm.bias" in expected
    opt = build_optimizer(model, Recipe(bitfit=True))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(expected)


@needs_peft
def test_lora_trains_adapters_and_head_only():
    model = prepare_model(tiny_bert(), Recipe(lora_r=4, lora_alpha=8.0), init_seed=0)
    expected = {"classifier.weight", "classifier.bias"}
    for i in range(4):
        for proj in ("query", "value"):  # peft's default LoRA targets for BERT
            for ab in ("A", "B"):
                expected.add(f"bert.encoder.layer.{i}.attention.self.{proj}.lora_{ab}.default.weight")
    assert trainable(model) == expected
    assert model.bert.encoder.layer[0].attention.self.query.lora_A["default"].weight.shape == (4, 32)
    assert isinstance(model, BertForSequenceClassification)  # modified in place, not wrapped


@needs_peft
def test_lora_starts_at_the_pretrained_function_and_is_seeded():
    plain = tiny_bert().eval()
    a = prepare_model(tiny_bert(), Recipe(lora_r=2, lora_dropout=0.0), init_seed=3).eval()
    b = prepare_model(tiny_bert(), Recipe(lora_r=2, lora_dropout=0.0), init_seed=3).eval()
    c = prepare_model(tiny_bert(), Recipe(lora_r=2, lora_dropout=0.0), init_seed=4).eval()
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a(input_ids=ids).logits, plain(input_ids=ids).logits)  # B = 0 at init
    lora_a = [m.lora_A["default"].weight for m in (x.bert.encoder.layer[0].attention.self.query for x in (a, b, c))]
    assert torch.equal(lora_a[0], lora_a[1])
    assert not torch.equal(lora_a[0], lora_a[2])


@needs_peft
def test_lora_backward_reaches_only_trainable_parameters():
    model = prepare_model(tiny_bert(), Recipe(lora_r=2), init_seed=0)
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= trainable(model)
    assert "classifier.weight" in with_grad
