"""The three recipe hooks the loop calls (model, optimiser + schedule, loss); the loop reads no recipe field."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from conftest import tiny_bert

from harness.experiment.config import ConfigError, Recipe, RunSpec
from harness.training.recipes import Updates, build_model, prepare_model, regularization_loss, training_loss

TRAIN_PY = Path(__file__).resolve().parents[1] / "harness" / "training" / "loop.py"


def _function(path: Path, name: str) -> ast.FunctionDef:
    return next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_the_loop_reads_no_recipe_specific_field():
    fine_tune = _function(TRAIN_PY, "fine_tune")
    read = {
        node.attr
        for node in ast.walk(fine_tune)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "recipe"
    }
    # batch size and numeric precision are how every recipe runs (no branch on a recipe); the name only labels errors
    assert read <= {"batch_size", "precision", "name"}, (
        f"fine_tune reads recipe fields {sorted(read)}; move them behind a hook"
    )
    assert fine_tune.end_lineno - fine_tune.lineno + 1 <= 120


def test_updates_rejects_a_head_warmup_as_long_as_the_run():
    model = prepare_model(tiny_bert(), Recipe(head_warmup_steps=5), init_seed=0)
    with pytest.raises(ConfigError, match="head_warmup_steps = 5 but the run has only 5 updates"):
        Updates(model, Recipe(name="lpft", head_warmup_steps=5), total_steps=5)


def test_updates_lp_ft_one_optimiser_and_linear_schedule_per_phase():
    recipe = Recipe(head_warmup_steps=2, warmup_ratio=0.0, lr=1e-3)
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    updates = Updates(model, recipe, total_steps=5)
    first = updates.optimizer
    updates.begin(0)  # into the head phase: a new optimiser over the head, a 2-step schedule
    head_opt = updates.optimizer
    assert head_opt is not first
    assert [updates.scheduler.lr_lambdas[0](k) for k in range(3)] == [1.0, 0.5, 0.0]
    updates.begin(1)
    assert updates.optimizer is head_opt
    updates.begin(2)  # into the full phase: the 3 updates left
    assert updates.optimizer is not head_opt
    assert [updates.scheduler.lr_lambdas[0](k) for k in range(4)] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])


def test_updates_apply_clips_steps_and_clears_gradients():
    recipe = Recipe(grad_clip=1e-3, warmup_ratio=0.0, lr=1e-2)
    model = prepare_model(tiny_bert(), recipe, init_seed=0)
    updates = Updates(model, recipe, total_steps=3)
    before = model.classifier.weight.detach().clone()
    model(input_ids=torch.tensor([[2, 5, 6, 3]]), labels=torch.tensor([1])).loss.backward()
    updates.apply()
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(model.classifier.weight, before)
    assert updates.scheduler.last_epoch == 1


def test_training_loss_adds_the_r3f_term_only_when_set():
    model = tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = {
        "input_ids": torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]),
        "attention_mask": torch.tensor([[1] * 4, [1, 1, 1, 0]]),
    }
    batch["labels"] = torch.tensor([0, 1])
    plain = training_loss(model, batch, Recipe())
    assert torch.equal(plain, model(**batch).loss)
    recipe = Recipe(r3f_lambda=2.0, r3f_eps=0.5)
    torch.manual_seed(3)
    with_r3f = training_loss(model, batch, recipe)
    torch.manual_seed(3)
    outputs = model(**batch)
    assert torch.equal(with_r3f, outputs.loss + regularization_loss(model, batch, outputs.logits, recipe))
    assert with_r3f > plain


def test_build_model_loads_the_stages_then_draws_the_head_from_init_seed(tiny_model_dir: Path):
    spec = RunSpec(task="rte", model=str(tiny_model_dir), recipe=Recipe(), init_seed=4, order_seed=0)
    seen = []

    def load_stages(model: torch.nn.Module) -> None:
        seen.append(model)
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.fill_(0.5)
            model.classifier.weight.fill_(7.0)

    torch.manual_seed(0)
    built = build_model(spec, object(), load_stages)
    assert seen == [built.model] and built.notes == ()
    assert torch.all(built.model.bert.embeddings.word_embeddings.weight == 0.5)  # the stage's encoder stays
    again = build_model(spec, object(), lambda model: None)
    assert torch.equal(built.model.classifier.weight, again.model.classifier.weight)  # head from init_seed alone
    assert not torch.all(built.model.classifier.weight == 7.0)
