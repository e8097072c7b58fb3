"""Report figures (matplotlib, Agg): one PNG per kind, one panel per task, recipe colours fixed per report.

Every function takes frames from the store or the analysis layer, draws, saves to `path` and returns it
(None when there is nothing to draw). Colours: the Okabe-Ito palette (colour-blind safe), assigned to
recipes in experiment order, so a recipe has the same colour in every figure of a report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
OUTCOME_COLORS = {"non-degenerate": "#0072B2", "degenerate": "#D55E00", "diverged": "#000000", "stopped": "#999999"}
METRIC_LABELS = {
    "accuracy": "accuracy (%)",
    "f1": "F1 (%)",
    "acc_f1": "mean of accuracy and F1 (%)",
    "matthews": "Matthews corr. (×100)",
    "spearman": "Spearman ρ (×100)",
    "pearson": "Pearson r (×100)",
}
DPI = 130
PANEL_W, PANEL_H = 3.6, 3.2
MAX_COLS = 4
MIN_W = 5.6  # inches: room for a one-line legend under a single panel
DEGENERATE_MARK, BASELINE_MARK = "degenerate-seeds", "degenerate-baseline"  # gids the legend looks for

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(str(metric).lower(), f"{metric} (×100)")


def group_colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (recipe or experiment), in the given order; cycles past eight."""
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(dict.fromkeys(names))}


@dataclass(frozen=True)
class Group:
    """One box of a strip+box panel: the scores of one recipe (or experiment), NaN = diverged."""

    label: str
    scores: np.ndarray
    degenerate: np.ndarray
    color: str


def _grid(n: int, panel_w: float = PANEL_W, panel_h: float = PANEL_H, sharey: bool = False):
    cols = min(n, MAX_COLS)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(max(panel_w * cols, MIN_W), panel_h * rows + 0.6),
        squeeze=False,
        layout="constrained",
        sharey=sharey,
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save_figure(fig, path: Path, dpi: int = DPI) -> Path:
    """Write `fig` to `path` (its folder made if needed) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _tick_labels(ax, labels: Sequence[str]) -> None:
    ax.set_xticks(range(len(labels)))
    widest = max((len(line) for s in labels for line in s.splitlines()), default=0)
    long = len(labels) > 4 or widest * len(labels) > 40
    ax.set_xticklabels(labels, rotation=30 if long else 0, ha="right" if long else "center")


def _draw_groups(ax, groups: Sequence[Group], seed: int) -> None:
    """Box (quartiles, whiskers at 1.5 IQR, no fliers) plus every seed as a jittered dot; degenerate seeds as ×."""
    rng = np.random.default_rng(seed)
    for i, g in enumerate(groups):
        x = g.scores[~np.isnan(g.scores)]
        deg = g.degenerate[~np.isnan(g.scores)]
        if not x.size:
            continue
        ax.boxplot(
            x,
            positions=[i],
            widths=0.55,
            showfliers=False,
            patch_artist=True,
            boxprops={"facecolor": g.color, "alpha": 0.25, "edgecolor": g.color},
            medianprops={"color": g.color, "linewidth": 2},
            whiskerprops={"color": g.color},
            capprops={"color": g.color},
        )
        jitter = rng.uniform(-0.18, 0.18, x.size)
        ax.scatter(i + jitter[~deg], x[~deg], s=16, color=g.color, alpha=0.85, zorder=3, linewidths=0)
        if deg.any():
            ax.scatter(i + jitter[deg], x[deg], s=28, color=g.color, marker="x", zorder=3, linewidths=1.4,
                       gid=DEGENERATE_MARK)  # fmt: skip
    ax.grid(axis="y", alpha=0.3)


def _broken(ax) -> tuple:
    """Replace `ax` by two stacked axes sharing x: a tall upper one and a short lower one."""
    fig = ax.get_figure()
    grid = ax.get_subplotspec().subgridspec(2, 1, height_ratios=[4, 1.3], hspace=0.04)
    ax.remove()
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    top.spines["bottom"].set_visible(False)
    top.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    kw = {"marker": [(-1, -0.5), (1, 0.5)], "markersize": 9, "linestyle": "none", "color": "#555555",
          "mec": "#555555", "mew": 1, "clip_on": False}  # fmt: skip
    top.plot([0], [0], transform=top.transAxes, **kw)
    bottom.plot([0], [1], transform=bottom.transAxes, **kw)
    return top, bottom


def strip_box(ax, groups: Sequence[Group], baseline: float | None, seed: int = 0) -> list:
    """Strip + box plot of `groups` in `ax`; returns the axes that hold the panel (title and labels go on the first).

    When degenerate seeds lie far below the rest (focus_limits), the panel is broken in two: the upper axis
    holds the spread of the other seeds, a short lower one the seeds below it, so every seed stays on an axis."""
    limits = focus_limits(groups)
    panel = [ax] if limits is None else list(_broken(ax))
    for part in panel:
        _draw_groups(part, groups, seed)
    if limits is not None:
        top, bottom = panel
        top.set_ylim(*limits)
        finite = np.concatenate([g.scores[~np.isnan(g.scores)] for g in groups])
        low = finite[finite < limits[0]]
        pad = max(0.15 * float(np.ptp(low)), 0.02 * (limits[1] - limits[0]), 0.5)
        bottom.set_ylim(float(low.min()) - pad, min(float(low.max()) + pad, limits[0]))
    for part in panel:
        lo, hi = part.get_ylim()
        if baseline is not None and np.isfinite(baseline) and lo <= baseline <= hi:
            part.axhline(baseline, color="#555555", linestyle="--", linewidth=1, zorder=1, gid=BASELINE_MARK)
    labels = []
    for g in groups:
        n_div = int(np.isnan(g.scores).sum())
        labels.append(f"{g.label}\n(n={g.scores.size}" + (f", {n_div} div.)" if n_div else ")"))
    _tick_labels(panel[-1], labels)
    panel[-1].set_xlim(-0.6, len(groups) - 0.4)
    return panel


def focus_limits(groups: Sequence[Group], gap: float = 1.5) -> tuple[float, float] | None:
    """y-limits around the non-degenerate seeds when the degenerate ones lie more than `gap` times that spread
    below them (an STS-B run at 0 beside runs at 86-90 would squash the spread into a sliver); None otherwise.
    strip_box then draws the seeds below these limits on a second, lower axis."""
    finite = [(g.scores[~np.isnan(g.scores)], g.degenerate[~np.isnan(g.scores)]) for g in groups]
    good = np.concatenate([x[~d] for x, d in finite]) if finite else np.array([])
    bad = np.concatenate([x[d] for x, d in finite]) if finite else np.array([])
    if good.size == 0 or bad.size == 0:
        return None
    spread = max(float(np.ptp(good)), 1.0)
    if float(good.min() - bad.min()) <= gap * spread:
        return None
    return float(good.min() - 0.25 * spread), float(good.max() + 0.1 * spread)


def strip_box_legend(fig, baseline_label: str) -> None:
    """A legend of what the strip plots of `fig` draw: the × and the dashed baseline only where some panel has
    one (a baseline below every panel's range is not drawn, so it is not explained either)."""
    drawn = {artist.get_gid() for ax in fig.axes for artist in (*ax.lines, *ax.collections)}
    handles = [Line2D([], [], marker="o", linestyle="", color="#444444", label="one seed")]
    if DEGENERATE_MARK in drawn:
        handles.append(Line2D([], [], marker="x", linestyle="", color="#444444", label="degenerate seed"))
    if BASELINE_MARK in drawn:
        handles.append(Line2D([], [], linestyle="--", color="#555555", label=baseline_label))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)


def seed_distributions(
    runs: pd.DataFrame,
    degenerate: pd.Series,
    lines: Mapping[str, float | None],
    colors: Mapping[str, str],
    path: Path,
    score_label: str = "score of the selected checkpoint",
) -> Path | None:
    """Per task: strip + box plot of the seeds' scores of every recipe (diverged runs counted under the ticks)."""
    counted = runs[runs["status"].astype(str).isin(("done", "diverged"))]  # early-stopped runs are shown apart
    tasks = list(dict.fromkeys(counted["task"].astype(str)))
    if not tasks:
        return None
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        rows = counted[counted["task"].astype(str) == task]
        groups = []
        for recipe in dict.fromkeys(rows["recipe"].astype(str)):
            r = rows[rows["recipe"].astype(str) == recipe]
            groups.append(
                Group(
                    recipe,
                    r["score"].to_numpy(dtype=float),
                    degenerate.loc[r.index].to_numpy(bool),
                    colors.get(recipe, "#444444"),
                )
            )
        panel = strip_box(ax, groups, lines.get(task))
        panel[0].set_title(task)
        panel[0].set_ylabel(f"{metric_label(rows['metric'].iloc[0])}\n{score_label}")
    strip_box_legend(fig, "degenerate at or below")
    return save_figure(fig, path)


def degenerate_lines(rules: pd.DataFrame, summary: pd.DataFrame) -> dict[str, float | None]:
    """Per task, the score at or below which a run is degenerate: the threshold, or the median majority baseline."""
    out: dict[str, float | None] = {}
    for r in rules.to_dict("records"):
        task = str(r["task"])
        if r["source"] == "majority baseline":
            rows = summary[summary["task"].astype(str) == task]
            value = pd.to_numeric(rows["majority"], errors="coerce").median() if len(rows) else float("nan")
            out[task] = float(value) if pd.notna(value) else None
        else:
            out[task] = float(r["threshold"])
    return out


def degenerate_rates(
    summary: pd.DataFrame, colors: Mapping[str, str], path: Path, label_col: str = "recipe", xlabel: str = "task"
) -> Path:
    """Grouped bars: the degenerate-run rate of every configuration with its Wilson 95% interval and k/n."""
    tasks = list(dict.fromkeys(summary["task"].astype(str)))
    groups = list(dict.fromkeys(summary[label_col].astype(str)))
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(
        figsize=(max(MIN_W, 1.6 + len(tasks) * (0.5 + 0.45 * len(groups))), 3.6), layout="constrained"
    )
    for j, name in enumerate(groups):
        sub = summary[summary[label_col].astype(str) == name]
        sub = sub.set_index(sub["task"].astype(str))
        xs, ys, lo, hi, labels = [], [], [], [], []
        for i, task in enumerate(tasks):
            if task not in sub.index:
                continue
            r = sub.loc[task]
            rate = float(r["degenerate_rate"]) * 100
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(rate)
            lo.append(rate - float(r["degenerate_lo"]) * 100)
            hi.append(float(r["degenerate_hi"]) * 100 - rate)
            labels.append(f"{int(r['degenerate_n'])}/{int(r['n'])}")
        ax.bar(xs, ys, width * 0.9, color=colors.get(name, "#444444"), label=name, alpha=0.85)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#333333", capsize=3, linewidth=1)
        ax.scatter(xs, ys, marker="_", s=260 * width, color=colors.get(name, "#444444"), linewidths=3, zorder=3)
        for x, y, up, text in zip(xs, ys, hi, labels, strict=True):
            ax.text(x, y + up + 1.5, text, ha="center", va="bottom", fontsize=7, rotation=90 if len(groups) > 3 else 0)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("degenerate runs (% of runs)")
    ax.set_xlabel(xlabel)
    ax.set_title("error bars: 95% Wilson interval; labels: degenerate / total runs", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", frameon=False, title=label_col)
    return save_figure(fig, path)


def expected_max(
    emp: pd.DataFrame,
    metrics: Mapping[str, str],
    colors: Mapping[str, str],
    path: Path,
    label_col: str = "recipe",
    panel_col: str = "task",
) -> Path | None:
    """Per panel (task): expected maximum validation score vs number of trials, with the bootstrap 95% band."""
    if emp.empty:
        return None
    panels = list(dict.fromkeys(emp[panel_col].astype(str)))
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        sub = emp[emp[panel_col].astype(str) == panel]
        for name, g in sub.groupby(sub[label_col].astype(str), sort=False):
            color = colors.get(name, "#444444")
            ax.plot(g["n"], g["emp"], color=color, label=name, linewidth=1.8)
            ax.fill_between(g["n"], g["band_lo"], g["band_hi"], color=color, alpha=0.18, linewidth=0)
        column = str(sub["column"].iloc[0]) if "column" in sub else "val_best"
        split = "validation" if column.startswith("val") else ("test" if "test" in column else "reported")
        task = panel.split("/")[0]
        ax.set_title(panel)
        ax.set_xlabel("number of trials n (seeds)")
        ax.set_ylabel(f"expected max {split} {metric_label(metrics.get(task, ''))}")
        ax.set_xlim(1, max(2, int(sub["n"].max())))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=colors.get(n, "#444444"), label=n) for n in dict.fromkeys(emp[label_col].astype(str))
    ]
    handles.append(Patch(color="#888888", alpha=0.3, label="95% bootstrap band"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    return save_figure(fig, path)


def outcome_of(runs: pd.DataFrame, degenerate: pd.Series) -> pd.Series:
    """Final outcome per run for colouring curves: diverged, stopped, degenerate or non-degenerate."""
    status = runs["status"].astype(str)
    out = np.where(degenerate.loc[runs.index].to_numpy(bool), "degenerate", "non-degenerate")
    out = np.where(status == "stopped", "stopped", out)
    out = np.where(status == "diverged", "diverged", out)
    return pd.Series(out, index=runs.index)


MAX_LINES = 12  # an outcome with more seeds than this in one panel is drawn as a band, not as lines


def _band(ax, segments: list[np.ndarray], color: str) -> None:
    """Median, interquartile and 10-90% band across seeds at each evaluation (runs that stopped early drop out);
    segments: one [evaluations, 2] array (x, value) per seed."""
    longest = max(len(s) for s in segments)
    stacked = np.full((len(segments), longest, 2), np.nan)
    for i, seg in enumerate(segments):
        stacked[i, : len(seg)] = seg
    x = np.nanmedian(stacked[:, :, 0], axis=0)
    q = np.nanquantile(stacked[:, :, 1], [0.1, 0.25, 0.5, 0.75, 0.9], axis=0)
    ax.fill_between(x, q[0], q[4], color=color, alpha=0.15, linewidth=0)
    ax.fill_between(x, q[1], q[3], color=color, alpha=0.3, linewidth=0)
    ax.plot(x, q[2], color=color, linewidth=2)


def eval_curves(curves: pd.DataFrame, runs: pd.DataFrame, degenerate: pd.Series, task: str, path: Path) -> Path | None:
    """One panel per recipe of `task`: the seeds' validation curves, coloured by the run's final outcome (one
    LineCollection per outcome and panel, so ten thousand seeds draw in about a second); an outcome with more
    than MAX_LINES seeds in a panel is drawn as its median with 50% and 80% bands instead of lines."""
    rows = runs[(runs["task"].astype(str) == task) & (runs["status"].astype(str) != "failed")]
    if rows.empty or curves.empty:
        return None
    outcome = outcome_of(rows, degenerate)
    recipes = list(dict.fromkeys(rows["recipe"].astype(str)))
    mine = curves[curves["run_id"].isin(set(rows["run_id"].astype(str)))]
    mine = mine.sort_values(["run_id", "eval_index"], kind="stable")
    ids = mine["run_id"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    bounds = dict(zip(ids[starts], zip(starts, np.r_[starts[1:], len(ids)], strict=True), strict=True))
    fraction, index, value = (mine[c].to_numpy(float) for c in ("fraction", "eval_index", "val_metric"))
    fig, axes = _grid(len(recipes), sharey=True)
    seen: set[str] = set()
    banded = False
    for ax, recipe in zip(axes, recipes, strict=True):
        sub = rows[rows["recipe"].astype(str) == recipe]
        counts: dict[str, int] = {}
        lines: dict[str, list[np.ndarray]] = {}
        for idx, rid in zip(sub.index, sub["run_id"].astype(str), strict=True):
            kind = outcome.loc[idx]
            counts[kind] = counts.get(kind, 0) + 1
            if rid not in bounds:
                continue
            lo, hi = bounds[rid]
            x = fraction[lo:hi] if np.isfinite(fraction[lo:hi]).all() else index[lo:hi]
            lines.setdefault(kind, []).append(np.column_stack([x, value[lo:hi]]))
        for kind in [k for k in OUTCOME_COLORS if k in lines]:
            segments = lines[kind]
            seen.add(kind)
            if len(segments) > MAX_LINES:
                _band(ax, segments, OUTCOME_COLORS[kind])
                banded = True
                continue
            style = {"color": OUTCOME_COLORS[kind], "alpha": 0.7, "linewidth": 1}
            ax.add_collection(LineCollection(segments, linestyle="--" if kind == "diverged" else "-", **style))
            short = [seg for seg in segments if len(seg) < 12]  # a marker per evaluation on short curves
            if short:
                points = np.concatenate(short)
                ax.plot(points[:, 0], points[:, 1], linestyle="none", marker=".", markersize=3, **style)
        ax.autoscale_view()
        ax.set_title(f"{recipe} ({', '.join(f'{v} {k}' for k, v in counts.items())})", fontsize=8)
        ax.set_xlabel("fraction of training")
        ax.set_ylabel(f"validation {metric_label(sub['metric'].iloc[0])}")
        ax.yaxis.set_tick_params(labelleft=True)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{task}: evaluation curves of the seeds, coloured by final outcome")
    handles = [
        Line2D([], [], color=OUTCOME_COLORS[k], linestyle="--" if k == "diverged" else "-", label=k)
        for k in OUTCOME_COLORS
        if k in seen
    ]
    if banded:
        handles.append(Patch(color="#888888", alpha=0.35, label=f"over {MAX_LINES} seeds: median, 50% and 80% bands"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), frameon=False)
    return save_figure(fig, path)


def variance_shares(dec: pd.DataFrame, path: Path) -> Path | None:
    """Stacked horizontal bars: share of score variance from init seed, data order, and interaction + residual."""
    if dec.empty:
        return None
    labels = (dec["task"].astype(str) + "/" + dec["recipe"].astype(str)).tolist()
    parts = [
        ("share_init", "weight init seed", "#0072B2"),
        ("share_order", "data order seed", "#E69F00"),
        ("share_interaction", "interaction + residual", "#BBBBBB"),
    ]
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.45 * len(labels)), layout="constrained")
    left = np.zeros(len(labels))
    y = np.arange(len(labels))
    for col, name, color in parts:
        vals = dec[col].to_numpy(float) * 100
        vals = np.nan_to_num(vals)
        ax.barh(y, vals, left=left, color=color, label=name, height=0.6)
        for yi, (l0, v) in enumerate(zip(left, vals, strict=True)):
            if v >= 8:
                ax.text(
                    l0 + v / 2,
                    yi,
                    f"{v:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if color != "#BBBBBB" else "black",
                )
        left += vals
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of score variance (%)")
    fig.legend(loc="outside lower center", ncol=3, frameon=False)
    return save_figure(fig, path)
