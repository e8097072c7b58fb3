"""Re-initialisation of the pooler and top L blocks: what changes, its distribution, what stays identical."""

import pytest
import torch
from conftest import tiny_bert
from scipy import stats
from transformers import BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

from harness.experiment.config import ConfigError, Recipe
from harness.training.recipes import init_head, prepare_model

STD = 0.02


def pretrained_like(seed: int = 0) -> BertForSequenceClassification:
    """A tiny BERT whose weights do not look like a fresh init: scaled weights, non-trivial biases and LayerNorms."""
    model = tiny_bert(seed, initializer_range=STD)
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.copy_(0.5 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.mul_(5.0)
    return model


def reinit_names(n_layers: int, total: int = 4) -> tuple[str, ...]:
    top = tuple(f"bert.encoder.layer.{i}." for i in range(total - n_layers, total))
    return (*top, "bert.pooler.")


def test_reinit_changes_pooler_and_top_layers_and_nothing_else():
    model = pretrained_like()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prepare_model(model, Recipe(reinit_layers=2), init_seed=7)
    prefixes = reinit_names(2)
    reset_weights = []
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            assert not torch.equal(p, before[name]), f"{name} was not re-initialised"
            if "LayerNorm.weight" in name:
                assert torch.equal(p, torch.ones_like(p)), name
            elif name.endswith("bias"):
                assert torch.equal(p, torch.zeros_like(p)), name
            else:
                reset_weights.append(p.detach().flatten())
        else:
            assert torch.equal(p, before[name]), f"{name} changed but should be bit-identical"
    values = torch.cat(reset_weights).double().numpy()
    assert len(values) > 5000
    assert abs(values.mean()) < 3 * STD / len(values) ** 0.5 + 1e-4
    assert values.std() == pytest.approx(STD, rel=0.05)
    assert stats.kstest(values, stats.norm(0, STD).cdf).pvalue > 1e-3


def test_reinit_is_a_function_of_init_seed():
    a, b, c = pretrained_like(), pretrained_like(), pretrained_like()
    for model, seed in ((a, 3), (b, 3), (c, 4)):
        prepare_model(model, Recipe(reinit_layers=1), init_seed=seed)
    wa = a.bert.encoder.layer[3].output.dense.weight
    assert torch.equal(wa, b.bert.encoder.layer[3].output.dense.weight)
    assert not torch.equal(wa, c.bert.encoder.layer[3].output.dense.weight)


def test_reinit_draws_are_not_the_head_init_stream():
    model = pretrained_like()
    init_head(model, 5)
    prepare_model(model, Recipe(reinit_pooler=True), init_seed=5)
    head = model.classifier.weight.detach().flatten()
    pool = model.bert.pooler.dense.weight.detach().flatten()[: head.numel()]
    assert not torch.allclose(head, pool)


def test_reinit_pooler_alone():
    model = pretrained_like()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prepare_model(model, Recipe(reinit_pooler=True), init_seed=1)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}


def test_reinit_all_layers_allowed_more_is_config_error():
    prepare_model(pretrained_like(), Recipe(reinit_layers=4), init_seed=1)
    with pytest.raises(ConfigError, match="reinit_layers"):
        prepare_model(pretrained_like(), Recipe(reinit_layers=5), init_seed=1)


def test_reinit_pooler_without_pooler_is_config_error():
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64,
    )  # fmt: skip
    model = RobertaForSequenceClassification(config)  # built without a pooler
    with pytest.raises(ConfigError, match="pooler"):
        prepare_model(model, Recipe(reinit_pooler=True), init_seed=1)
    prepare_model(model, Recipe(reinit_layers=1), init_seed=1)  # blocks alone are fine


def test_init_head_from_seed():
    a, b = pretrained_like(0), pretrained_like(1)
    init_head(a, 9)
    init_head(b, 9)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert torch.equal(a.classifier.bias, torch.zeros_like(a.classifier.bias))
