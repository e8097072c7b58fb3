"""Model resolution: local folders, the packaged MiniLM (checksum), hub ids; seeded heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.training import models


def test_local_directory_resolves_and_loads(tiny_model_dir: Path):
    assert models.resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    model = models.load_classifier(str(tiny_model_dir), num_labels=3, layers=2)
    assert model.config.num_hidden_layers == 2 and model.classifier.out_features == 3
    regression = models.load_classifier(str(tiny_model_dir), num_labels=1)
    assert regression.config.problem_type == "regression"


def test_errors_name_the_model_and_fix(tmp_path: Path, tiny_model_dir: Path):
    with pytest.raises(models.ModelError, match=r"has no config\.json"):
        models.resolve_model(str(tmp_path))
    with pytest.raises(models.ModelError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(models.ModelError, match=r"model_layers = 9 but .* has only 4 layers"):
        models.load_classifier(str(tiny_model_dir), num_labels=2, layers=9)


def test_hub_ids_pass_through():
    assert models.resolve_model("bert-large-uncased") == "bert-large-uncased"


def test_head_init_depends_only_on_init_seed(tiny_model_dir: Path):
    def head(seed: int) -> torch.Tensor:
        torch.manual_seed(seed * 100)  # the global RNG must not matter
        model = models.load_classifier(str(tiny_model_dir), num_labels=2)
        models.init_head(model, seed)
        assert torch.count_nonzero(model.classifier.bias) == 0
        return model.classifier.weight.detach().clone()

    assert torch.equal(head(1), head(1))
    assert not torch.equal(head(1), head(2))
    std = torch.cat([head(s).flatten() for s in range(5)]).std().item()
    assert std == pytest.approx(0.02, rel=0.2)  # normal(0, initializer_range)


@pytest.mark.real
def test_packaged_model_resolves_with_checksum(packaged_model: str):
    path = Path(models.resolve_model(packaged_model))
    assert (path / "model.safetensors").is_file()
    assert models.resolve_model(models.PACKAGED_ID) == str(path)
    model = models.load_classifier(packaged_model, num_labels=2, layers=2)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 2
    # Only the new head differs from the checkpoint: the pooler is pre-trained.
    assert model.bert.pooler is not None


def test_tiny_tokenizer_fixture_knows_its_vocabulary(tiny_model_dir: Path):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    ids = tokenizer("the cat")["input_ids"]
    assert tokenizer.unk_token_id not in ids and len(ids) == 8  # [CLS] t ##h ##e c ##a ##t [SEP]


def test_the_parser_knows_each_models_family_without_torch(packaged_model: str, tiny_model_dir: Path, tmp_path: Path):
    """harness.experiment.engines.model_type: a folder's config.json, the packaged MiniLM's (a BERT), else None."""
    import json

    from harness.experiment.engines import PACKAGED_MODEL_TYPE, model_type

    packaged = models.packaged_model_dir()
    assert packaged is not None
    assert json.loads((packaged / "config.json").read_text())["model_type"] == PACKAGED_MODEL_TYPE
    assert model_type(packaged_model) == model_type("all-MiniLM-L6-v2") == "bert"
    assert model_type(str(tiny_model_dir)) == "bert"
    assert model_type("some-org/some-model") is None and model_type(str(tmp_path)) is None
