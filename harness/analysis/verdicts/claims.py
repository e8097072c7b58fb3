"""Verdicts on a paper's pre-declared claims: one computed label per claim, as frozen records.

Every claim of an experiment's `[paper]` section (harness/experiment/paper.py) gets exactly one label:

- "not testable here": a learnability gate fails (harness/analysis/verdicts/learnability.py: an arm at the constant
  predictor, no degenerate run in either arm of a rate claim, asymmetric checkpoint selection on the scored
  split), or the claim's data are missing (a recipe not run, fewer than two scored runs a side, no init x
  order grid, no curves). Checked first.
- "reproduced": the claim's one pre-declared test, one-sided in the claim's direction, is significant after
  Holm's correction across all claims of the experiment: p_Holm < alpha.
- "not reproduced": the paper's printed effect at the scale run (`PaperReference.paper_effect`) lies outside
  our 95% CI, so the data argue against it. Where the paper printed no effect, this label cannot be given.
- "inconclusive": neither; `seeds_needed` says how many seeds per arm the test would need (80% power at the
  claim's Holm level, if the observed effect were the true one).

"reproduced" is checked before "not reproduced": a claim is directional, so a significant effect in the claimed
direction reproduces it even when its size differs from the paper's (a caveat then says so).

Holm's family is every claim: an untestable claim counts as p = 1. Its Holm level, for the seeds needed, is
alpha / (m - r + 1) for the claim ranked r among the m p-values. One alpha everywhere: 0.05, or the adaptive
budget's `alpha` when the seeds were added by a sequential budget, whose mean claims are then judged by
replaying its group-sequential test (stage-wise p-value, harness/analysis/stats/sequential.py) instead of a
fixed-sample test after data-dependent stopping.

Counting: the runs behind a verdict are the counted ones (done and diverged); early-stopped runs are left out,
counted in `n_stopped_excluded`, and a survivorship caveat says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.seeds.compare import holm
from harness.analysis.seeds.degenerate import degenerate_value, fill_finished_nan, is_degenerate
from harness.analysis.stats.power import fisher_seeds, seeds_for_power, spread_seeds
from harness.analysis.verdicts.measure import Measured, PerRun, finished_nan, measure_one, measure_pair
from harness.experiment.paper import Claim, PaperReference
from harness.experiment.spec import AdaptiveSeeds

ALPHA = 0.05
LABELS = ("reproduced", "not reproduced", "inconclusive", "not testable here")
EFFECT_NAMES = {
    "mean": "mean_diff", "std": "std_ratio", "degenerate_rate": "rate_diff", "variance_share": "share_diff",
    "expected_max_gain": "emp_gain", "early_stopping_gain": "es_gain",
}  # fmt: skip
TEST_NAMES = {
    "welch_t": "Welch t", "mann_whitney_u": "Mann-Whitney U", "permutation_mean_diff": "permutation",
    "brown_forsythe": "Brown-Forsythe", "levene": "Levene", "fisher_exact_degenerate": "Fisher exact",
    "grid_bootstrap": "grid bootstrap", "bootstrap": "bootstrap",
}  # fmt: skip
POWER = 0.8
NAN = float("nan")


@dataclass(frozen=True)
class ClaimVerdict:
    """Our verdict on one claim. Fields, for whoever renders it:

    claim, task, a, b, statistic, direction, test, where: the claim as declared (b "" for one-recipe statistics;
        direction greater | less | comparable; test the pre-declared test's name; where the paper's figure/table).
    n_a, n_b: counted runs (done + diverged) of each arm behind the test (n_b 0 for one-recipe statistics; for a
        sequential claim, the runs up to the look where the budget stopped the pair).
    n_stopped_excluded: early-stopped runs of the arms left out (survivorship caveat when > 0).
    effect, effect_name: our point effect: mean_diff (a - b, points), std_ratio (a / b), rate_diff (a - b,
        fraction), share_diff (init - order share, fraction), emp_gain / es_gain (points).
    ci_lo, ci_hi: its 95% CI (BCa bootstrap for mean and std, Newcombe for rates, percentile bootstrap else).
    paper_effect: the paper's printed effect in the same units at the scale run; None where it printed none.
    p_one_sided: the test's one-sided p in the claim's direction (the stage-wise p of a sequential design).
    p_holm: Holm-adjusted across the experiment's claims (untestable claims count as p = 1).
    alpha: the one level used everywhere (0.05, or the adaptive budget's).
    label: one of LABELS; reason: why, in one line.
    seeds_needed: for "inconclusive", seeds per arm for 80% power of the same test at the claim's Holm level
        (None when no finite number reaches it or the statistic has no power formula).
    caveats: what qualifies the label (survivorship, scored-as-constant runs, fewer seeds than the paper,
        the sequential boundary used, a claim the adaptive budget did not consider, a different effect size).
    detail: the numbers behind the effect (means, stds, degenerate counts, shares).
    family_size: m, the number of claims in the Holm family.
    holm_level: the claim's Holm level alpha / (m - r + 1), r its rank: the level seeds_needed plans for.
    margin: the claim's pre-declared margin in the effect's units (comparable: |effect| < margin; a gain: the
        smallest gain claimed), 0 where none: the forest plot draws it, since the test is against it, not 0.
    """

    claim: str
    task: str
    a: str
    b: str
    statistic: str
    direction: str
    test: str
    n_a: int
    n_b: int
    n_stopped_excluded: int
    effect: float
    effect_name: str
    ci_lo: float
    ci_hi: float
    paper_effect: float | None
    p_one_sided: float
    p_holm: float
    alpha: float
    label: str
    reason: str
    seeds_needed: int | None
    caveats: tuple[str, ...] = ()
    where: str = ""
    detail: str = ""
    family_size: int = 0
    holm_level: float = NAN
    margin: float = 0.0


def _bare(statistic: str, value: float) -> str:
    """A value in its statistic's units without the unit: ratios with two decimals, rates in points x100."""
    if statistic == "std":
        return f"{value:.2f}"
    if statistic == "degenerate_rate":
        return f"{100 * value:+.0f}"
    return f"{value:+.2f}" if statistic == "variance_share" else f"{value:+.1f}"


def format_effect(statistic: str, value: float | None) -> str:
    """An effect in its statistic's units, as text: +1.2 (points), ratio 0.62, +48 pp, +0.10 of the variance."""
    if value is None or not math.isfinite(value):
        return "–"
    prefix = "ratio " if statistic == "std" else ""
    suffix = {"degenerate_rate": " pp", "variance_share": " of the variance"}.get(statistic, "")
    return f"{prefix}{_bare(statistic, value)}{suffix}"


def format_interval(statistic: str, lo: float, hi: float) -> str:
    """A 95% CI in its statistic's units, as text: [+4.7, +5.4], [0.62, 1.10], [+54, +100] pp; "" if undefined."""
    if math.isnan(lo) or math.isnan(hi):
        return ""
    unit = " pp" if statistic == "degenerate_rate" else ""
    return f"[{_bare(statistic, lo)}, {_bare(statistic, hi)}]{unit}"


def p_text(p: float) -> str:
    """A p-value in a reason line: three decimals, "<0.001" below that."""
    return "–" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _seeds_needed(claim: Claim, power_input: tuple[Any, ...], level: float) -> int | None:
    if not power_input:
        return None
    kind, *data = power_input
    if kind == "mean":
        a, b = data
        if a.size < 2 or b.size < 2:
            return None
        return seeds_for_power(float(a.mean() - b.mean()), float(a.std(ddof=1)), float(b.std(ddof=1)), level,
                               POWER, claim.direction)  # fmt: skip
    if kind == "std":
        return spread_seeds(data[0], data[1], claim.direction, level, POWER, claim.test)
    return fisher_seeds(*data, claim.direction, level, POWER)


def holm_levels(p: np.ndarray, alpha: float) -> np.ndarray:
    """Each claim's Holm level alpha / (m - r + 1), r its rank among the family's p-values (stable ties)."""
    p = np.asarray(p, float)
    ranks = np.empty(p.size, int)
    ranks[np.argsort(p, kind="stable")] = np.arange(1, p.size + 1)
    return alpha / (p.size - ranks + 1)


def _label(claim: Claim, x: Measured, paper: float | None, p_holm: float, alpha: float) -> tuple[str, str, list]:
    """(label, reason, extra caveats) by the rules of the module note."""
    pe = format_effect(claim.statistic, paper)
    ci = format_interval(claim.statistic, x.ci_lo, x.ci_hi)
    test = TEST_NAMES.get(claim.test, claim.test)
    inside = paper is not None and math.isfinite(x.ci_lo) and x.ci_lo <= paper <= x.ci_hi
    if x.gate:
        return "not testable here", x.gate, []
    if p_holm < alpha:
        extra = [] if paper is None or inside or not math.isfinite(x.ci_lo) else [
            f"the paper's effect {pe} lies outside our 95% CI {ci}: the direction reproduces, not the size"
        ]  # fmt: skip
        return "reproduced", f"one-sided {test} p_Holm {p_text(p_holm)} < {alpha:g}", extra
    if paper is not None and math.isfinite(x.ci_lo) and not inside:
        return "not reproduced", f"the paper's effect {pe} lies outside our 95% CI {ci}", []
    why = (
        f"the paper's effect {pe} lies inside our 95% CI {ci}" if paper is not None
        else "the paper printed no effect at this scale, so \"not reproduced\" cannot be given"
    )  # fmt: skip
    return "inconclusive", f"p_Holm {p_text(p_holm)} ≥ {alpha:g} and {why}", []


def claim_verdicts(
    ref: PaperReference | None,
    runs: pd.DataFrame,
    thresholds: Mapping[str, float] | None = None,
    *,
    comparisons: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
    adaptive: AdaptiveSeeds | None = None,
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
) -> tuple[ClaimVerdict, ...]:
    """One ClaimVerdict per claim of `ref`, in its order. `comparisons`: the compare_table of the same runs (its
    intervals are reused); `curves` for early-stopping claims; `adaptive`: the experiment's adaptive seed budget
    (its sequential test replaces the fixed-sample test of mean claims, and its alpha is the one alpha)."""
    if ref is None or not ref.claims:
        return ()
    filled = finished_nan(runs)
    runs = fill_finished_nan(runs)
    has_bars = {"metric", "majority_val", "majority_test"} <= set(runs)
    per_run = PerRun(
        is_degenerate(runs, thresholds),
        degenerate_value(runs) if has_bars else pd.Series(np.nan, index=runs.index),
        filled,
    )
    alpha = adaptive.alpha if adaptive is not None and adaptive.ci_width is None else ALPHA
    m = len(ref.claims)
    measured = []
    for i, claim in enumerate(ref.claims):
        if claim.two_recipes:
            measured.append(measure_pair(ref, claim, runs, per_run, comparisons, adaptive, alpha / m,
                                         n_boot, n_perm, 613 + i))  # fmt: skip
        else:
            measured.append(measure_one(claim, runs, per_run, curves, n_boot, 613 + i))
    p_in = np.array([1.0 if x.gate or not math.isfinite(x.p) else x.p for x in measured])
    p_holm, levels = holm(p_in), holm_levels(p_in, alpha)
    out = []
    for i, (claim, x) in enumerate(zip(ref.claims, measured, strict=True)):
        paper = ref.paper_effect(claim)
        label, reason, extra = _label(claim, x, paper, float(p_holm[i]), alpha)
        need = _seeds_needed(claim, x.power_input, float(levels[i])) if label == "inconclusive" else None
        out.append(ClaimVerdict(
            claim.claim, claim.task, claim.a, claim.b, claim.statistic, claim.direction, claim.test, x.n_a, x.n_b,
            x.n_stopped, x.effect, EFFECT_NAMES[claim.statistic], x.ci_lo, x.ci_hi, paper,
            x.p, float(p_holm[i]), alpha, label, reason,
            need, (*x.caveats, *extra), claim.where, x.detail, m, float(levels[i]), float(claim.margin or 0.0),
        ))  # fmt: skip
    return tuple(out)


VERDICT_COLUMNS = [f.name for f in dataclasses.fields(ClaimVerdict)]


def verdicts_frame(verdicts: tuple[ClaimVerdict, ...] | list[ClaimVerdict]) -> pd.DataFrame:
    """The records as a table (analysis/verdicts.parquet): one row per claim; paper_effect NaN where None,
    seeds_needed a nullable integer, caveats a list of strings."""
    rows = [dataclasses.asdict(v) | {"caveats": list(v.caveats)} for v in verdicts]
    frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    frame["paper_effect"] = pd.to_numeric(frame["paper_effect"], errors="coerce").astype(float)
    frame["seeds_needed"] = pd.array(frame["seeds_needed"].tolist(), dtype="Int64")
    return frame


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def verdicts_from_frame(frame: pd.DataFrame) -> tuple[ClaimVerdict, ...]:
    """The records back from verdicts_frame (or the Parquet file it was written to)."""
    out = []
    for row in frame.to_dict("records"):
        pe, need = row["paper_effect"], row["seeds_needed"]
        row["paper_effect"] = None if _missing(pe) else float(pe)
        row["seeds_needed"] = None if _missing(need) else int(need)  # Int64, or float NaN once reordered or read back
        row["caveats"] = tuple(str(c) for c in (row["caveats"] if row["caveats"] is not None else ()))
        out.append(ClaimVerdict(**{k: row[k] for k in VERDICT_COLUMNS if k in row}))  # older tables: no margin
    return tuple(out)
