"""Verdicts on a paper's pre-declared claims: one computed label per claim, as frozen records.

Every claim of an experiment's `[paper]` section (harness/experiment/paper.py) gets exactly one label:

- "not testable here": a learnability gate fails (harness/analysis/learnability.py: an arm at the constant
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
replaying its group-sequential test (stage-wise p-value, harness/analysis/sequential.py) instead of a
fixed-sample test after data-dependent stopping.

Counting: the runs behind a verdict are the counted ones (done and diverged); early-stopped runs are left out,
counted in `n_stopped_excluded`, and a survivorship caveat says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import claim_stats
from harness.analysis.compare import compare, holm
from harness.analysis.degenerate import degenerate_value, fill_finished_nan, is_degenerate, newcombe_interval
from harness.analysis.describe import COUNTED_STATUSES, STOPPED_STATUS
from harness.analysis.learnability import arm_check, gate_two_arms, selection_confound
from harness.analysis.power import fisher_seeds, seeds_for_power, spread_seeds
from harness.analysis.sequential import sequential_replay
from harness.analysis.verdict import claim_test
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


@dataclass(frozen=True)
class _Measured:
    """What one claim's data say before Holm and labelling."""

    effect: float = NAN
    ci_lo: float = NAN
    ci_hi: float = NAN
    p: float = NAN
    n_a: int = 0
    n_b: int = 0
    n_stopped: int = 0
    gate: str = ""
    detail: str = ""
    caveats: tuple[str, ...] = ()
    power_input: tuple[Any, ...] = ()  # what seeds_needed needs: (kind, *data)


@dataclass(frozen=True)
class _PerRun:
    """Per-run facts aligned on the runs' index: degenerate flag, the constant predictor's score on the scored
    split, and whether a NaN metric of a finished run was scored as that constant."""

    degenerate: pd.Series
    bars: pd.Series
    filled: pd.Series


def format_effect(statistic: str, value: float | None) -> str:
    """An effect in its statistic's units, as text: +1.2 (points), ratio 0.62, +48 pp, +0.10 of the variance."""
    if value is None or not math.isfinite(value):
        return "–"
    if statistic == "std":
        return f"ratio {value:.2f}"
    if statistic == "degenerate_rate":
        return f"{100 * value:+.0f} pp"
    if statistic == "variance_share":
        return f"{value:+.2f} of the variance"
    return f"{value:+.1f}"


def format_interval(statistic: str, lo: float, hi: float) -> str:
    """A 95% CI in its statistic's units, as text: [+4.7, +5.4], [0.62, 1.10], [+54, +100] pp; "" if undefined."""
    if not (math.isfinite(lo) or math.isfinite(hi)) or math.isnan(lo) or math.isnan(hi):
        return ""
    if statistic == "std":
        return f"[{lo:.2f}, {hi:.2f}]"
    if statistic == "degenerate_rate":
        return f"[{100 * lo:+.0f}, {100 * hi:+.0f}] pp"
    if statistic == "variance_share":
        return f"[{lo:+.2f}, {hi:+.2f}]"
    return f"[{lo:+.1f}, {hi:+.1f}]"


def p_text(p: float) -> str:
    """A p-value in a reason line: three decimals, "<0.001" below that."""
    return "–" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _counted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"].astype(str).isin(COUNTED_STATUSES)]


def _scores(rows: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(rows["score"], errors="coerce").astype(float).to_numpy()


def _finished_nan(runs: pd.DataFrame) -> pd.Series:
    """Runs that finished with an undefined (NaN) metric: fill_finished_nan scores them as the constant."""
    status = runs["status"].astype(str)
    return status.isin(("done", "stopped")) & pd.to_numeric(runs["score"], errors="coerce").isna()


def _missing_note(rows: pd.DataFrame) -> str:
    """How the imported runs without a score were treated (harness import --missing), "" when none were."""
    counts: dict[str, int] = {}
    for text in rows.get("provenance", pd.Series(dtype=str)).dropna().astype(str):
        try:
            rule = json.loads(text).get("missing_score")
        except (ValueError, AttributeError):
            continue
        if rule:
            counts[rule] = counts.get(rule, 0) + 1
    meaning = {
        "constant": "scored as the constant predictor and counted degenerate",
        "diverged": "counted as diverged (degenerate, no score)",
        "failed": "left out as failed",
    }
    return "; ".join(
        f"{k} run(s) without a score in the imported log {meaning.get(rule, rule)} (harness import --missing {rule})"
        for rule, k in counts.items()
    )


def _pair_effect(
    statistic: str, a: np.ndarray, b: np.ndarray, deg_a: np.ndarray, deg_b: np.ndarray,
    comparisons: pd.DataFrame | None, claim: Claim, n_boot: int, n_perm: int, seed: int,
) -> tuple[float, float, float]:  # fmt: skip
    """(effect, ci_lo, ci_hi) of a two-recipe claim: from the comparison table when it has the pair (so the
    verdict and the table show the same interval), else computed with the same methods."""
    if statistic == "degenerate_rate":
        ka, kb = int(deg_a.sum()), int(deg_b.sum())
        lo, hi = newcombe_interval(ka, deg_a.size, kb, deg_b.size)
        return ka / deg_a.size - kb / deg_b.size, lo, hi
    method = "bootstrap_mean_diff" if statistic == "mean" else "bootstrap_std_ratio"
    rows = claim_rows(comparisons, claim.task, claim.a, claim.b) if comparisons is not None else None
    if rows is None or method not in rows:
        res = compare(a, b, degenerate_a=deg_a, degenerate_b=deg_b, n_boot=n_boot, n_perm=min(n_perm, 999), seed=seed)
        rows = {c.method: dataclasses.asdict(c) for c in res}
    row = rows[method]
    return float(row["effect"]), float(row["ci_lo"]), float(row["ci_hi"])


def claim_rows(comparisons: pd.DataFrame, task: str, a: str, b: str) -> dict[str, dict[str, Any]] | None:
    """Method -> comparison row (compare_table) for the pair a vs b, read from the reversed pair if needed."""
    c = comparisons
    if c.empty:
        return None
    key = c["task"].astype(str) == task
    direct = c[key & (c["a"].astype(str) == a) & (c["b"].astype(str) == b)]
    if len(direct):
        return {r["method"]: r for r in direct.to_dict("records")}
    reverse = c[key & (c["a"].astype(str) == b) & (c["b"].astype(str) == a)]
    if len(reverse):
        return {r["method"]: _flip(r) for r in reverse.to_dict("records")}
    return None


def _flip(row: dict[str, Any]) -> dict[str, Any]:
    """The same comparison read from b's side: differences negate, ratios invert, p-values stay."""
    row = dict(row)
    name, lo, hi = row["effect_name"], row["ci_lo"], row["ci_hi"]
    if name in ("mean_diff", "rank_biserial"):
        row["effect"], row["ci_lo"], row["ci_hi"] = -row["effect"], -hi, -lo
    elif name in ("std_ratio", "odds_ratio"):
        with np.errstate(divide="ignore"):
            inv = [1 / np.float64(v) for v in (row["effect"], hi, lo)]
        row["effect"], row["ci_lo"], row["ci_hi"] = inv
    return row


def _by_seed(rows: pd.DataFrame, size: int) -> np.ndarray:
    """Scores of counted runs indexed by init seed (column s - 1), NaN where a seed has none."""
    out = np.full(size, np.nan)
    for seed, score in zip(rows["init_seed"].astype(int), _scores(rows), strict=True):
        if 1 <= seed <= size:
            out[seed - 1] = score
    return out


def _sequential(
    claim: Claim, all_a: pd.DataFrame, all_b: pd.DataFrame, policy: AdaptiveSeeds, level: float
) -> tuple[float, int, str]:
    """Replay the budget's group-sequential test of a mean claim: (stage-wise p, seeds per arm at the stop, caveat)."""
    looks = policy.looks
    granted = min(int(all_a["init_seed"].max()), int(all_b["init_seed"].max()))
    reached = max(1, sum(n <= granted for n in looks))
    a, b = _by_seed(_counted(all_a), looks[-1]), _by_seed(_counted(all_b), looks[-1])
    rep = sequential_replay(a, b, looks, level, policy.spending, claim.direction, reached)
    look, n, crossed = int(rep.look[0]), int(rep.n[0]), bool(rep.crossed[0])
    caveat = (
        f"group-sequential verdict ({policy.spending} spending at α/m = {level:.3g}, looks at "
        f"{', '.join(map(str, looks))} seeds): stopped at look {look} ({n} seeds per arm), z {rep.z[0]:.2f} "
        f"{'crossed' if crossed else 'below'} the boundary {rep.boundary[0]:.2f}; p is the stage-wise p-value"
    )
    return float(rep.p[0]), n, caveat


def _two_recipes(
    ref: PaperReference, claim: Claim, runs: pd.DataFrame, per_run: _PerRun, comparisons: pd.DataFrame | None,
    adaptive: AdaptiveSeeds | None, level: float, n_boot: int, n_perm: int, seed: int,
) -> _Measured:  # fmt: skip
    task = runs[runs["task"].astype(str) == claim.task]
    all_a, all_b = (task[task["recipe"].astype(str) == r] for r in (claim.a, claim.b))
    stopped = int(
        (all_a["status"].astype(str) == STOPPED_STATUS).sum() + (all_b["status"].astype(str) == STOPPED_STATUS).sum()
    )
    ra, rb = _counted(all_a), _counted(all_b)
    missing = [r for r, rows in ((claim.a, ra), (claim.b, rb)) if rows.empty]
    if missing:
        return _Measured(n_a=len(ra), n_b=len(rb), n_stopped=stopped, gate=f"not run here ({', '.join(missing)})")
    caveats = []
    sequential = adaptive is not None and adaptive.ci_width is None and claim.statistic == "mean"
    p_seq = NAN
    if sequential:
        p_seq, n_stop, text = _sequential(claim, all_a, all_b, adaptive, level)
        ra, rb = ra[ra["init_seed"].astype(int) <= n_stop], rb[rb["init_seed"].astype(int) <= n_stop]
        caveats.append(text)
    elif adaptive is not None:
        caveats.append(
            "the adaptive budget did not consider this claim when it stopped adding seeds: a fixed-sample test read "
            "after data-dependent stopping" if adaptive.ci_width is None else
            "seeds were added until each configuration's 95% CI of the mean was narrow enough (not a test)"
        )  # fmt: skip
    a, b = _scores(ra), _scores(rb)
    deg_a, deg_b = (per_run.degenerate.loc[r.index].to_numpy(bool) for r in (ra, rb))
    check_a = arm_check(claim.a, a, deg_a, per_run.bars.loc[ra.index].to_numpy(float))
    check_b = arm_check(claim.b, b, deg_b, per_run.bars.loc[rb.index].to_numpy(float))
    gate = gate_two_arms(claim.statistic, check_a, check_b) or selection_confound(ra, rb, claim.a, claim.b)
    test = claim_test(claim.statistic, claim.direction, a, b, test=claim.test, degenerate_a=deg_a,
                      degenerate_b=deg_b, seed=seed)  # fmt: skip
    if not gate and not math.isfinite(test.pvalue):
        gate = f"fewer than two scored runs a side ({test.n_a} vs {test.n_b})"
    effect, lo, hi = _pair_effect(claim.statistic, a[np.isfinite(a)], b[np.isfinite(b)], deg_a, deg_b,
                                  None if sequential else comparisons, claim, n_boot, n_perm, seed)  # fmt: skip
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    detail = {
        "mean": f"mean {np.mean(fa):.1f} vs {np.mean(fb):.1f}" if fa.size and fb.size else "",
        "std": f"std {np.std(fa, ddof=1):.2f} vs {np.std(fb, ddof=1):.2f}" if fa.size > 1 and fb.size > 1 else "",
        "degenerate_rate": f"{int(deg_a.sum())}/{deg_a.size} vs {int(deg_b.sum())}/{deg_b.size} degenerate",
    }[claim.statistic]
    if stopped:
        caveats.append(
            f"{stopped} early-stopped run(s) left out: the runs compared survived the stopping rule (survivorship), "
            "so their mean and spread are not those of every seed"
        )
    note = _missing_note(pd.concat([ra, rb]))
    if note:
        caveats.append(note)
    filled = int(per_run.filled.loc[ra.index].sum() + per_run.filled.loc[rb.index].sum())
    if filled:
        caveats.append(
            f"{filled} finished run(s) with an undefined metric (constant predictions) scored as the constant "
            "predictor (0) and counted degenerate"
        )
    paper_n = min((c.n for c in (ref.cell(claim.task, claim.a), ref.cell(claim.task, claim.b)) if c and c.n),
                  default=ref.seeds)  # fmt: skip
    if paper_n and min(len(ra), len(rb)) < paper_n:
        caveats.append(f"fewer seeds than the paper ({len(ra)}/{len(rb)} vs {paper_n})")
    power_input = {
        "mean": ("mean", fa, fb),
        "std": ("std", fa, fb),
        "degenerate_rate": ("rate", int(deg_a.sum()), deg_a.size, int(deg_b.sum()), deg_b.size),
    }[claim.statistic]
    p = p_seq if sequential else test.pvalue
    return _Measured(effect, lo, hi, p, len(ra), len(rb), stopped, gate, detail, tuple(caveats), power_input)


def _one_recipe(
    claim: Claim, runs: pd.DataFrame, per_run: _PerRun, curves: pd.DataFrame | None,
    n_boot: int, seed: int,
) -> _Measured:  # fmt: skip
    task = runs[runs["task"].astype(str) == claim.task]
    rows_all = task[task["recipe"].astype(str) == claim.a]
    rows = _counted(rows_all)
    stopped = int((rows_all["status"].astype(str) == STOPPED_STATUS).sum())
    if rows.empty:
        return _Measured(n_stopped=stopped, gate=f"not run here ({claim.a})")
    deg = per_run.degenerate.loc[rows.index].to_numpy(bool)
    gate = arm_check(claim.a, _scores(rows), deg, per_run.bars.loc[rows.index].to_numpy(float)).failure()
    if claim.statistic == "variance_share":
        res = claim_stats.variance_share(rows, deg, claim.direction, claim.margin, n_boot, seed)
    elif claim.statistic == "expected_max_gain":
        res = claim_stats.expected_max_gain(rows, claim.n, claim.direction, claim.margin, n_boot, seed)
    else:
        res = claim_stats.early_stopping_gain(
            curves if curves is not None else pd.DataFrame(columns=["run_id", "eval_index", "val_metric", "fraction"]),
            rows_all, claim.n_start, claim.fraction, claim.keep, claim.direction, claim.margin,
            n_boot=min(n_boot, 200), seed=seed,
        )  # fmt: skip
    caveats = []
    if stopped and claim.statistic != "early_stopping_gain":
        caveats.append(f"{stopped} early-stopped run(s) left out: the runs used survived the stopping rule")
    if claim.margin and claim.direction != "comparable":
        caveats.append(f"tested against a pre-declared smallest effect of {claim.margin:g}")
    return _Measured(res.effect, res.ci_lo, res.ci_hi, res.p, res.n_used, 0, stopped, gate or res.missing,
                     res.detail, tuple(caveats))  # fmt: skip


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


def _label(claim: Claim, x: _Measured, paper: float | None, p_holm: float, alpha: float) -> tuple[str, str, list]:
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
    filled = _finished_nan(runs)
    runs = fill_finished_nan(runs)
    has_bars = {"metric", "majority_val", "majority_test"} <= set(runs)
    per_run = _PerRun(
        is_degenerate(runs, thresholds),
        degenerate_value(runs) if has_bars else pd.Series(np.nan, index=runs.index),
        filled,
    )
    alpha = adaptive.alpha if adaptive is not None and adaptive.ci_width is None else ALPHA
    m = len(ref.claims)
    measured = []
    for i, claim in enumerate(ref.claims):
        if claim.two_recipes:
            measured.append(_two_recipes(ref, claim, runs, per_run, comparisons, adaptive, alpha / m,
                                         n_boot, n_perm, 613 + i))  # fmt: skip
        else:
            measured.append(_one_recipe(claim, runs, per_run, curves, n_boot, 613 + i))
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
            need, (*x.caveats, *extra), claim.where, x.detail, m, float(levels[i]),
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


def verdicts_from_frame(frame: pd.DataFrame) -> tuple[ClaimVerdict, ...]:
    """The records back from verdicts_frame (or the Parquet file it was written to)."""
    out = []
    for row in frame.to_dict("records"):
        pe, need = row["paper_effect"], row["seeds_needed"]
        row["paper_effect"] = None if pe is None or (isinstance(pe, float) and math.isnan(pe)) else float(pe)
        row["seeds_needed"] = None if need is None or need is pd.NA else int(need)
        row["caveats"] = tuple(str(c) for c in (row["caveats"] if row["caveats"] is not None else ()))
        out.append(ClaimVerdict(**{k: row[k] for k in VERDICT_COLUMNS}))
    return tuple(out)
