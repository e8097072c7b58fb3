"""Synthetic stores with known structure, for tests and the benchmark (no training involved).

Scores follow y = base + a_init + b_order + e with chosen standard deviations; a share of runs
"fails" (stays near the majority baseline), a few diverge (NaN score) or fail (no score). Curves rise
towards the final value, so early evaluations carry information about the final one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.storage.store import CURVE_COLUMNS, RUN_COLUMNS, write_run

TASKS = {  # task: (metric, majority_val, majority_test, base score)
    "rte": ("accuracy", 52.9, 52.5, 68.0),
    "mrpc": ("f1", 81.3, 81.2, 88.0),
    "cola": ("matthews", 0.0, 0.0, 55.0),
    "stsb": ("spearman", 0.0, 0.0, 86.0),
}


def synthetic_runs(
    n_init: int = 5,
    n_order: int = 5,
    recipes: tuple[str, ...] = ("default", "better"),
    tasks: tuple[str, ...] = ("rte", "stsb"),
    n_evals: int = 10,
    sd_init: float = 1.5,
    sd_order: float = 1.0,
    sd_noise: float = 0.5,
    p_degenerate: float = 0.1,
    p_diverged: float = 0.02,
    p_failed: float = 0.01,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) frames with the store's column names; recipe k adds k points and cuts failures."""
    rng = np.random.default_rng(seed)
    run_parts, curve_parts = [], []
    frac = np.arange(1, n_evals + 1) / n_evals
    for task in tasks:
        metric, maj_val, maj_test, base = TASKS[task]
        a = rng.normal(0, sd_init, n_init)
        for k, recipe in enumerate(recipes):
            b = rng.normal(0, sd_order, n_order)
            ii, jj = np.meshgrid(np.arange(n_init), np.arange(n_order), indexing="ij")
            ii, jj = ii.ravel(), jj.ravel()
            n = ii.size
            final = base + k + a[ii] + b[jj] + rng.normal(0, sd_noise, n)
            u = rng.random(n)
            status = np.where(u < p_failed, "failed", np.where(u < p_failed + p_diverged, "diverged", "done"))
            degenerate = (rng.random(n) < p_degenerate / (k + 1)) & (status == "done")
            floor = maj_val if maj_val > 0 else 0.0
            final = np.where(degenerate, floor - np.abs(rng.normal(0, 1.0, n)), final)
            start = floor + rng.normal(0, 2.0, n)
            curve = start[:, None] + (final - start)[:, None] * (1 - np.exp(-6 * frac))[None, :]
            curve = curve + rng.normal(0, 0.4, curve.shape)
            curve[:, -1] = final
            diverged = status == "diverged"
            cut = rng.integers(1, n_evals, n)
            curve[diverged[:, None] & (np.arange(n_evals)[None, :] >= cut[:, None])] = np.nan
            curve[status == "failed"] = np.nan
            best = np.nanmax(np.where(np.isnan(curve), -np.inf, curve), axis=1)
            best = np.where(np.isinf(best), np.nan, best)
            score = np.where(status == "done", best + rng.normal(0, 0.3, n), np.nan)
            ids = [f"{task}-{recipe}-{i}-{j}" for i, j in zip(ii, jj, strict=True)]
            run_parts.append(
                pd.DataFrame(
                    {
                        "run_id": ids, "experiment": "synthetic", "task": task, "recipe": recipe, "model": "toy",
                        "config_key": f"{task}/{recipe}", "init_seed": ii, "order_seed": jj, "sample_seed": 0,
                        "status": status, "metric": metric, "score": score, "val_best": best,
                        "val_final": curve[:, -1], "majority_val": maj_val, "majority_test": maj_test,
                        "steps_done": 100, "total_steps": 100, "spec": json.dumps({"eval_protocol": "heldout"}),
                    }
                )
            )  # fmt: skip
            curve_parts.append(
                pd.DataFrame(
                    {
                        "run_id": np.repeat(ids, n_evals), "eval_index": np.tile(np.arange(n_evals), n),
                        "step": np.tile((frac * 100).astype(int), n), "fraction": np.tile(frac, n),
                        "val_metric": curve.ravel(),
                    }
                )
            )  # fmt: skip
    return pd.concat(run_parts, ignore_index=True), pd.concat(curve_parts, ignore_index=True)


def write_synthetic_store(exp_dir: str | Path, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Store synthetic_runs' frames under exp_dir as `harness run` would: one write_run per run (its curve)."""
    by_run = {run_id: group for run_id, group in curves.groupby("run_id", sort=False)}
    for run in runs.to_dict("records"):
        row = {k: v for k, v in run.items() if k in RUN_COLUMNS}
        row.update(steps_done=100, total_steps=100, attempts=1)
        points = by_run.get(run["run_id"], curves.iloc[0:0]).drop(columns="run_id").to_dict("records")
        write_run(exp_dir, row, [{k: v for k, v in p.items() if k in CURVE_COLUMNS} for p in points])
