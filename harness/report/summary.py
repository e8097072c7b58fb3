"""The first screen of a report: one line per claim (claim, paper's effect, ours [95% CI], label), from the
verdict frame.

The verdict frame (`analysis/verdicts.parquet`, one row per claim) has at least the columns of
VERDICT_COLUMNS. Effects are read by their kind, from the `effect_kind` column when the frame has one,
else from the statistic (EFFECT_KINDS): a difference a − b (means, in score points), a ratio a / b (stds)
a difference of rates (degenerate rates, stored as fractions, shown in percentage points), a difference of
variance shares (init − order, fractions of the variance) or a gain in score points (Dodge et al.'s expected
maximum and early-stopping gains: not a difference of two recipes' means, so not on their axis). `effect`,
`ci_lo`, `ci_hi` and `paper_effect` are all in that one kind, so ours and the paper's can be drawn on one
axis; `paper_effect` is NaN where the paper printed no number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.report.tables import DASH, is_missing, md_table, num

VERDICT_COLUMNS = (
    "claim", "task", "a", "b", "statistic", "direction", "effect", "ci_lo", "ci_hi", "paper_effect", "label",
)  # fmt: skip
# The report folder's verdict table: one row per claim (VERDICT_COLUMNS and the rest of ClaimVerdict, + confounds)
VERDICTS_CSV = "verdicts.csv"
LABELS = ("reproduced", "not reproduced", "inconclusive", "not testable here")


@dataclass(frozen=True)
class EffectKind:
    """How an effect is read: its null value, its unit, how it is printed and whether its axis is logarithmic."""

    name: str
    null: float
    log: bool = False
    scale: float = 1.0  # stored value x scale = shown value
    unit: str = ""
    prefix: str = ""
    digits: int = 1
    signed: bool = True
    min_pad: float = 0.5  # the least margin around a forest panel's values, in stored units

    def text(self, value: object) -> str:
        if is_missing(value):
            return DASH
        return f"{self.prefix}{num(float(value) * self.scale, self.digits, self.signed)}{self.unit}"  # type: ignore[arg-type]

    def interval(self, lo: object, hi: object) -> str:
        if is_missing(lo) or is_missing(hi):
            return ""
        lo_text, hi_text = (num(float(v) * self.scale, self.digits) for v in (lo, hi))  # type: ignore[arg-type]
        return f"[{lo_text}, {hi_text}]"


KINDS = {
    "difference": EffectKind("difference", 0.0),
    "ratio": EffectKind("ratio", 1.0, log=True, prefix="ratio ", digits=2, signed=False),
    "rate difference": EffectKind("rate difference", 0.0, scale=100.0, unit=" pp", digits=0, min_pad=0.01),
    "share difference": EffectKind("share difference", 0.0, unit=" of the variance", digits=2, min_pad=0.02),
    "expected-max gain": EffectKind("expected-max gain", 0.0),
    "early-stopping gain": EffectKind("early-stopping gain", 0.0),
}
EFFECT_KINDS = {
    "mean": "difference", "std": "ratio", "degenerate_rate": "rate difference", "variance_share": "share difference",
    "expected_max_gain": "expected-max gain", "early_stopping_gain": "early-stopping gain",
}  # fmt: skip
AXIS_LABELS = {
    "difference": "difference of means a − b (score points)",
    "ratio": "ratio of stds a / b (log scale)",
    "rate difference": "difference of degenerate rates a − b (percentage points)",
    "share difference": "variance share of the init seed − share of the order seed",
    "expected-max gain": "E[best of n seeds] − E[best of 1] (score points)",
    "early-stopping gain": "early stopping − the same budget without it (score points)",
}


def kind_of(row: dict) -> EffectKind:
    """The effect kind of one verdict row: its `effect_kind`, else its statistic's; a plain difference else."""
    name = row.get("effect_kind")
    if not isinstance(name, str) or name not in KINDS:
        name = EFFECT_KINDS.get(str(row.get("statistic")), "difference")
    return KINDS[name]


def check_frame(verdicts: pd.DataFrame) -> None:
    missing = [c for c in VERDICT_COLUMNS if c not in verdicts.columns]
    if missing:
        raise ValueError(f"verdict frame lacks column(s) {missing}; it needs {list(VERDICT_COLUMNS)}")
    bad = sorted(set(verdicts["label"].astype(str)) - set(LABELS))
    if bad:
        raise ValueError(f"verdict frame has label(s) {bad}; allowed: {list(LABELS)}")


def _why(row: dict) -> str:
    reason = "" if is_missing(row.get("reason")) else str(row.get("reason") or "")
    need = row.get("seeds_needed")
    if row["label"] == "inconclusive" and not is_missing(need) and math.isfinite(float(need)):
        reason = f"{reason}; " if reason else ""
        reason += f"~{int(need)} seeds per arm would settle it"
    return reason or DASH


def summary_rows(verdicts: pd.DataFrame) -> list[list[str]]:
    """[claim, task, paper, ours [95% CI], label, why] per claim, in the frame's order."""
    check_frame(verdicts)
    rows = []
    for row in verdicts.to_dict("records"):
        kind = kind_of(row)
        paper = "not published" if is_missing(row["paper_effect"]) else kind.text(row["paper_effect"])
        ours = f"{kind.text(row['effect'])} {kind.interval(row['ci_lo'], row['ci_hi'])}".strip()
        arms = f"{row['a']} vs {row['b']}" if not is_missing(row["b"]) and row["b"] else str(row["a"])
        claim = f"{row['claim']} ({arms})"  # a one-recipe claim (Dodge et al.'s) names its one arm
        why, confound = _why(row), row.get("confounds")
        if not is_missing(confound) and str(confound):
            lead = f"{why}; " if why != DASH else ""
            why = f"{lead}**confounded**: the arms also differ in {confound} (the paper's arms do not)"
        rows.append([claim, str(row["task"]), paper, ours, f"**{row['label']}**", why])
    return rows


def summary_table(verdicts: pd.DataFrame) -> str:
    """The first screen's table: one line per claim."""
    headers = ["claim", "task", "paper's effect", "ours [95% CI]", "verdict", "why"]
    return md_table(headers, summary_rows(verdicts), "lllrll")


def label_counts(verdicts: pd.DataFrame) -> str:
    """'2 reproduced, 1 inconclusive of 3 claims' (labels in LABELS order, absent ones left out)."""
    counts = verdicts["label"].astype(str).value_counts()
    parts = [f"{int(counts[lab])} {lab}" for lab in LABELS if lab in counts]
    return f"{', '.join(parts)} of {len(verdicts)} claim{'s' if len(verdicts) != 1 else ''}"


SUMMARY_NOTE = (
    "Paper's effect: the paper's printed numbers as a − b of the claimed statistic (for a spread, the ratio of "
    "stds a / b; for degenerate runs, the difference of rates in percentage points); ours: the same effect with "
    "its 95% CI. Labels: reproduced (the claim's one-sided test significant after Holm's correction, in the "
    "paper's direction); not reproduced (the paper's effect lies outside our CI); inconclusive (neither); not "
    "testable here (an arm at the constant predictor, no degenerate runs in either arm for a rate claim, or "
    "checkpoints selected differently per arm). The verdict table below gives each test."
)
