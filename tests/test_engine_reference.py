"""The oracle of the seed-group engine: each run trained in a group equals the same run trained by the loop.

harness.training.loop.fine_tune defines a run. The seed-group engine (train_group) must give each run the
loop's numbers whatever group it trains in, K = 1 or K > 1: identical predictions and metrics at every
evaluation, losses within 1e-5 (fp32 on CPU). A change to the engine that alters how a run trains (its lr
schedule, its dropout, its optimiser, its data order) fails here; the last test shows that it does.
Tiny random BERT (2 layers), dropout on, tiny SST-2 data, a recipe that learns in 24 steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.experiment.spec import Recipe, RunSpec
from harness.storage.records import RunContext, RunResult
from harness.training.loop import fine_tune
from harness.training.vectorised import engine
from harness.training.vectorised.engine import train_group

LOSS_TOLERANCE = 1e-5
BASE = dict(lr=1e-2, batch_size=8, max_steps=24, dropout=0.1)
RECIPES = {  # between them: dropout, re-init, LLRD, WD, prior WD, Mixout, warm-up, clipping, BERTAdam
    "llrd-wd-warmup-clip": Recipe(**BASE, warmup_ratio=0.2, weight_decay=0.01, llrd=0.8, grad_clip=0.5),
    "reinit-priorwd-mixout-bertadam": Recipe(
        **BASE, warmup_ratio=0.1, prior_wd=0.1, mixout=0.2, reinit_layers=1, bias_correction=False, select="final"
    ),
}
SEEDS = [(1, 11, 0), (2, 12, 1)]  # (init, order, sample)


def run_spec(model_dir: Path, recipe: Recipe, init: int, order: int, sample: int) -> RunSpec:
    return RunSpec(
        "sst2", str(model_dir), recipe, init, order, sample_seed=sample, sample_size=32, model_layers=2,
        eval_protocol="heldout", max_seq_length=32, num_evals=4,
    )  # fmt: skip


def context(data_dir: Path) -> RunContext:
    return RunContext(data_dir=str(data_dir), threads=1)  # one thread: tiny ops on a shared machine


def assert_same_run(grouped: RunResult, loop: RunResult) -> None:
    """One run, two engines: the same evaluations, predictions and selection; losses within LOSS_TOLERANCE."""
    g, lp = grouped.run, loop.run
    assert g["status"] == lp["status"]
    assert [p["step"] for p in grouped.curve] == [p["step"] for p in loop.curve]
    for a, b in zip(grouped.curve, loop.curve, strict=True):
        assert (a["val_metric"], a["test_metric"]) == (b["val_metric"], b["test_metric"]), f"step {a['step']}"
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=LOSS_TOLERANCE), f"step {a['step']}"
    assert grouped.predictions == loop.predictions
    for key in ("score", "best_step", "val_best", "val_final", "test_best", "test_final", "steps_done"):
        assert g[key] == lp[key], key
    for key in ("loss_first", "loss_last", "loss_min", "loss_mean"):
        assert g[key] == pytest.approx(lp[key], abs=LOSS_TOLERANCE), key
    assert json.loads(g["provenance"])["precision"] == json.loads(lp["provenance"])["precision"]


@pytest.fixture(scope="module")
def loop_runs(tiny_model_dir: Path, tiny_glue_dir: Path) -> dict[str, list[tuple[RunSpec, RunResult]]]:
    """Each recipe's runs trained one by one by the loop: the reference."""
    ctx = context(tiny_glue_dir)
    out = {}
    for name, recipe in RECIPES.items():
        specs = [run_spec(tiny_model_dir, recipe, *seeds) for seeds in SEEDS]
        out[name] = [(spec, fine_tune(spec, ctx)[0]) for spec in specs]
    return out


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_run_of_a_group_equals_the_run_trained_by_the_loop(
    recipe: str, loop_runs: dict[str, Any], tiny_glue_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = []  # the group renumbers its vocabulary and keeps unused embedding rows out of Adam: covered here
    monkeypatch.setattr(
        engine, "vocab_order", lambda *a, real=engine.vocab_order: orders.append(real(*a)) or orders[-1]
    )
    specs = [spec for spec, _ in loop_runs[recipe]]
    grouped = train_group(specs, context(tiny_glue_dir))
    for result, (_, reference) in zip(grouped, loop_runs[recipe], strict=True):
        assert_same_run(result, reference)
    assert orders[0] is not None and 0 < orders[0].used < len(orders[0].order)


def test_a_group_of_one_equals_the_run_trained_by_the_loop(loop_runs: dict[str, Any], tiny_glue_dir: Path) -> None:
    spec, reference = loop_runs["llrd-wd-warmup-clip"][1]
    assert_same_run(train_group([spec], context(tiny_glue_dir))[0], reference)


@pytest.mark.parametrize("mutation", ["lr_schedule_x3", "hidden_dropout_x3"])
def test_the_oracle_fails_an_engine_that_trains_a_run_differently(
    mutation: str, loop_runs: dict[str, Any], tiny_glue_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine patched to use 3x the lr schedule, or 3x the hidden dropout, no longer passes."""
    if mutation == "lr_schedule_x3":
        schedule = engine.linear_warmup_decay
        monkeypatch.setattr(engine, "linear_warmup_decay", lambda *a: 3 * schedule(*a))
    else:
        build = engine._Group.build_models

        def tripled(group: Any) -> Any:
            for model in build(group):  # hidden dropout only: attention-probability dropout keeps its p
                for name, module in model.named_modules():
                    if name.endswith(("output.dropout", "embeddings.dropout")):
                        module.p = 3 * module.p
                yield model

        monkeypatch.setattr(engine._Group, "build_models", tripled)
    spec, reference = loop_runs["llrd-wd-warmup-clip"][0]
    mutated = train_group([spec], context(tiny_glue_dir))[0]
    with pytest.raises(AssertionError):
        assert_same_run(mutated, reference)
    assert not math.isclose(mutated.run["loss_mean"], reference.run["loss_mean"], abs_tol=LOSS_TOLERANCE)


def test_the_reference_runs_learn_and_differ_by_seed(loop_runs: dict[str, Any]) -> None:
    """The comparisons above are not vacuous: the runs learn, and two seeds differ in losses and predictions."""
    (_, a), (_, b) = loop_runs["llrd-wd-warmup-clip"]
    assert max(a.run["val_best"], b.run["val_best"]) >= 75
    assert a.predictions != b.predictions
    for runs in loop_runs.values():
        (_, a), (_, b) = runs
        assert a.run["loss_mean"] != pytest.approx(b.run["loss_mean"], abs=1e-4)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_micro_batches_train_the_same_run(recipe: str, loop_runs: dict[str, Any], tiny_glue_dir: Path) -> None:
    """Gradient accumulation (the loop's out-of-memory fallback) keeps every example's dropout masks (their row
    offset is hashed) and the step's Mixout masks: the same run, as in one batch."""
    spec, reference = loop_runs[recipe][0]
    ctx = dataclasses.replace(context(tiny_glue_dir), micro_batch_size=3)  # batches of 8 in chunks of 3, 3, 2
    assert_same_run(fine_tune(spec, ctx)[0], reference)
