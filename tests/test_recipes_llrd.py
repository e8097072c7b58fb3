"""Layer-wise learning-rate decay: the lr of every parameter group (Zhang et al.'s convention)."""

import pytest
import torch
from conftest import tiny_bert
from torch import nn

from harness.experiment.config import ConfigError, Recipe
from harness.training.recipes import build_optimizer, parameter_groups


def expected_lr(name: str, lr: float, d: float, n_layers: int = 4) -> float:
    """Classifier and pooler: lr; block i: lr * d^(N - i) (top block lr * d); embeddings: lr * d^(N + 1)."""
    if name.startswith(("classifier.", "bert.pooler.")):
        return lr
    if name.startswith("bert.embeddings."):
        return lr * d ** (n_layers + 1)
    index = int(name.split(".")[3])  # bert.encoder.layer.<i>.
    return lr * d ** (n_layers - index)


def test_llrd_lr_of_every_parameter_group():
    model = tiny_bert()
    lr, d = 1e-4, 0.9
    opt = build_optimizer(model, Recipe(lr=lr, llrd=d, weight_decay=0.01))
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in opt.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            seen.append(name)
            assert group["lr"] == pytest.approx(expected_lr(name, lr, d), rel=1e-12), (name, group["name"])
    assert sorted(seen) == sorted(names.values())  # every parameter exactly once
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["layer.3/decay"] == pytest.approx(lr * d)
    assert lrs["layer.0/decay"] == pytest.approx(lr * d**4)
    assert lrs["embeddings/decay"] == pytest.approx(lr * d**5) == min(lrs.values())
    assert lrs["top/decay"] == lr  # classifier and pooler


def test_llrd_schedule_scales_every_group_together():
    model = tiny_bert()
    opt = build_optimizer(model, Recipe(lr=1e-4, llrd=0.5))
    initial = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.25)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.25 * x for x in initial])
    assert sched is not None


def test_no_llrd_gives_base_lr_everywhere_and_skips_frozen():
    model = tiny_bert()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    groups = parameter_groups(model, Recipe(lr=2e-5), 2e-5)
    assert {g["lr"] for g in groups} == {2e-5}
    assert len(groups) == 2
    params = [p for g in groups for p in g["params"]]
    assert all(p is not model.bert.embeddings.word_embeddings.weight for p in params)


def test_llrd_needs_encoder_layers():
    class NoEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(2, 2)
            self.classifier = nn.Linear(2, 2)

        @property
        def base_model(self) -> nn.Module:
            return self.body

    with pytest.raises(ConfigError, match="llrd"):
        parameter_groups(NoEncoder(), Recipe(llrd=0.9), 1e-3)
