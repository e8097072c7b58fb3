"""The `[paper]` section of an experiment: published numbers and claims, and our verdict on each claim.

Format (documented in docs/reports.md): `source`, `model`, `seeds`, optional `split`, `notes`;
`results.<task>.<recipe> = {mean, std, median, min, max, degenerate_rate, n}` (x100, rates in [0, 1]);
`[[claims]]` with `claim, task, a, b, statistic (mean|std|degenerate_rate), direction (greater|less)` and
optional `test`, `paper_effect`, `tolerance`, `where`. The verdict takes every effect, interval and
p-value from the analysis layer (`compare_table` rows, or `compare` for a pair outside that table).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.report.tables import ALPHA, DASH, ci, is_missing, md_table, num, pct, pval


class ReportError(ValueError):
    """A report that cannot be made (bad [paper] section, empty store): names the field and the fix."""


STATISTICS = ("mean", "std", "degenerate_rate")
DIRECTIONS = ("greater", "less")
CELL_FIELDS = ("mean", "std", "median", "min", "max", "degenerate_rate", "n")
TESTS = {
    "mean": ("welch_t", "mann_whitney_u", "permutation_mean_diff"),
    "std": ("brown_forsythe", "levene"),
    "degenerate_rate": ("fisher_exact_degenerate",),
}
EFFECT_ROW = {"mean": "bootstrap_mean_diff", "std": "bootstrap_std_ratio", "degenerate_rate": "fisher_exact_degenerate"}
# "setting": the paper's training setting, read by harness/report/deviations.py
TOP_KEYS = {"source", "model", "seeds", "split", "notes", "results", "claims", "setting"}
CLAIM_KEYS = {"claim", "task", "a", "b", "statistic", "direction", "test", "paper_effect", "tolerance", "where"}


@dataclass(frozen=True)
class PaperCell:
    """Numbers the paper printed for one task x recipe (None where it printed none)."""

    mean: float | None = None
    std: float | None = None
    median: float | None = None
    min: float | None = None
    max: float | None = None
    degenerate_rate: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Claim:
    claim: str
    task: str
    a: str  # treatment recipe
    b: str  # reference recipe
    statistic: str = "mean"
    direction: str = "greater"  # a's statistic is greater (or less) than b's
    test: str = ""  # default: the first of TESTS[statistic]
    paper_effect: float | None = None  # stated effect when the paper printed it but not both cells
    tolerance: float | None = None  # |ours - paper| allowed, in the statistic's difference units
    where: str = ""  # e.g. "Figure 3"


@dataclass(frozen=True)
class PaperReference:
    source: str
    model: str = ""
    seeds: int | None = None
    split: str = ""
    notes: tuple[str, ...] = ()
    results: Mapping[str, Mapping[str, PaperCell]] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()

    def cell(self, task: str, recipe: str) -> PaperCell | None:
        return self.results.get(task, {}).get(recipe)


def _number(value: Any, where: str, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"[paper] {where} = {value!r}; must be a number")
    if integer and (not float(value).is_integer() or value < 1):
        raise ReportError(f"[paper] {where} = {value!r}; must be a whole number >= 1")
    return int(value) if integer else float(value)


def parse_paper(raw: Mapping[str, Any] | None) -> PaperReference | None:
    """Validate the free-form `[paper]` table of an ExperimentSpec; None when the experiment has none."""
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise ReportError(f"[paper] must be a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ReportError(f"[paper] unknown key(s) {unknown}; allowed: {sorted(TOP_KEYS)}")
    if not isinstance(raw.get("source", ""), str) or not raw.get("source"):
        raise ReportError("[paper] 'source' is required: e.g. source = \"Zhang et al. 2021, Table 1\"")
    notes = raw.get("notes", [])
    notes = [notes] if isinstance(notes, str) else notes
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ReportError("[paper] 'notes' must be a string or a list of strings")
    results: dict[str, dict[str, PaperCell]] = {}
    for task, recipes in dict(raw.get("results", {})).items():
        if not isinstance(recipes, Mapping):
            raise ReportError(f"[paper.results.{task}] must map recipe names to {{mean = .., std = ..}}")
        for recipe, cell in recipes.items():
            where = f"results.{task}.{recipe}"
            if not isinstance(cell, Mapping):
                raise ReportError(f"[paper] {where} must be a table like {{ mean = 69.5, std = 2.5 }}")
            bad = sorted(set(cell) - set(CELL_FIELDS))
            if bad:
                raise ReportError(f"[paper] {where}: unknown field(s) {bad}; allowed: {list(CELL_FIELDS)}")
            values = {k: _number(v, f"{where}.{k}", integer=k == "n") for k, v in cell.items()}
            rate = values.get("degenerate_rate")
            if rate is not None and not 0 <= rate <= 1:
                raise ReportError(f"[paper] {where}.degenerate_rate = {rate}; a fraction in [0, 1] (0.48 for 48%)")
            results.setdefault(str(task), {})[str(recipe)] = PaperCell(**values)
    claims = []
    raw_claims = raw.get("claims", [])
    if not isinstance(raw_claims, list):
        raise ReportError("[paper] 'claims' must be an array of tables: [[paper.claims]]")
    for i, c in enumerate(raw_claims):
        where = f"claims[{i}]"
        if not isinstance(c, Mapping):
            raise ReportError(f"[paper] {where} must be a table")
        bad = sorted(set(c) - CLAIM_KEYS)
        if bad:
            raise ReportError(f"[paper] {where}: unknown key(s) {bad}; allowed: {sorted(CLAIM_KEYS)}")
        missing = [k for k in ("claim", "task", "a", "b") if not isinstance(c.get(k), str) or not c.get(k)]
        if missing:
            raise ReportError(f"[paper] {where}: missing or empty {missing}")
        stat, direction = c.get("statistic", "mean"), c.get("direction", "greater")
        if stat not in STATISTICS:
            raise ReportError(f"[paper] {where}.statistic = {stat!r}; allowed: {', '.join(STATISTICS)}")
        if direction not in DIRECTIONS:
            raise ReportError(f"[paper] {where}.direction = {direction!r}; allowed: {', '.join(DIRECTIONS)}")
        test = c.get("test", TESTS[stat][0])
        if test not in TESTS[stat]:
            raise ReportError(f"[paper] {where}.test = {test!r}; for statistic {stat!r} use one of {TESTS[stat]}")
        extra = {k: _number(c[k], f"{where}.{k}") for k in ("paper_effect", "tolerance") if k in c}
        claims.append(
            Claim(c["claim"], c["task"], c["a"], c["b"], stat, direction, test, where=str(c.get("where", "")), **extra)
        )
    seeds = _number(raw["seeds"], "seeds", integer=True) if "seeds" in raw else None
    return PaperReference(
        str(raw["source"]),
        str(raw.get("model", "")),
        seeds,
        str(raw.get("split", "")),
        tuple(notes),
        results,
        tuple(claims),
    )


# ---------------------------------------------------------------------------
# Paper table beside ours


def _mean_std(mean: object, std: object, n: object = None) -> str:
    if is_missing(mean):
        return DASH
    text = f"{num(mean)} ± {num(std)}" if not is_missing(std) else num(mean)
    return text + (f" [{int(n)}]" if not is_missing(n) else "")  # type: ignore[call-overload]


def paper_table(ref: PaperReference, summary: pd.DataFrame) -> str:
    """Task x recipe: paper mean ± std [n] | ours mean ± std [n] | ours − paper, plus other printed statistics."""
    ours = {(str(r["task"]), str(r["recipe"])): r for r in summary.to_dict("records")}
    rows = []
    for task, recipes in ref.results.items():
        names = list(dict.fromkeys([*recipes, *(r for t, r in ours if t == task)]))
        for recipe in names:
            cell, mine = recipes.get(recipe), ours.get((task, recipe), {})
            p_n = cell.n if cell and cell.n else ref.seeds
            paper = _mean_std(cell.mean, cell.std, p_n) if cell else "not in the paper"
            our = _mean_std(mine.get("mean"), mine.get("std"), mine.get("n")) if mine else "not run"
            delta = num(mine["mean"] - cell.mean, 1, True) if mine and cell and cell.mean is not None else DASH
            extra = []
            for key in ("median", "min", "max", "degenerate_rate"):
                value = getattr(cell, key) if cell else None
                if value is not None:
                    fmt = pct if key == "degenerate_rate" else num
                    extra.append(f"{key.replace('_', ' ')} {fmt(value)} | {fmt(mine.get(key)) if mine else DASH}")
            rows.append([task, recipe, paper, our, delta, "; ".join(extra) or DASH])
    return md_table(
        [
            "task",
            "recipe",
            "paper mean ± std [seeds]",
            "ours mean ± std [n]",
            "ours − paper",
            "other printed statistics (paper | ours)",
        ],
        rows,
        "llrrrl",
    )


# ---------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    paper_effect: str
    our_effect: str
    direction_reproduced: bool | None  # None: not run / undefined
    significant: bool | None
    test: str
    p_adjusted: float
    paper_in_ci: bool | None
    caveat: str
    note: str = ""


def _rows(comparisons: pd.DataFrame, task: str, a: str, b: str) -> pd.DataFrame:
    c = comparisons
    return c[(c["task"].astype(str) == task) & (c["a"].astype(str) == a) & (c["b"].astype(str) == b)]


def _flip(row: dict[str, Any]) -> dict[str, Any]:
    """The same comparison read from b's side: differences negate, ratios invert, p-values stay."""
    row = dict(row)
    name = row["effect_name"]
    lo, hi = row["ci_lo"], row["ci_hi"]
    if name in ("mean_diff", "rank_biserial"):
        row["effect"], row["ci_lo"], row["ci_hi"] = -row["effect"], -hi, -lo
    elif name in ("std_ratio", "odds_ratio"):
        with np.errstate(divide="ignore"):
            row["effect"], row["ci_lo"], row["ci_hi"] = (
                1 / np.float64(row["effect"]),
                1 / np.float64(hi),
                1 / np.float64(lo),
            )
    return row


def claim_rows(comparisons: pd.DataFrame, claim: Claim) -> dict[str, dict[str, Any]] | None:
    """Method -> comparison row for a claim's pair (a vs b), read from the reversed pair if needed."""
    direct = _rows(comparisons, claim.task, claim.a, claim.b)
    if len(direct):
        return {r["method"]: r for r in direct.to_dict("records")}
    reverse = _rows(comparisons, claim.task, claim.b, claim.a)
    if len(reverse):
        return {r["method"]: _flip(r) for r in reverse.to_dict("records")}
    return None


def _paper_effect(ref: PaperReference, claim: Claim) -> tuple[float | None, float | None]:
    """(difference a − b, ratio a / b for std) from the paper's cells, or the stated effect; None if unpublished."""
    if claim.paper_effect is not None:
        return claim.paper_effect, None
    ca, cb = ref.cell(claim.task, claim.a), ref.cell(claim.task, claim.b)
    va = getattr(ca, claim.statistic) if ca else None
    vb = getattr(cb, claim.statistic) if cb else None
    if va is None or vb is None:
        return None, None
    ratio = va / vb if claim.statistic == "std" and vb else None
    return va - vb, ratio


def verdict(
    ref: PaperReference,
    claim: Claim,
    summary: pd.DataFrame,
    rows: Mapping[str, Mapping[str, Any]] | None,
    scale: str,
    sample_note: str = "",
    p_holm: float = float("nan"),
) -> Verdict:
    """Our verdict on one claim: effect and CI from its comparison rows (method -> row) and the summary;
    significance from `p_holm`, the claim's own one-sided test Holm-adjusted across the experiment's claims
    (harness.analysis.verdict)."""
    diff, ratio = _paper_effect(ref, claim)
    unit = " pp" if claim.statistic == "degenerate_rate" else ""
    scale_diff = 100 if claim.statistic == "degenerate_rate" else 1
    if diff is None:
        paper_text = f"not published{f' (only in {claim.where})' if claim.where else ''}"
    else:
        paper_text = f"{num(diff * scale_diff, 1, True)}{unit}" + (f" (ratio {num(ratio, 2)})" if ratio else "")
    s = {(str(r["task"]), str(r["recipe"])): r for r in summary.to_dict("records")}
    sa, sb = s.get((claim.task, claim.a)), s.get((claim.task, claim.b))
    if rows is None or sa is None or sb is None:
        missing = [r for r, x in ((claim.a, sa), (claim.b, sb)) if x is None] or [f"{claim.a} vs {claim.b}"]
        return Verdict(
            claim, paper_text, f"not run ({', '.join(missing)})", None, None, claim.test, float("nan"), None, scale
        )
    effect = rows.get(EFFECT_ROW[claim.statistic], {})
    lo, hi = effect.get("ci_lo", float("nan")), effect.get("ci_hi", float("nan"))
    if claim.statistic == "mean":
        value, point = float(effect.get("effect", float("nan"))), float(effect.get("effect", float("nan")))
        ours = f"{num(value, 1, True)} {ci(lo, hi)}".strip()
        sign = np.sign(value)
        target, in_ci = diff, (None if diff is None or is_missing(lo) else bool(lo <= diff <= hi))
    elif claim.statistic == "std":
        value = float(effect.get("effect", float("nan")))
        point = float(sa["std"]) - float(sb["std"])
        ours = f"ratio {num(value, 2)} {ci(lo, hi, 2)} (Δ {num(point, 1, True)})".replace("  ", " ")
        sign = np.sign(point) if np.isfinite(point) else np.nan  # a zero std still has a direction
        target = diff
        in_ci = None if ratio is None or is_missing(lo) else bool(lo <= ratio <= hi)
    else:
        point = float(sa["degenerate_rate"]) - float(sb["degenerate_rate"])
        ours = (
            f"{num(point * 100, 0, True)} pp ({int(sa['degenerate_n'])}/{int(sa['n'])} vs "
            f"{int(sb['degenerate_n'])}/{int(sb['n'])}; odds ratio {num(effect.get('effect'), 2)} {ci(lo, hi, 2)})"
        )
        sign = np.sign(point)
        target, in_ci = diff, None
    if claim.tolerance is not None and target is not None:
        in_ci = bool(abs(point - target) <= claim.tolerance)
    wanted = 1 if claim.direction == "greater" else -1
    reproduced = None if np.isnan(sign) else bool(sign == wanted)
    p_adj = float(p_holm)
    significant = None if np.isnan(p_adj) or reproduced is None else bool(reproduced and p_adj < ALPHA)
    caveat = scale + (f"; {sample_note}" if sample_note else "")
    return Verdict(claim, paper_text, ours, reproduced, significant, claim.test, p_adj, in_ci, caveat)


def _yes_no(value: bool | None) -> str:
    return DASH if value is None else ("yes" if value else "no")


TEST_NAMES = {
    "welch_t": "Welch t",
    "mann_whitney_u": "Mann-Whitney U",
    "permutation_mean_diff": "permutation",
    "brown_forsythe": "Brown-Forsythe",
    "levene": "Levene",
    "fisher_exact_degenerate": "Fisher exact",
}
STAT_NAMES = {"mean": "mean (a − b)", "std": "std (a / b)", "degenerate_rate": "degenerate rate (a − b)"}


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """The verdict rows; notes on single verdicts become † footnotes under the table."""
    rows, notes = [], list(dict.fromkeys(v.note for v in verdicts if v.note))
    for v in verdicts:
        c = v.claim
        sig = _yes_no(v.significant)
        if not is_missing(v.p_adjusted):
            sig += f" ({TEST_NAMES.get(v.test, v.test)}, one-sided p_Holm {pval(v.p_adjusted).strip('*')})"
        rows.append(
            [
                c.claim,
                c.task,
                f"{c.a} vs {c.b}",
                f"{STAT_NAMES[c.statistic]}, expect {c.direction}",
                v.paper_effect,
                v.our_effect,
                _yes_no(v.direction_reproduced),
                sig,
                _yes_no(v.paper_in_ci),
                v.caveat + (f" {'†' * (notes.index(v.note) + 1)}" if v.note else ""),
            ]
        )
    table = md_table(
        [
            "claim",
            "task",
            "a vs b",
            "statistic",
            "paper effect",
            "our effect [95% CI]",
            "direction reproduced",
            "significant",
            "paper effect within ours",
            "caveat (scale)",
        ],
        rows,
        "lllllrccll",
    )
    return "\n\n".join([table, *(f"{'†' * (i + 1)} {n}" for i, n in enumerate(notes))])


def with_note(v: Verdict, note: str) -> Verdict:
    return dataclasses.replace(v, note=note)
