"""The forest plot: one row per claim, our effect with its 95% CI beside the paper's printed effect.

One panel per kind of effect (a difference of means, a ratio of stds on a log axis, a difference of
degenerate rates, a difference of variance shares, Dodge et al.'s gains), since they share no axis; each
row names the claim and its task on the left and the verdict's label on the right, coloured by label; a claim
tested against a margin (Dodge et al.'s "comparable" shares, a smallest claimed gain) shows it. A CI
end beyond the axis (an infinite odds bound, a ratio CI reaching 0) is drawn to the edge with an arrow.
Input: the verdict frame of harness.report.summary (one experiment), or several with an `experiment` column (one paper).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from harness.report.plots import DPI, save_figure
from harness.report.summary import AXIS_LABELS, KINDS, LABELS, EffectKind, check_frame, kind_of

LABEL_COLORS = {
    "reproduced": "#009E73",
    "not reproduced": "#D55E00",
    "inconclusive": "#E69F00",
    "not testable here": "#888888",
}
PAPER_MARK = {"marker": "D", "s": 46, "facecolors": "none", "edgecolors": "#000000", "linewidths": 1.3, "zorder": 4}
MARGIN_BAND = {"color": "#000000", "alpha": 0.09, "linewidth": 0, "zorder": 1}
MARGIN_LINE = {"color": "#000000", "linestyle": ":", "linewidth": 1.4, "zorder": 1}
ROW_H, WRAP = 0.46, 52


def row_label(row: Mapping, group_col: str | None) -> str:
    head = f"{row[group_col]}: " if group_col and not _missing(row.get(group_col)) else ""
    text = f"{head}{row['claim']} [{row['task']}]"
    return "\n".join(textwrap.wrap(text, WRAP)[:3])


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _estimated(row: Mapping, kind: EffectKind) -> bool:
    effect = row["effect"]
    return not _missing(effect) and bool(np.isfinite(effect)) and (effect > 0 or not kind.log)


def _finite(values: list[float], kind: EffectKind) -> list[float]:
    out = [float(v) for v in values if v is not None and np.isfinite(v)]
    return [v for v in out if v > 0] if kind.log else out


def axis_limits(rows: list[dict], kind: EffectKind) -> tuple[float, float]:
    """x-limits that hold every finite point estimate, CI end and paper effect, the null value and the margins."""
    margins = [] if kind.log else [kind.null + s * margin_of(r) for r in rows for s in (-1, 1) if margin_of(r) > 0]
    points = [r[k] for r in rows for k in ("effect", "ci_lo", "ci_hi", "paper_effect")]
    values = _finite([kind.null, *points, *margins], kind)
    lo, hi = min(values), max(values)
    if kind.log:
        lo, hi = math.log(lo), math.log(hi)
        pad = max(0.08 * (hi - lo), 0.05)
        return math.exp(lo - pad), math.exp(hi + pad)
    pad = max(0.08 * (hi - lo), kind.min_pad)
    return lo - pad, hi + pad


def _minor_tick(value: float, _pos: object = None) -> str:
    """Label the 2s and 5s of a log axis (0.2, 0.5, 2, 5, 20 ...) by their leading digit, so ratios below 1
    get labels too."""
    return f"{value:g}" if f"{value:.0e}"[0] in "25" else ""


def margin_of(row: Mapping) -> float:
    """The claim's pre-declared margin (0 where none, or in a table written before margins were kept)."""
    value = row.get("margin")
    return 0.0 if _missing(value) or not np.isfinite(float(value)) else float(value)


def _margin(ax, row: Mapping, kind: EffectKind, y: float) -> None:
    """What the claim is tested against, where it is not the null line: the band |effect| < margin of a
    "comparable" claim, the smallest claimed gain of a "greater" one."""
    m = margin_of(row)
    if m <= 0 or kind.log:
        return
    if row["direction"] == "comparable":
        ax.fill_betweenx([y - 0.32, y + 0.32], kind.null - m, kind.null + m, **MARGIN_BAND)
    else:
        edge = kind.null + m if row["direction"] == "greater" else kind.null - m
        ax.plot([edge, edge], [y - 0.32, y + 0.32], **MARGIN_LINE)


def _panel(ax, rows: list[dict], kind: EffectKind, group_col: str | None) -> None:
    n = len(rows)
    lo_lim, hi_lim = axis_limits(rows, kind)
    if kind.log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_tick))
    ax.set_xlim(lo_lim, hi_lim)
    ax.axvline(kind.null, color="#555555", linestyle="--", linewidth=1, zorder=1)
    for i, row in enumerate(rows):
        y = n - 1 - i
        _margin(ax, row, kind, y)
        color = LABEL_COLORS.get(str(row["label"]), "#444444")
        effect, lo, hi = (row[k] for k in ("effect", "ci_lo", "ci_hi"))
        if _estimated(row, kind):
            low = lo if not _missing(lo) and np.isfinite(lo) and (lo > 0 or not kind.log) else lo_lim
            high = hi if not _missing(hi) and np.isfinite(hi) else hi_lim
            low, high = max(low, lo_lim), min(high, hi_lim)
            ax.plot([low, high], [y, y], color=color, linewidth=2.2, solid_capstyle="butt", zorder=2)
            for end, edge, mark in ((low, lo_lim, "<"), (high, hi_lim, ">")):
                if end == edge:  # the interval goes on beyond the axis
                    ax.plot([end], [y], marker=mark, color=color, markersize=6, zorder=3, clip_on=False)
            ax.plot([effect], [y], marker="o", color=color, markersize=7, zorder=3)
        if paper_drawn(row):
            ax.scatter([row["paper_effect"]], [y], **PAPER_MARK)
    ax.set_ylim(-0.7, n - 0.3)
    ys = [n - 1 - i for i in range(n)]
    ax.set_yticks(ys, [row_label(r, group_col) for r in rows], fontsize=7.5)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(ys, [str(r["label"]) + ("" if _estimated(r, kind) else "\n(no estimate)") for r in rows],
                     fontsize=7.5)  # fmt: skip
    for tick, r in zip(right.get_yticklabels(), rows, strict=True):
        tick.set_color(LABEL_COLORS.get(str(r["label"]), "#444444"))
    right.tick_params(length=0)
    right.spines[["top", "right", "left"]].set_visible(False)
    ax.set_xlabel(AXIS_LABELS[kind.name])
    if kind.scale != 1:  # rates are stored as fractions: label the ticks in percentage points
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * kind.scale:+.0f}" if v else "0"))
    ax.grid(axis="x", alpha=0.3)


def paper_drawn(row: Mapping) -> bool:
    """Whether a claim's row gets the paper's mark: a printed effect that its axis can show."""
    paper = row["paper_effect"]
    return not _missing(paper) and bool(np.isfinite(paper)) and (paper > 0 or not kind_of(row).log)


def forest_caption(verdicts: pd.DataFrame) -> str:
    """The figure's caption, naming the paper's effect only when at least one is drawn."""
    if any(paper_drawn(r) for r in verdicts.to_dict("records")):
        return "Forest plot: our effect with its 95% CI beside the paper's printed effect, one row per claim"
    return "Forest plot: our effect with its 95% CI, one row per claim (the paper printed no effect to compare)"


def forest_plot(verdicts: pd.DataFrame, path: Path, title: str = "", group_col: str | None = None) -> Path | None:
    """Draw the verdict frame's claims as a forest plot into `path`; None when there is no claim."""
    if verdicts.empty:
        return None
    check_frame(verdicts)
    records = verdicts.to_dict("records")
    panels = {name: [r for r in records if kind_of(r).name == name] for name in KINDS}
    panels = {name: rows for name, rows in panels.items() if rows}
    heights = [ROW_H * len(rows) + 0.9 for rows in panels.values()]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9.5, sum(heights) + 0.9), squeeze=False, layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for ax, (name, rows) in zip(axes[:, 0], panels.items(), strict=True):
        _panel(ax, rows, KINDS[name], group_col)
    if title:
        fig.suptitle(title, fontsize=10)
    present = [lab for lab in LABELS if lab in set(verdicts["label"].astype(str))]
    handles = [
        Line2D([], [], color=LABEL_COLORS[lab], marker="o", linewidth=2.2, label=f"ours: {lab}") for lab in present
    ]
    if any(paper_drawn(r) for r in records):
        handles.append(Line2D([], [], marker="D", linestyle="", markerfacecolor="none", markeredgecolor="#000000",
                              label="paper's printed effect"))  # fmt: skip
    rules = {str(r["direction"]) for r in records if margin_of(r) > 0 and not kind_of(r).log}
    if "comparable" in rules:
        handles.append(Patch(facecolor="#000000", alpha=0.09, label="comparable: within the claim's margin"))
    if rules - {"comparable"}:
        handles.append(Line2D([], [], **MARGIN_LINE, label="smallest effect claimed"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), frameon=False, fontsize=8)
    return save_figure(fig, path, DPI)


def paper_forest(frames: Mapping[str, pd.DataFrame], path: Path, title: str = "") -> Path | None:
    """One forest plot of every claim of a paper: `frames` maps an experiment's name to its verdict frame."""
    parts = [f.assign(experiment=name) for name, f in frames.items() if not f.empty]
    if not parts:
        return None
    return forest_plot(pd.concat(parts, ignore_index=True), path, title, group_col="experiment")
