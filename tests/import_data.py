"""Made-up run logs for the import tests and benchmark: what a researcher's own scripts might write.

`write_runs_csv` writes one row per run (task, condition, seed, last and best dev scores, a majority
column, lr and an extra column); `write_curves_csv` one row per run and evaluation. Scores are drawn
per seed so a few runs of each configuration collapse to the majority class, as in the papers.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

TASKS = {"rte": 52.7, "mrpc": 81.2, "cola": 0.0, "stsb": float("nan")}  # majority bar (NaN: regression)
LEVELS = {"rte": 70.0, "mrpc": 88.0, "cola": 55.0, "stsb": 88.0}
RECIPES = {"standard": (2e-5, 0.25, 0.0), "reinit": (2e-5, 0.08, 1.5), "mosbach": (1e-5, 0.04, 1.0)}
EVALS = 10


def run_rows(seeds: int = 50, seed: int = 0) -> list[dict]:
    """len(TASKS) x len(RECIPES) x seeds rows; every 37th run has an empty score (a crash in the log)."""
    rng = random.Random(seed)
    rows = []
    for task, majority in TASKS.items():
        for recipe, (lr, p_fail, gain) in RECIPES.items():
            for s in range(1, seeds + 1):
                failed = rng.random() < p_fail
                best = (majority if not math.isnan(majority) else 2.0) if failed else LEVELS[task] + gain
                best += 0.0 if failed else rng.gauss(0, 1.5)
                last = best - abs(rng.gauss(0, 0.8))
                empty = len(rows) % 37 == 36
                rows.append(
                    {
                        "task": task,
                        "condition": recipe,
                        "seed": s,
                        "dev_best": "" if empty else f"{best:.2f}",
                        "dev_last": "" if empty else f"{last:.2f}",
                        "majority": "" if math.isnan(majority) else majority,
                        "lr": lr,
                        "gpu_hours": f"{rng.uniform(0.1, 0.3):.3f}",
                    }
                )
    return rows


def curve_rows(runs: list[dict], seed: int = 1) -> list[dict]:
    """EVALS points per run with a score, rising to the run's best (step 100 .. 1000)."""
    rng = random.Random(seed)
    out = []
    for run in runs:
        if not run["dev_best"]:
            continue
        best = float(run["dev_best"])
        for i in range(1, EVALS + 1):
            value = best - (EVALS - i) * abs(rng.gauss(1.0, 0.5)) if i < EVALS else best
            out.append({"task": run["task"], "condition": run["condition"], "seed": run["seed"],
                        "global_step": 100 * i, "dev": f"{value:.2f}"})  # fmt: skip
    return out


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_runs_csv(folder: Path, seeds: int = 50) -> tuple[Path, Path]:
    """(runs.csv, curves.csv) under folder: the 600-row, 4-task, 3-recipe example at seeds=50."""
    runs = run_rows(seeds)
    return write_csv(folder / "runs.csv", runs), write_csv(folder / "curves.csv", curve_rows(runs))
