"""The `[paper]` section in a report: the paper's table beside ours, and the verdict records rendered.

Parsing lives in harness/experiment/paper.py and every verdict is computed in harness/analysis/verdicts/claims.py
(`ClaimVerdict` records, also written as analysis/verdicts.parquet); this module only formats them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.analysis.verdicts.claims import TEST_NAMES, ClaimVerdict, format_effect, format_interval
from harness.experiment.paper import Claim, PaperCell, PaperError, PaperReference, parse_paper
from harness.report.tables import DASH, is_missing, md_table, num, pct, pval

ReportError = PaperError  # one error type for a report that cannot be made (bad [paper], empty store)
Verdict = ClaimVerdict  # the record a verdict row renders
__all__ = ["Claim", "PaperCell", "PaperReference", "ReportError", "Verdict", "paper_table", "parse_paper",
           "verdict_table"]  # fmt: skip


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


STAT_NAMES = {
    "mean": "mean (a − b)",
    "std": "std (a / b)",
    "degenerate_rate": "degenerate rate (a − b)",
    "variance_share": "init − order variance share",
    "expected_max_gain": "E[best of n] − E[best of 1]",
    "early_stopping_gain": "early stopping − same budget",
}


def _effect_text(v: ClaimVerdict) -> str:
    text = f"{format_effect(v.statistic, v.effect)} {format_interval(v.statistic, v.ci_lo, v.ci_hi)}".strip()
    return text + (f" ({v.detail})" if v.detail else "")


def verdict_table(verdicts: Sequence[ClaimVerdict], scale: str = "") -> str:
    """One row per verdict record: the claim, its label and reason, p_Holm, our effect with its CI, the
    paper's; caveats (and the `scale` line of the report, if given) in the last column."""
    rows = []
    for v in verdicts:
        pair = f"{v.a} vs {v.b}" if v.b else v.a
        expect = "comparable" if v.direction == "comparable" else f"expect {v.direction}"
        paper = format_effect(v.statistic, v.paper_effect) if v.paper_effect is not None else "not printed"
        if v.paper_effect is None and v.where:
            paper += f" (only in {v.where})"
        p = f"{pval(v.p_holm).strip('*')} ({TEST_NAMES.get(v.test, v.test)})" if not is_missing(v.p_holm) else DASH
        label = f"**{v.label}**" + (f" ({v.seeds_needed} seeds per arm would settle it)" if v.seeds_needed else "")
        rows.append(
            [v.claim, v.task, pair, f"{STAT_NAMES.get(v.statistic, v.statistic)}, {expect}", label, v.reason, p,
             _effect_text(v), paper, "; ".join([*([scale] if scale else []), *v.caveats]) or DASH]
        )  # fmt: skip
    return md_table(
        ["claim", "task", "a vs b", "statistic", "verdict", "why", "p_Holm (one-sided test)", "our effect [95% CI]",
         "paper effect", "caveats"],
        rows, "llllllrrll",
    )  # fmt: skip
