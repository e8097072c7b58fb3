"""Seed-vectorised training (harness/training/vectorised): a run's result does not depend on its group.

Tiny random BERT with dropout on, tiny GLUE-format data; every test runs on CPU in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_bert

from harness.experiment.spec import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training.vectorised import hashrng
from harness.training.vectorised.engine import train_group
from harness.training.vectorised.model import Arch, Layout, forward, leaf_views, stack_parameters

SEEDS = [(1, 11, 0), (2, 12, 1), (3, 13, 0), (4, 11, 2)]  # (init, order, sample): one shares an order seed


def spec_for(model_dir: Path, recipe: Recipe, init: int, order: int, sample: int = 0, **fields) -> RunSpec:
    return RunSpec(
        "sst2", str(model_dir), recipe, init, order, sample_seed=sample, sample_size=24, eval_protocol="heldout",
        max_seq_length=48, num_evals=4, engine="vectorised", **fields,
    )  # fmt: skip


def _train(specs: list[RunSpec], glue: Path, **kw):
    return train_group(specs, RunContext(data_dir=str(glue)), **kw)


def _group_vs_alone(model_dir: Path, glue: Path, recipe: Recipe) -> None:
    specs = [spec_for(model_dir, recipe, *s) for s in SEEDS]
    together = _train(specs, glue)
    for spec, grouped in zip(specs, together, strict=True):
        alone = _train([spec], glue)[0]
        assert grouped.run["status"] == alone.run["status"] == "done"
        assert [p["step"] for p in grouped.curve] == [p["step"] for p in alone.curve]
        for a, b in zip(grouped.curve, alone.curve, strict=True):
            assert a["val_metric"] == b["val_metric"] and a["test_metric"] == b["test_metric"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert grouped.run["best_step"] == alone.run["best_step"]
        assert grouped.run["score"] == alone.run["score"]
        assert grouped.predictions == alone.predictions
        assert grouped.run["loss_last"] == pytest.approx(alone.run["loss_last"], abs=1e-5)


def test_run_in_group_equals_run_alone(tiny_model_dir: Path, tiny_glue_dir: Path) -> None:
    """K = 4 runs (dropout on, LLRD, weight decay, clipping, warm-up) vs each run trained alone (K = 1)."""
    recipe = Recipe(lr=5e-4, batch_size=5, max_steps=14, warmup_ratio=0.2, weight_decay=0.01, llrd=0.9, grad_clip=0.5)
    _group_vs_alone(tiny_model_dir, tiny_glue_dir, recipe)


@pytest.mark.slow
def test_run_in_group_equals_run_alone_prior_wd_mixout_reinit_bertadam(
    tiny_model_dir: Path, tiny_glue_dir: Path
) -> None:
    """The same comparison for the other supported switches (Mixout masks come from the hash too)."""
    recipe = Recipe(lr=5e-4, batch_size=5, max_steps=10, prior_wd=0.1, mixout=0.3, reinit_layers=1,
                    bias_correction=False, select="final")  # fmt: skip
    _group_vs_alone(tiny_model_dir, tiny_glue_dir, recipe)


def test_stacked_forward_matches_hf_model_without_dropout() -> None:
    models = [tiny_bert(seed=s).eval() for s in range(3)]
    layout, arch = Layout.of(models[0]), Arch.of(models[0], max_len=64, max_batch=8)
    params = leaf_views(stack_parameters(models, layout, torch.device("cpu")), layout)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (3, 5, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[:, 1, 7:] = 0
    mask[:, 3, 4:] = 0
    ids = ids * mask
    types = torch.zeros_like(ids)
    types[:, :, 6:] = 1
    out = forward(params, arch, ids, mask, types)
    for k, model in enumerate(models):
        ref = model(input_ids=ids[k], attention_mask=mask[k], token_type_ids=types[k]).logits
        torch.testing.assert_close(out[k], ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[0], out[1])  # the runs really have their own weights


def test_hash_draws_are_uniform_independent_of_the_group_and_of_truncation() -> None:
    seeds = torch.tensor([7, 8, 9, 7])
    keys = hashrng.stream_keys(seeds, step=3, site=5)
    u = hashrng.uniform(keys, (16, 32, 24))
    assert torch.equal(u[0], u[3]) and not torch.equal(u[0], u[1])  # a run's stream is its seed's, wherever it sits
    alone = hashrng.uniform(hashrng.stream_keys(seeds[1:2], step=3, site=5), (16, 32, 24))
    assert torch.equal(alone[0], u[1])
    flat = u[:3].flatten().numpy()
    assert abs(flat.mean() - 0.5) < 0.005 and abs(flat.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(u[0].flatten(), u[1].flatten())[0, 1]) < 0.01
    other_step = hashrng.uniform(hashrng.stream_keys(seeds, step=4, site=5), (16, 32, 24))
    assert abs(np.corrcoef(u[0].flatten(), other_step[0].flatten())[0, 1]) < 0.01
    full = hashrng.index_hash((16, 32, 24))
    short = hashrng.keep_from_index(keys, full[:5, :10], 0.1)  # a shorter batch keeps its elements' draws
    assert torch.equal(short, hashrng.keep_from_index(keys, full, 0.1)[:, :5, :10])
    keep = hashrng.keep_from_index(keys, full, 0.3).float().mean().item()
    assert abs(keep - 0.7) < 0.01


@pytest.mark.parametrize("bias_correction", [True, False])
def test_stacked_adamw_equals_adamw_and_clipping_applied_to_each_run(bias_correction: bool) -> None:
    from harness.training.recipes.optim import AdamW
    from harness.training.vectorised.optim import Hyper, StackedAdamW

    k, p = 3, 10
    g = torch.Generator().manual_seed(1)
    w = torch.randn(k, p, generator=g, dtype=torch.float64)
    lr_scale = torch.tensor([1.0] * 4 + [0.5] * 6, dtype=torch.float64)  # two LLRD levels
    wd = torch.tensor([0.1] * 4 + [0.0] * 6, dtype=torch.float64)  # the first group decays, the second not
    flat = w.clone()
    opt = StackedAdamW(flat, Hyper((0.9, 0.98), 1e-6, bias_correction, 1.0), lr_scale, wd)
    refs = []
    for run in range(k):
        a, b = torch.nn.Parameter(w[run, :4].clone()), torch.nn.Parameter(w[run, 4:].clone())
        groups = [{"params": [a], "lr": 0.1, "weight_decay": 0.1}, {"params": [b], "lr": 0.05, "weight_decay": 0.0}]
        refs.append((a, b, AdamW(groups, lr=0.1, betas=(0.9, 0.98), eps=1e-6, bias_correction=bias_correction)))
    for step in range(4):
        grads = torch.randn(k, p, generator=g, dtype=torch.float64) * (3.0 if step % 2 else 0.1)  # some clipped
        multiplier = [0.5, 1.0, 0.8, 0.2][step]
        norms = opt.step(grads.clone(), torch.full((k,), 0.1 * multiplier, dtype=torch.float64),
                         torch.ones(k, dtype=torch.bool))  # fmt: skip
        for run, (a, b, ref) in enumerate(refs):
            a.grad, b.grad = grads[run, :4].clone(), grads[run, 4:].clone()
            norm = torch.nn.utils.clip_grad_norm_([a, b], 1.0)
            assert norms[run].item() == pytest.approx(norm.item(), rel=1e-12)
            for group, base in zip(ref.param_groups, (0.1, 0.05), strict=True):
                group["lr"] = base * multiplier
            ref.step()
            torch.testing.assert_close(flat[run], torch.cat([a.detach(), b.detach()]), rtol=1e-12, atol=1e-12)
            state = ref.state[a]
            torch.testing.assert_close(opt.exp_avg_sq[run, :4], state["exp_avg_sq"], rtol=1e-12, atol=1e-15)


def test_stacked_adamw_prior_wd_and_a_frozen_run() -> None:
    from harness.training.recipes.optim import AdamW
    from harness.training.vectorised.optim import Hyper, StackedAdamW

    g = torch.Generator().manual_seed(2)
    w = torch.randn(2, 5, generator=g, dtype=torch.float64)
    flat = w.clone()
    ones = torch.ones(5, dtype=torch.float64)
    opt = StackedAdamW(flat, Hyper((0.9, 0.999), 1e-8, True, 0.0), ones, None, ones * 0.5, w.clone())
    param = torch.nn.Parameter(w[0].clone())
    ref = AdamW([param], lr=0.01, prior_wd=0.5)
    for step in range(3):
        grads = torch.randn(2, 5, generator=g, dtype=torch.float64)
        if step == 1:
            grads[1] = float("nan")  # run 1 diverges: frozen from here on
        active = torch.tensor([True, step == 0])
        opt.step(grads.clone(), torch.full((2,), 0.01, dtype=torch.float64), active)
        param.grad = grads[0].clone()
        ref.step()
        torch.testing.assert_close(flat[0], param.detach(), rtol=1e-12, atol=1e-12)
    after_first = flat[1].clone()
    assert torch.isfinite(after_first).all() and not torch.equal(after_first, w[1])
    opt.step(torch.randn(2, 5, dtype=torch.float64), torch.full((2,), 0.01, dtype=torch.float64),
             torch.tensor([True, False]))  # fmt: skip
    assert torch.equal(flat[1], after_first)


def test_nan_run_is_diverged_and_frozen_while_the_others_go_on(
    tiny_model_dir: Path, tiny_glue_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.training.vectorised import engine

    recipe = Recipe(lr=5e-4, batch_size=5, max_steps=8)
    specs = [spec_for(tiny_model_dir, recipe, *s) for s in SEEDS[:3]]
    clean = _train(specs, tiny_glue_dir)
    real_loss, calls = engine._per_run_loss, {"n": 0}

    def poisoned(logits, labels, regression):
        losses = real_loss(logits, labels, regression)
        calls["n"] += 1
        if calls["n"] >= 4:  # run 1's loss is NaN from step 4 on
            losses = losses.clone()
            losses[1] = float("nan")
        return losses

    monkeypatch.setattr(engine, "_per_run_loss", poisoned)
    results = _train(specs, tiny_glue_dir)
    bad = results[1].run
    assert bad["status"] == "diverged" and math.isnan(bad["score"]) and bad["steps_done"] == 3
    assert math.isnan(bad["loss_last"]) and all(p["step"] < 4 for p in results[1].curve)
    assert results[1].predictions is None
    for i in (0, 2):
        assert results[i].run["status"] == "done"
        assert [p["val_metric"] for p in results[i].curve] == [p["val_metric"] for p in clean[i].curve]
        assert results[i].run["loss_last"] == pytest.approx(clean[i].run["loss_last"], abs=1e-5)


def test_stopped_run_keeps_its_curve_so_far(tiny_model_dir: Path, tiny_glue_dir: Path) -> None:
    recipe = Recipe(lr=5e-4, batch_size=5, max_steps=8)
    specs = [spec_for(tiny_model_dir, recipe, *s) for s in SEEDS[:2]]
    results = _train(specs, tiny_glue_dir, on_evals=lambda points: [p.run_id != specs[0].run_id for p in points])
    assert results[0].run["status"] == "stopped" and len(results[0].curve) == 1
    assert results[1].run["status"] == "done" and len(results[1].curve) == 4
    assert results[0].run["steps_done"] == results[0].curve[0]["step"]


def test_engine_is_part_of_the_run_id_and_chosen_from_seeds_per_worker() -> None:
    from harness.experiment.config import parse_experiment

    base = {
        "name": "x",
        "model": "m",
        "tasks": ["sst2"],
        "seeds": 3,
        "recipes": {"std": {}, "r3f": {"r3f_lambda": 1.0}},
    }
    loop = parse_experiment(base)
    vec = parse_experiment({**base, "schedule": {"seeds_per_worker": 2}})
    by_recipe = {(s.recipe.name, s.init_seed): s for s in vec.runs}
    assert {s.engine for s in loop.runs} == {"loop"}
    assert by_recipe[("std", 1)].engine == "vectorised" and by_recipe[("r3f", 1)].engine == "loop"
    old = {s.run_id for s in loop.runs}
    assert by_recipe[("std", 1)].run_id not in old and by_recipe[("r3f", 1)].run_id in old
    assert dataclasses.replace(by_recipe[("std", 1)], engine="loop").run_id in old
    with pytest.raises(Exception, match="seeds_per_worker"):
        parse_experiment({**base, "schedule": {"seeds_per_worker": 0}})


def test_group_models_are_built_exactly_as_the_loop_builds_them(tiny_model_dir: Path) -> None:
    """The group copies one loaded template when only the head is missing: same weights as loading per run."""
    from harness.training import recipes
    from harness.training.loop import seed_everything
    from harness.training.models import init_head, load_classifier
    from harness.training.vectorised.engine import _Group

    recipe = Recipe(reinit_layers=1, mixout=0.2)
    specs = [spec_for(tiny_model_dir, recipe, *s) for s in SEEDS[:3]]
    group = _Group(specs, RunContext(), None, None)
    built = group.build_models()
    assert group.head_only_missing
    for spec, model in zip(specs, built, strict=True):
        seed_everything(spec.init_seed)
        ref = load_classifier(spec.model, 2)
        init_head(ref, spec.init_seed)
        ref = recipes.prepare_model(ref, recipe, init_seed=spec.init_seed)
        ours, theirs = model.state_dict(), ref.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not torch.equal(built[0].classifier.weight, built[1].classifier.weight)


def test_fallback_note_names_why_a_run_trained_alone() -> None:
    from harness.schedule.groups import fallback_note

    spec = RunSpec("sst2", "m", Recipe(lora_r=4), 1, 1)
    assert "lora_r" in fallback_note(spec, 4, "trainable 1/2 params")
    assert fallback_note(spec, 4, "x").startswith("x; seeds_per_worker = 4")
    assert fallback_note(spec, 1, "x") == "x"
    assert fallback_note(RunSpec("sst2", "m", Recipe(), 1, 1), 4, "x") == "x"
