"""LP-FT head warm-up: the trainable set in each phase and when the phase changes."""

import pytest
import torch
from conftest import tiny_bert

from harness.experiment.config import Recipe
from harness.training.recipes import build_optimizer, prepare_model, set_trainable_phase


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


HEAD = {"classifier.weight", "classifier.bias"}


def test_phases_and_change_points():
    recipe = Recipe(head_warmup_steps=3, head_warmup_lr=1e-3, lr=2e-5)
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    everything = {n for n, _ in model.named_parameters()}
    changed = [set_trainable_phase(model, recipe, step) for step in range(6)]
    assert changed == [True, False, False, True, False, False]  # into the head phase, then into the full one
    assert trainable(model) == everything

    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    assert set_trainable_phase(model, recipe, 0) is True
    assert trainable(model) == HEAD
    opt = build_optimizer(model, recipe)
    assert [p for g in opt.param_groups for p in g["params"]] == [model.classifier.weight, model.classifier.bias]
    assert {g["lr"] for g in opt.param_groups} == {1e-3}
    assert set_trainable_phase(model, recipe, 2) is False
    assert set_trainable_phase(model, recipe, 3) is True
    assert trainable(model) == everything
    assert {g["lr"] for g in build_optimizer(model, recipe).param_groups} == {2e-5}


def test_no_warmup_never_changes_anything():
    recipe = Recipe()
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    before = trainable(model)
    assert not any(set_trainable_phase(model, recipe, s) for s in range(3))
    assert trainable(model) == before


def test_full_phase_restores_what_prepare_model_left_trainable():
    recipe = Recipe(head_warmup_steps=1, bitfit=True)
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    bitfit_set = trainable(model)
    set_trainable_phase(model, recipe, 0)
    assert trainable(model) == HEAD
    set_trainable_phase(model, recipe, 1)
    assert trainable(model) == bitfit_set


def test_head_phase_trains_only_the_head():
    recipe = Recipe(head_warmup_steps=5, head_warmup_lr=0.1)
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    set_trainable_phase(model, recipe, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, recipe)
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == HEAD


@pytest.mark.parametrize("steps", [0, 2])
def test_lp_ft_with_lora(steps):
    pytest.importorskip("peft", reason="peft not installed (pip install peft torch==2.13.0)")
    recipe = Recipe(head_warmup_steps=steps, lora_r=2)
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    full = trainable(model)
    set_trainable_phase(model, recipe, 0)
    assert trainable(model) == (HEAD if steps else full)
    set_trainable_phase(model, recipe, steps)
    assert trainable(model) == full
