"""prepare_model: dropout override, order of the pieces, loaded (from_pretrained) weights, errors."""

import pytest
import torch
from conftest import tiny_bert
from torch import nn
from transformers import (
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from harness.experiment.config import ConfigError, Recipe
from harness.training.recipes import prepare_model, run_notes


def dropouts(model) -> set[float]:
    return {m.p for m in model.modules() if isinstance(m, nn.Dropout)}


def test_standard_recipe_changes_nothing():
    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = prepare_model(model, Recipe(), init_seed=0)
    assert dropouts(model) == {0.1}
    assert all(torch.equal(p, before[n]) and p.requires_grad for n, p in model.named_parameters())


def test_dropout_override():
    model = prepare_model(tiny_bert(), Recipe(dropout=0.2), init_seed=0)
    assert dropouts(model) == {0.2}
    assert model.config.hidden_dropout_prob == 0.2 and model.config.attention_probs_dropout_prob == 0.2


def test_reinit_works_on_weights_loaded_with_from_pretrained(tmp_path):
    """transformers v5 flags loaded weights as initialised; re-init must still change them."""
    tiny_bert().save_pretrained(tmp_path)
    model = BertForSequenceClassification.from_pretrained(tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prepare_model(model, Recipe(reinit_layers=1), init_seed=0)
    dense = "bert.encoder.layer.3.attention.self.query.weight"
    assert not torch.equal(model.get_parameter(dense), before[dense])
    assert torch.equal(model.get_parameter("bert.encoder.layer.2.output.dense.weight"),
                       before["bert.encoder.layer.2.output.dense.weight"])  # fmt: skip


def test_reinit_on_an_architecture_without_encoder_layers_is_config_error():
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64)
    model = DistilBertForSequenceClassification(config)
    with pytest.raises(ConfigError, match=r"encoder\.layer"):
        prepare_model(model, Recipe(reinit_layers=1), init_seed=0)


def test_run_notes_names_the_pieces():
    model = prepare_model(tiny_bert(), Recipe(reinit_layers=2, mixout=0.1), init_seed=0)
    notes = run_notes(model, Recipe(reinit_layers=2, mixout=0.1))
    assert "reinit top 2" in notes and "mixout p=0.1" in notes and "trainable" in notes
