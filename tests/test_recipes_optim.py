"""AdamW / BERTAdam against the closed-form update and torch.optim.AdamW; prior weight decay."""

import math

import pytest
import torch
from conftest import tiny_bert

from harness.experiment.config import Recipe
from harness.training.recipes import AdamW, build_optimizer

GRADS = [[0.5, -1.0, 2.0], [0.1, 0.3, -0.7], [-0.4, 0.05, 1.5]]


def closed_form(w0, grads, lr, b1, b2, eps, wd, bias_correction):
    """Adam with decoupled weight decay, element by element, in plain floats."""
    out = []
    for i, w in enumerate(w0):
        m = v = 0.0
        for t, g_all in enumerate(grads, start=1):
            g = g_all[i]
            w = w - lr * wd * w
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            if bias_correction:
                w = w - lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
            else:
                w = w - lr * m / (math.sqrt(v) + eps)
        out.append(w)
    return out


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_three_steps_match_closed_form(bias_correction, wd):
    w0 = [1.0, -2.0, 0.25]
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, bias_correction=bias_correction)
    for g in GRADS:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    expected = closed_form(w0, GRADS, lr, b1, b2, eps, wd, bias_correction)
    assert p.detach().tolist() == pytest.approx(expected, abs=1e-7, rel=0)


def test_bias_correction_changes_the_early_steps():
    """Sanity: the two switches differ (BERTAdam's first step is lr * (1 - b1) / sqrt(1 - b2) smaller-scaled)."""
    results = []
    for bc in (True, False):
        p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = AdamW([p], lr=0.1, bias_correction=bc)
        p.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
        results.append(1.0 - p.item())
    assert results[0] == pytest.approx(0.1, rel=1e-6)  # corrected: step ~ lr
    assert results[1] == pytest.approx(0.1 * 0.1 / math.sqrt(0.001), rel=1e-6)  # m=0.1, sqrt(v)=sqrt(0.001)


def test_matches_torch_adamw_on_a_model():
    ours_model, ref_model = tiny_bert(), tiny_bert()
    ours = AdamW(ours_model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    ref = torch.optim.AdamW(ref_model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        for p, q in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    for (name, p), q in zip(ours_model.named_parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=name)


def test_prior_wd_pulls_toward_pretrained_value_with_zero_gradient():
    lr, mu = 0.1, 0.5
    pretrained = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    p = torch.nn.Parameter(pretrained.clone())
    opt = AdamW([{"params": [p], "prior_wd": mu}], lr=lr)  # w0 captured here
    with torch.no_grad():
        p.add_(torch.tensor([0.4, 0.4, -1.0], dtype=torch.float64))  # drift away from w0
    before = p.detach().clone()
    p.grad = torch.zeros_like(p)
    opt.step()
    expected = before - lr * mu * (before - pretrained)  # toward w0, not toward 0
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-12)
    assert torch.all((p.detach() - pretrained).abs() < (before - pretrained).abs())


def test_plain_weight_decay_pulls_toward_zero_with_zero_gradient():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.95, -1.9], dtype=torch.float64), rtol=0, atol=1e-12)


def test_parameters_without_grad_are_untouched():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = AdamW([{"params": [p], "prior_wd": 0.1}], lr=0.1, weight_decay=0.5)
    opt.step()
    assert p.tolist() == [1.0, 2.0]


def test_build_optimizer_weight_decay_groups():
    model = tiny_bert()
    recipe = Recipe(lr=3e-5, weight_decay=0.01, bias_correction=False, adam_eps=1e-6)
    opt = build_optimizer(model, recipe)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in opt.param_groups:
        assert group["lr"] == 3e-5 and group["bias_correction"] is False and group["eps"] == 1e-6
        for p in group["params"]:
            name = names[id(p)]
            seen.add(name)
            no_decay = name.endswith("bias") or "LayerNorm.weight" in name
            assert group["weight_decay"] == (0.0 if no_decay else 0.01), name
    assert seen == set(names.values())


def test_build_optimizer_prior_wd_captures_pretrained_weights():
    model = tiny_bert()
    opt = build_optimizer(model, Recipe(prior_wd=0.1))
    weight = model.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(opt.state[weight]["prior"], weight.detach())
    bias = model.bert.encoder.layer[0].attention.self.query.bias
    assert "prior" not in opt.state[bias]  # biases and LayerNorm weights are not decayed


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(weight_decay=0.01),
        dict(weight_decay=0.0, bias_correction=False),
        dict(prior_wd=0.1),
    ],
)
def test_foreach_path_equals_the_per_tensor_reference(kwargs):
    """The multi-tensor update is the same formula: bit-identical weights over several steps."""
    fused_model, ref_model = tiny_bert(), tiny_bert()
    fused = AdamW(fused_model.parameters(), lr=1e-3, **kwargs)
    ref = AdamW(ref_model.parameters(), lr=1e-3, foreach=False, **kwargs)
    gen = torch.Generator().manual_seed(2)
    for step in range(4):
        for i, (p, q) in enumerate(zip(fused_model.parameters(), ref_model.parameters(), strict=True)):
            skip = step == 0 and i % 3 == 0  # some tensors join a step later: per-tensor step counts differ
            g = None if skip else torch.randn(p.shape, generator=gen)
            p.grad, q.grad = (None, None) if g is None else (g.clone(), g.clone())
        fused.step()
        ref.step()
    for (name, p), q in zip(fused_model.named_parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q), name
