"""Adaptive seed budgets: run `min` seeds per configuration, then add `step` more until the rule stops it.

A loop around run_experiment: each look runs the experiment restricted to the seeds granted so far
(seeds 1..n of each open configuration; run ids are those of the full spec, so a larger `max` never
changes them), reads the stored scores and asks harness.analysis.budget which configurations stop.
Running it again resumes: stored runs are skipped and the same decisions are made again. The decisions
go to the events table (kind "adaptive") and to `adaptive.json` beside the runs, which the report reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.budget import BudgetDecision, budget_pairs, decide
from harness.experiment.seed_budget import BUDGET_FILE
from harness.experiment.spec import ExperimentSpec
from harness.schedule.core import RunSummary, run_experiment
from harness.storage.safe_files import replace_file
from harness.storage.store import experiment_dir, load_runs, write_events


@dataclass(frozen=True)
class AdaptiveSummary:
    """What an adaptive run did: per configuration the seeds it got and why it stopped."""

    experiment: str
    target: str
    max_seeds: int
    decisions: tuple[BudgetDecision, ...]  # the final one of each configuration
    steps: tuple[RunSummary, ...]

    @property
    def runs_used(self) -> int:
        return sum(d.n for d in self.decisions)

    @property
    def runs_saved(self) -> int:
        return self.max_seeds * len(self.decisions) - self.runs_used

    def __str__(self) -> str:
        lines = [
            f"{self.experiment}: adaptive seeds ({self.target}): {self.runs_used} run(s) instead of "
            f"{self.max_seeds * len(self.decisions)} at max = {self.max_seeds}; saved {self.runs_saved}"
        ]
        lines += [f"  {d.config_key}: {d.n} seed(s): {d.reason}" for d in self.decisions]
        return "\n".join(lines)


def run_adaptive(experiment: ExperimentSpec, results_root: str | Path = "results", **kwargs: Any) -> AdaptiveSummary:
    """Run `experiment` (which has an adaptive seed budget) look by look; kwargs go to run_experiment."""
    policy = experiment.adaptive
    if policy is None:
        raise ValueError(f"experiment {experiment.name!r} has no adaptive seed budget (seeds = {{ adaptive = ... }})")
    exp_dir = experiment_dir(results_root, experiment.name)
    configs = list(dict.fromkeys(r.config_key for r in experiment.runs))
    pairs = budget_pairs(experiment.paper, experiment.tasks, experiment.recipes)
    granted = dict.fromkeys(configs, 0)
    final: dict[str, BudgetDecision] = {}
    steps = []
    for look, n in enumerate(policy.looks, start=1):
        open_configs = [c for c in configs if c not in final]
        if not open_configs:
            break
        granted.update(dict.fromkeys(open_configs, n))
        runs = tuple(r for r in experiment.runs if r.init_seed <= granted[r.config_key])
        steps.append(run_experiment(dataclasses.replace(experiment, runs=runs), results_root, **kwargs))
        scores = _scores(exp_dir, runs, open_configs)
        decisions = decide(policy, look, scores, pairs)
        write_events(
            exp_dir,
            [{"run_id": "", "kind": "adaptive", "message": f"look {look}: {d.config_key} n = {d.n}: "
              f"{'stop' if d.stop else 'continue'} ({d.reason})"} for d in decisions.values()],
        )  # fmt: skip
        final.update({k: d for k, d in decisions.items() if d.stop})
    decided = tuple(final[c] for c in configs)
    summary = AdaptiveSummary(experiment.name, policy.target, policy.max, decided, tuple(steps))
    _write_budget(exp_dir, summary)
    return summary


def _scores(exp_dir: Path, runs: tuple, open_configs: list[str]) -> dict[str, list[float]]:
    """Stored scores of this look's runs per open configuration (failed runs left out, NaN kept for diverged)."""
    stored = load_runs(exp_dir)
    ids = {r.run_id: r.config_key for r in runs if r.config_key in open_configs}
    mine = stored[stored["run_id"].isin(list(ids)) & (stored["status"].astype(str) != "failed")]
    out: dict[str, list[float]] = {c: [] for c in open_configs}
    for run_id, score in zip(mine["run_id"].astype(str), mine["score"].astype(float), strict=True):
        out[ids[run_id]].append(score if math.isfinite(score) else math.nan)
    return out


def _write_budget(exp_dir: Path, summary: AdaptiveSummary) -> None:
    data = {
        "target": summary.target,
        "max": summary.max_seeds,
        "runs_used": summary.runs_used,
        "runs_at_max": summary.max_seeds * len(summary.decisions),
        "runs_saved": summary.runs_saved,
        "configs": [dataclasses.asdict(d) for d in summary.decisions],
    }
    replace_file(exp_dir / BUDGET_FILE, json.dumps(data, indent=2))  # atomic, never through a planted link
