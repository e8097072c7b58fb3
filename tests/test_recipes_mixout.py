"""Mixout: expectation equals the current weight in training, plain Linear at eval, every Linear replaced;
masks from the counter hash (harness/training/hashdropout.py), new at every step."""

import pytest
import torch
from conftest import tiny_bert
from torch import nn

from harness.experiment.config import Recipe
from harness.training import hashdropout
from harness.training.recipes import MixoutLinear, prepare_model


def drifted_layer(p: float) -> tuple[MixoutLinear, torch.Tensor]:
    torch.manual_seed(0)
    layer = MixoutLinear.from_linear(nn.Linear(6, 4), p)
    w0 = layer.target.clone()
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))  # fine-tuning moved W away from W0
        layer.bias.zero_()
    hashdropout.install(layer, order_seed=1)
    return layer, w0


def effective_weight(layer: nn.Linear) -> torch.Tensor:
    """The weight the forward used: F.linear(I, W_eff, 0) = W_eff^T."""
    return layer(torch.eye(layer.in_features)).T


def test_mixout_expectation_is_the_current_weight():
    p = 0.3
    layer, w0 = drifted_layer(p)
    w = layer.weight.detach()
    layer.train()
    masks = hashdropout.draws_of(layer)
    draws = []
    for step in range(1, 4001):  # one training step each: the hash draws a new mask per step
        masks.at(step)
        draws.append(effective_weight(layer).detach())
    draws = torch.stack(draws)
    mixed = w0 + (w - w0) / (1 - p)  # kept element, rescaled; else W0
    is_kept = torch.isclose(draws, mixed.expand_as(draws), atol=1e-6)
    is_target = torch.isclose(draws, w0.expand_as(draws), atol=1e-6)
    assert torch.all(is_kept | is_target)
    assert is_target.double().mean().item() == pytest.approx(p, abs=0.01)  # each element swapped w.p. p
    # E[W_mix] = W: the sample mean is within 5 standard errors
    se = (w - w0).abs() * (p / (1 - p)) ** 0.5 / len(draws) ** 0.5
    assert torch.all((draws.mean(0) - w).abs() <= 5 * se + 1e-6)


def test_mixout_off_at_eval_and_at_p_zero():
    layer, _ = drifted_layer(0.5)
    x = torch.randn(3, 6)
    layer.eval()
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    layer.train()
    assert not torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    layer.p = 0.0
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_gradient_is_mask_over_one_minus_p():
    p = 0.5
    layer, _ = drifted_layer(p)
    torch.manual_seed(3)
    w_eff = effective_weight(layer)
    w_eff.sum().backward()
    grad = layer.weight.grad
    assert set(torch.unique(grad).tolist()) <= {0.0, 1 / (1 - p)}


def test_prepare_model_replaces_every_linear_and_respects_train_eval():
    plain = tiny_bert()
    model = tiny_bert()
    init_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = prepare_model(model, Recipe(mixout=0.7), init_seed=0)
    hashdropout.install(model, order_seed=0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * 6 + 2  # q, k, v, attn-out, intermediate, output per block + pooler + classifier
    assert all(isinstance(m, MixoutLinear) and m.p == 0.7 for m in linears)
    assert isinstance(model.classifier, MixoutLinear)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert model.config.hidden_dropout_prob == 0.0
    assert set(model.state_dict()) == set(plain.state_dict())  # checkpoints keep the plain keys
    for name, param in model.named_parameters():
        assert torch.equal(param, init_weights[name])
    assert torch.equal(model.classifier.target, init_weights["classifier.weight"])
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-6)
        with torch.no_grad():  # move the weights, then training forwards are random
            for m in linears:
                m.weight.add_(0.1)
        model.train()
        assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
        model.eval()
        assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_explicit_dropout_wins_over_mixout_default():
    model = prepare_model(tiny_bert(), Recipe(mixout=0.1, dropout=0.05), init_seed=0)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.05}


def test_mixout_targets_are_the_reinitialised_weights():
    model = prepare_model(tiny_bert(), Recipe(mixout=0.1, reinit_layers=1), init_seed=0)
    top = model.bert.encoder.layer[3].intermediate.dense
    assert torch.equal(top.target, top.weight)
