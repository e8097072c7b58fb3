"""Seed-vectorised training (harness/training/vectorised): the parts of the engine, and a run's place in a group.

The oracle, each run of a group against the same run trained by the loop, is tests/test_engine_reference.py;
families other than BERT are tests/test_engine_families.py. Tiny random BERT, tiny GLUE-format data, CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_bert

from harness.experiment.spec import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training import hashdropout, hashrng
from harness.training.vectorised.engine import train_group
from harness.training.vectorised.model import StackedModel, leaf_views, stack_runs

SEEDS = [(1, 11, 0), (2, 12, 1), (3, 13, 0), (4, 11, 2)]  # (init, order, sample): one shares an order seed


def spec_for(model_dir: Path, recipe: Recipe, init: int, order: int, sample: int = 0, **fields) -> RunSpec:
    return RunSpec(
        "sst2", str(model_dir), recipe, init, order, sample_seed=sample, sample_size=24, eval_protocol="heldout",
        max_seq_length=48, num_evals=4, engine="vectorised", **fields,
    )  # fmt: skip


def _train(specs: list[RunSpec], glue: Path, **kw):
    return train_group(specs, RunContext(data_dir=str(glue), threads=1), **kw)


def _batch(k: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (k, 5, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[:, 1, 7:] = 0
    mask[:, 3, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, :, 6:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


def test_stacked_forward_is_each_models_own_forward_in_eval_and_in_training() -> None:
    """Eval: the HF model's logits. Training: the same dropout masks as that model trained alone at that step."""
    seeds = [11, 12, 11]
    models = [tiny_bert(seed=s) for s in range(3)]
    for model, seed in zip(models, seeds, strict=True):
        hashdropout.install(model, seed)
    runs = stack_runs(models, len(models), torch.device("cpu"))
    params = leaf_views(runs.flat, runs.layout)
    stacked = StackedModel(runs.template, runs.buffers, torch.device("cpu"))
    batch = _batch(3)
    shared = {key: value[0] for key, value in batch.items()}
    evaluated = stacked.logits(params, shared)
    trained = stacked.logits(params, batch, hashrng.run_key(torch.tensor(seeds), 5))
    for k, model in enumerate(models):
        model.eval()
        torch.testing.assert_close(evaluated[k], model(**shared).logits, atol=1e-5, rtol=1e-5)
        model.train()
        hashdropout.draws_of(model).at(5)
        alone = model(**{key: value[k] for key, value in batch.items()}).logits
        torch.testing.assert_close(trained[k], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(evaluated[0], evaluated[2])  # the runs really have their own weights
    assert not torch.allclose(trained[0], evaluated[0])  # and dropout was on


def test_hash_draws_are_uniform_independent_of_the_group_and_of_truncation() -> None:
    seeds = torch.tensor([7, 8, 9, 7])
    site = hashrng.site_key("bert.encoder.layer.0.output.dropout")
    keys = hashrng.mask_key(hashrng.run_key(seeds, 3), site)
    u = hashrng.uniform(keys, (16, 32, 24))
    assert torch.equal(u[0], u[3]) and not torch.equal(u[0], u[1])  # a run's stream is its seed's, wherever it sits
    alone = hashrng.uniform(hashrng.mask_key(hashrng.run_key(8, 3), site), (16, 32, 24))  # one run, Python ints
    assert torch.equal(alone, u[1])
    flat = u[:3].flatten().numpy()
    bound = 4 / math.sqrt(u[0].numel())  # 4 standard errors of a correlation of independent draws
    assert abs(flat.mean() - 0.5) < 0.005 and abs(flat.var() - 1 / 12) < 0.002
    for axis in range(3):  # neighbours along every axis are uncorrelated
        a = np.moveaxis(u[0].numpy(), axis, -1)
        assert abs(np.corrcoef(a[..., :-1].ravel(), a[..., 1:].ravel())[0, 1]) < bound
    assert abs(np.corrcoef(u[0].flatten(), u[1].flatten())[0, 1]) < bound
    for other in (hashrng.mask_key(hashrng.run_key(seeds, 4), site),  # another step
                  hashrng.mask_key(hashrng.run_key(seeds, 3), hashrng.site_key("bert.embeddings.dropout")),
                  hashrng.mask_key(hashrng.run_key(seeds, 3), hashrng.site_key(
                      "bert.encoder.layer.0.output.dropout", call=1))):  # fmt: skip
        assert abs(np.corrcoef(u[0].flatten(), hashrng.uniform(other, (16, 32, 24))[0].flatten())[0, 1]) < bound
    short = hashrng.keep(keys, (5, 10, 24), 0.1)  # a shorter, narrower batch keeps its elements' draws
    assert torch.equal(short, hashrng.keep(keys, (16, 32, 24), 0.1)[:, :5, :10])
    rows = hashrng.keep(keys, (3, 32, 24), 0.1, first_row=4)  # a micro-batch of rows 4..6 keeps them too
    assert torch.equal(rows, hashrng.keep(keys, (16, 32, 24), 0.1)[:, 4:7])
    keep = hashrng.keep(keys, (16, 32, 24), 0.3).float().mean().item()
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
        opt.grad.copy_(grads)
        norms = opt.step(torch.full((k,), 0.1 * multiplier, dtype=torch.float64), torch.ones(k, dtype=torch.bool))
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


@pytest.mark.parametrize("decay", ["uniform tail", "none", "prior"])
def test_adam_on_the_trained_columns_only_equals_adam_on_all_when_the_rest_never_has_a_gradient(decay: str) -> None:
    """Columns with a zero gradient at every step (embedding rows no batch uses) change only by weight decay:
    an optimiser that runs Adam on the other columns gives bitwise the same weights, with smaller moments."""
    from harness.training.vectorised.optim import Hyper, StackedAdamW

    k, p, n = 3, 12, 7
    g = torch.Generator().manual_seed(3)
    w = torch.randn(k, p, generator=g)
    lr_scale = torch.tensor([0.5] * 3 + [1.0] * 9)
    wd = torch.tensor([0.0] * 3 + [0.1] * 9) if decay == "uniform tail" else None
    prior_wd = torch.full((p,), 0.3) if decay == "prior" else None
    hyper = Hyper((0.9, 0.98), 1e-6, True, 1.0)
    full = StackedAdamW(w.clone(), hyper, lr_scale, wd, prior_wd, w.clone() if prior_wd is not None else None)
    part = StackedAdamW(w.clone(), hyper, lr_scale, wd, prior_wd, w.clone() if prior_wd is not None else None, n)
    assert part.exp_avg.shape == (k, n)
    for step in range(5):
        grads = torch.randn(k, p, generator=g) * (3.0 if step % 2 else 0.1)
        grads[:, n:] = 0.0
        for opt in (full, part):
            opt.zero_grad()
            opt.grad += grads
            opt.step(torch.full((k,), 0.1), torch.tensor([True, True, step < 2]))
        assert torch.equal(full.flat, part.flat)
    assert torch.equal(part.flat[:, n:], w[:, n:]) == (decay != "uniform tail")  # only decay moves the tail


def test_untrained_columns_that_decay_at_different_rates_are_trained_after_all() -> None:
    from harness.training.vectorised.optim import Hyper, StackedAdamW

    w = torch.randn(2, 6)
    wd = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.0, 0.1])
    opt = StackedAdamW(w, Hyper((0.9, 0.98), 1e-6, True, 0.0), torch.ones(6), wd, trained=3)
    assert opt.n == 6


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
        opt.grad.copy_(grads)
        opt.step(torch.full((2,), 0.01, dtype=torch.float64), active)
        param.grad = grads[0].clone()
        ref.step()
        torch.testing.assert_close(flat[0], param.detach(), rtol=1e-12, atol=1e-12)
    after_first = flat[1].clone()
    assert torch.isfinite(after_first).all() and not torch.equal(after_first, w[1])
    opt.grad.copy_(torch.randn(2, 5, dtype=torch.float64))
    opt.step(torch.full((2,), 0.01, dtype=torch.float64), torch.tensor([True, False]))
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
        if calls["n"] >= 4 and len(losses) == 3:  # run 1's loss is NaN from step 4 on (until it leaves the batch)
            losses = losses.clone()
            losses[1] = float("nan")
        return losses

    monkeypatch.setattr(engine, "_per_run_loss", poisoned)
    results = _train(specs, tiny_glue_dir)
    bad = results[1].run
    assert bad["status"] == "diverged" and math.isnan(bad["score"]) and bad["steps_done"] == 3
    assert math.isnan(bad["loss_last"]) and all(p["step"] < 4 for p in results[1].curve)
    assert results[1].predictions is None
    assert results[1].dropped_at == 4 / 8  # it left the batch at the evaluation that found it (step 4 of 8)
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
    # the stopped run left the batch (its compute ended there); the other run trained on exactly as before
    assert results[0].dropped_at == results[0].curve[0]["step"] / 8 and results[1].dropped_at is None
    alone = _train(specs[1:], tiny_glue_dir)[0]
    assert results[1].curve == alone.curve and results[1].predictions == alone.predictions


def test_engine_is_chosen_from_seeds_per_worker_and_is_not_part_of_the_run_id() -> None:
    """One definition of a run: the same runs (same ids) whichever engine trains them; K only schedules."""
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
    assert {s.engine for s in loop.runs} == {"loop"} and {s.engine_note for s in loop.runs} == {""}
    assert by_recipe[("std", 1)].engine == "vectorised" and by_recipe[("r3f", 1)].engine == "loop"
    assert "r3f_lambda" in by_recipe[("r3f", 1)].engine_note
    assert [s.run_id for s in loop.runs] == [s.run_id for s in vec.runs]
    assert parse_experiment({**base, "schedule": {"seeds_per_worker": 32}}).runs[0].run_id == loop.runs[0].run_id
    assert RunSpec.from_json(by_recipe[("std", 1)].to_json()) == by_recipe[("std", 1)]
    with pytest.raises(Exception, match="seeds_per_worker"):
        parse_experiment({**base, "schedule": {"seeds_per_worker": 0}})


def test_the_engine_of_a_family_off_the_list_is_the_loop_chosen_when_the_file_is_parsed(tmp_path: Path) -> None:
    """A model family the engine does not stack trains in the loop, with a note, decided from its config.json."""
    import json

    from harness.experiment.config import parse_experiment

    def experiment(model_type: str):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        table = {"name": "x", "model": str(folder), "tasks": ["sst2"], "seeds": 2, "recipes": {"std": {}}}
        return parse_experiment({**table, "schedule": {"seeds_per_worker": 2}})

    albert, roberta = experiment("albert").runs, experiment("roberta").runs
    assert {s.engine for s in albert} == {"loop"} and all("model family 'albert'" in s.engine_note for s in albert)
    assert {s.engine for s in roberta} == {"vectorised"} and {s.engine_note for s in roberta} == {""}


def test_the_spec_version_was_bumped_when_the_loop_changed_its_dropout() -> None:
    """Version 3: the loop's masks come from the hash, so runs stored under version 2 are trained again."""
    from harness.experiment.spec import SPEC_VERSION

    spec = RunSpec("sst2", "m", Recipe(), 1, 1)
    assert SPEC_VERSION == 3 and spec.canonical()["spec_version"] == 3
    assert "engine" not in spec.canonical() and "engine_note" not in spec.canonical()


def _distilbert_dir(folder: Path) -> Path:
    """A tiny DistilBERT encoder: its classifier adds `pre_classifier` too, so more than `classifier.` is missing."""
    from conftest import _char_vocab
    from transformers import BertTokenizer, DistilBertConfig, DistilBertModel

    vocab = _char_vocab()
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=37)
    DistilBertModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_group_models_are_built_exactly_as_the_loop_builds_them(
    family: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BERT: one loaded template is copied (only the head is missing). DistilBERT: each run loads its own, its
    pre_classifier drawn from its init_seed as in the loop; the first load also says what the checkpoint lacks."""
    from harness.training import recipes
    from harness.training.loop import seed_everything
    from harness.training.models import init_head, load_classifier
    from harness.training.vectorised import build

    model_dir = tiny_model_dir if family == "bert" else _distilbert_dir(tmp_path)
    recipe = Recipe(reinit_layers=1, mixout=0.2) if family == "bert" else Recipe(mixout=0.2)
    specs = [spec_for(model_dir, recipe, *s) for s in SEEDS[:3]]
    loads = []
    monkeypatch.setattr(build, "load_classifier", lambda *a: loads.append(a) or load_classifier(*a))
    built = list(build.build_models(specs))
    assert len(loads) == (0 if family == "bert" else 2)  # BERT: one load (the first run's) for the whole group
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
    from harness.experiment.engines import choose_engine
    from harness.schedule.groups import fallback_note

    lora = choose_engine(RunSpec("sst2", "m", Recipe(lora_r=4), 1, 1), 4)
    assert lora.engine == "loop" and "lora_r" in fallback_note(lora, "trainable 1/2 params")
    assert fallback_note(lora, "x").startswith("x; seeds_per_worker = 4")
    assert fallback_note(choose_engine(lora, 1), "x") == "x"
    assert fallback_note(choose_engine(RunSpec("sst2", "m", Recipe(), 1, 1), 4), "x") == "x"
    albert = choose_engine(RunSpec("sst2", "m", Recipe(), 1, 1), 4, model_type="albert")
    assert albert.engine == "loop" and "model family 'albert'" in fallback_note(albert, "")
    unknown = choose_engine(RunSpec("sst2", "m", Recipe(), 1, 1), 4, model_type=None)  # a hub id: the worker decides
    assert unknown.engine == "vectorised"


def test_runs_stored_by_the_loop_are_reused_when_seeds_per_worker_changes(tmp_path: Path, fake_state: Path) -> None:
    """seeds_per_worker is a speed setting: runs stored one per worker are not trained again in groups of K,
    and a larger experiment at K = 4 trains only its new seeds, in a group."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))  # the workers import the fakes from here
    from harness.experiment.config import parse_experiment
    from harness.schedule import run_experiment

    base = {"name": "reuse", "model": "fake", "task": "rte", "recipes": {"std": {}}, "num_evals": 2}

    def run(seeds: int, k: int):
        exp = parse_experiment({**base, "seeds": seeds, "schedule": {"seeds_per_worker": k}})
        return exp, run_experiment(exp, tmp_path, train_fn="fakes_schedule:sleepy",
                                   group_fn="fakes_groups:group_sleepy", max_workers=2, progress=False)  # fmt: skip

    _, first = run(3, 1)
    assert first.done == 3 and not list(fake_state.glob("*.group-*"))  # the loop trained them
    exp, more = run(5, 4)
    assert {s.engine for s in exp.runs} == {"vectorised"} and more.skipped == 3 and more.done == 2
    grouped = {path.name.split(".")[0] for path in fake_state.glob("*.group-*")}
    assert grouped == {s.run_id for s in exp.runs if s.init_seed > 3}
