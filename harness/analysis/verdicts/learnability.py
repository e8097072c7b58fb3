"""The learnability gate of a verdict: can this model, at this setting, test the claim at all?

A claim is "not testable here" (harness/analysis/verdicts/claims.py) when:
- an arm sits at the constant predictor: more than half of its counted runs are degenerate (at or below the
  constant predictor's score, harness/analysis/seeds/degenerate.py), or its mean score is within LEARNABLE_MARGIN
  points of that score (or below it). A mean or spread claim needs both arms to learn; a degenerate-rate claim
  is about one arm collapsing, so it is gated only when both arms sit at the constant predictor (the model does
  not learn the task under either recipe, so the rates say nothing about the recipes);
- a degenerate-rate claim has no degenerate run in either arm (Fisher's test has nothing to compare);
- checkpoint selection is asymmetric on the scored split: one arm reports its best checkpoint, chosen on the
  split it is scored on (`select = "best"` under `eval_protocol = "dev"`), the other its final one. The best-of-k
  checkpoint is optimistically biased on the split that chose it, so the comparison measures the selection,
  not the recipe. Under "heldout" the best checkpoint is chosen on the validation half and scored on the
  test half: no bias, no gate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEARNABLE_MARGIN = 2.0  # points (x100 scale) above the constant predictor an arm's mean must clear


@dataclass(frozen=True)
class ArmCheck:
    """One arm's learnability: counted runs, degenerate ones, mean of the scored ones, the constant's score."""

    recipe: str
    n: int
    degenerate: int
    mean: float
    bar: float  # the constant predictor's score on the scored split (NaN when unknown)

    def failure(self) -> str:
        """Why the arm sits at the constant predictor ("" when it learns)."""
        if self.n and self.degenerate > self.n / 2:
            return (
                f"{self.recipe} sits at the constant predictor: {self.degenerate}/{self.n} runs degenerate (over half)"
            )
        if math.isfinite(self.bar) and math.isfinite(self.mean) and self.mean <= self.bar + LEARNABLE_MARGIN:
            return (
                f"{self.recipe} sits at the constant predictor: mean {self.mean:.1f} within {LEARNABLE_MARGIN:g} "
                f"points of its {self.bar:.1f}"
            )
        return ""


def arm_check(recipe: str, scores: np.ndarray, degenerate: np.ndarray, bars: np.ndarray) -> ArmCheck:
    """ArmCheck of one arm's counted runs (scores with NaN for diverged runs, their degenerate flags, and each
    run's constant-predictor score)."""
    scores, bars = np.asarray(scores, float), np.asarray(bars, float)
    finite = scores[np.isfinite(scores)]
    bar = float(np.median(bars[np.isfinite(bars)])) if np.isfinite(bars).any() else math.nan
    mean = float(finite.mean()) if finite.size else math.nan
    return ArmCheck(recipe, int(scores.size), int(np.asarray(degenerate, bool).sum()), mean, bar)


def gate_two_arms(statistic: str, a: ArmCheck, b: ArmCheck) -> str:
    """The learnability reason a two-recipe claim on `statistic` is not testable ("" when it is)."""
    if statistic == "degenerate_rate":
        if a.degenerate + b.degenerate == 0:
            return f"no degenerate run in either arm ({a.degenerate}/{a.n} vs {b.degenerate}/{b.n})"
        if a.failure() and b.failure():
            return f"{a.failure()}; {b.failure()}"
        return ""
    return a.failure() or b.failure()


def _selection(spec_json: object) -> tuple[str, str]:
    """(select, eval_protocol) of a stored run's spec; select from the recipe (native runs and new imports) or
    the top level (imports written before the field moved)."""
    try:
        spec = json.loads(str(spec_json))
    except (TypeError, ValueError):
        return "", ""
    if not isinstance(spec, dict):
        return "", ""
    recipe = spec.get("recipe") if isinstance(spec.get("recipe"), dict) else {}
    select = recipe.get("select") or spec.get("select") or ""
    return str(select), str(spec.get("eval_protocol", ""))


def selection_confound(rows_a: pd.DataFrame, rows_b: pd.DataFrame, a: str, b: str) -> str:
    """Why the two arms' checkpoint selection confounds the comparison ("" when it does not)."""
    if "spec" not in rows_a or "spec" not in rows_b or rows_a.empty or rows_b.empty:
        return ""
    sel_a = {_selection(s) for s in rows_a["spec"]}
    sel_b = {_selection(s) for s in rows_b["spec"]}
    modes_a, modes_b = {s for s, _ in sel_a}, {s for s, _ in sel_b}
    protocols = {p for _, p in sel_a | sel_b}
    if len(modes_a) != 1 or len(modes_b) != 1 or modes_a == modes_b or protocols != {"dev"}:
        return ""
    best = a if modes_a == {"best"} else b
    final = b if best == a else a
    if {*modes_a, *modes_b} != {"best", "final"}:
        return ""
    return (
        f"asymmetric checkpoint selection: {best} reports its best checkpoint chosen on the scored dev split, "
        f"{final} its final one"
    )
