"""Adaptive seed budgets in an experiment file: `seeds = { adaptive = { min, max, step, target } }`.

The experiment declares seeds 1..max (so run ids never depend on how far the budget went); the
scheduler (harness/schedule/adaptive.py) runs `min` seeds per configuration, then adds `step` more
until the target is met or `max` is reached. Targets:

    "ci_width<=W"   per configuration: stop once the 95% t interval of the mean score is at most W wide
                    (full width, in score points)
    "sequential"    per pair of recipes: stop once its claim test is settled by a group-sequential
                    Welch test with alpha spending (`spending` = "obrien-fleming" | "pocock"); the pairs
                    are the [paper] claims on means (one-sided in the claim's direction at alpha / m, the
                    claim's share of the m claims' Holm family; the verdicts replay this test at the same
                    `alpha`), else every recipe against the first, two-sided at `alpha`
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.experiment.spec import AdaptiveSeeds, ConfigError

BUDGET_FILE = "adaptive.json"  # beside runs/: the decisions of the last adaptive run
KEYS = {"min", "max", "step", "target", "alpha", "spending"}
SPENDING = ("obrien-fleming", "pocock")


def parse_adaptive(raw: Any, where: str) -> AdaptiveSeeds | None:
    """The AdaptiveSeeds of a `seeds` value, or None when it is not `{ adaptive = {...} }`."""
    if not isinstance(raw, Mapping) or "adaptive" not in raw:
        return None
    if set(raw) != {"adaptive"} or not isinstance(raw["adaptive"], Mapping):
        raise ConfigError(
            f"{where}: 'seeds' = {dict(raw)!r}; an adaptive budget is alone in its table: "
            'seeds = { adaptive = { min = 5, max = 50, step = 5, target = "ci_width<=1.0" } }'
        )
    table = raw["adaptive"]
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: 'seeds.adaptive' has unknown key(s) {unknown}; allowed: {sorted(KEYS)}")
    policy = AdaptiveSeeds(**table)
    for key in ("min", "max", "step"):
        value = getattr(policy, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: 'seeds.adaptive.{key}' = {value!r}; must be a whole number >= 1")
    if policy.min < 2 or policy.max < policy.min:
        raise ConfigError(
            f"{where}: 'seeds.adaptive' min = {policy.min}, max = {policy.max}; need 2 <= min <= max "
            "(a spread needs two seeds)"
        )
    if not isinstance(policy.target, str) or (policy.target != "sequential" and policy.ci_width is None):
        raise ConfigError(
            f'{where}: \'seeds.adaptive.target\' = {policy.target!r}; use "ci_width<=W" (e.g. "ci_width<=1.0") '
            'or "sequential"'
        )
    if policy.spending not in SPENDING:
        raise ConfigError(f"{where}: 'seeds.adaptive.spending' = {policy.spending!r}; allowed: {', '.join(SPENDING)}")
    alpha = policy.alpha
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ConfigError(f"{where}: 'seeds.adaptive.alpha' = {alpha!r}; must be in (0, 1), e.g. 0.05")
    return policy


def load_budget(exp_dir: str | Path) -> dict[str, Any] | None:
    """The last adaptive run's decisions (adaptive.json), or None when the experiment had no adaptive budget."""
    try:
        return json.loads((Path(exp_dir) / BUDGET_FILE).read_text())
    except (OSError, ValueError):
        return None
