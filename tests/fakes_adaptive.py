"""A fake train function for the adaptive-budget tests: a normal score per seed, recipe "big" 10 points up.

Also returns per-example predictions, so the driver's predictions table is exercised without a model.
"""

from __future__ import annotations

import math

import numpy as np

from harness.experiment.spec import RunSpec
from harness.storage.records import RunContext, RunResult, base_row

SHIFT = {"big": 10.0}


def scored(spec: RunSpec, ctx: RunContext) -> RunResult:
    rng = np.random.default_rng(spec.init_seed * 1000 + len(spec.recipe.name))
    score = 70.0 + SHIFT.get(spec.recipe.name, 0.0) + float(rng.normal(0, 2.0))
    row = {**base_row(spec), "status": "done", "metric": "accuracy", "score": score, "val_best": score,
           "val_final": score, "steps_done": 1, "total_steps": 1, "attempts": 1, "device": ctx.device}  # fmt: skip
    curve = [{"eval_index": 0, "step": 1, "fraction": 1.0, "epoch": 1.0, "train_loss": 0.5, "val_metric": score,
              "test_metric": math.nan}]  # fmt: skip
    preds = rng.integers(0, 2, size=6).astype(float).tolist()
    return RunResult(row, curve, {"val": preds, "test": preds[:4]})
