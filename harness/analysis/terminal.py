"""What `harness analyze` prints: the summary in the experiment's order, then the claims with their labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SUMMARY_VIEW = [
    ("task", "task", "{}"), ("recipe", "recipe", "{}"), ("n", "n", "{:d}"), ("n_diverged", "div", "{:d}"),
    ("n_failed", "fail", "{:d}"), ("mean", "mean", "{:.1f}"), ("std", "std", "{:.1f}"), ("median", "median", "{:.1f}"),
    ("iqm", "iqm", "{:.1f}"), ("min", "min", "{:.1f}"), ("max", "max", "{:.1f}"),
    ("degenerate_rate", "degen%", "{:.0%}"), ("mean_nondeg", "mean*", "{:.1f}"), ("std_nondeg", "std*", "{:.1f}"),
]  # fmt: skip
VERDICT_COLUMNS = ("claim", "task", "a", "b", "statistic", "label", "p_holm", "effect", "ci_lo", "ci_hi", "reason")


def in_experiment_order(
    frame: pd.DataFrame, tasks: Sequence[str], recipes: Sequence[str], recipe_column: str = "recipe"
) -> pd.DataFrame:
    """Rows sorted (stably) by task, then recipe, in the order the experiment declares them; tasks and recipes
    it does not declare (e.g. runs of an edited spec under --all) follow in their order of first appearance."""
    if frame.empty or "task" not in frame or recipe_column not in frame:
        return frame
    task_order = list(dict.fromkeys([*tasks, *frame["task"].astype(str)]))
    recipe_order = list(dict.fromkeys([*recipes, *frame[recipe_column].astype(str)]))
    key = frame["task"].astype(str).map(task_order.index) * len(recipe_order) + frame[recipe_column].astype(str).map(
        recipe_order.index
    )
    return frame.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def _cell(value: object, fmt: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "-"
    try:
        return fmt.format(int(value) if fmt == "{:d}" else value)
    except (TypeError, ValueError):
        return str(value)


def _table(header: list[str], body: list[list[str]], left: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]


def format_summary(df: pd.DataFrame) -> str:
    """Fixed-width terminal table of a `summarize` frame (rows as given), with the mean's and degenerate rate's
    CIs."""
    if df.empty:
        return "(no runs)"
    header = [title for _, title, _ in SUMMARY_VIEW] + ["mean 95% CI", "degen 95% CI"]
    body = []
    for row in df.to_dict("records"):
        cells = [_cell(row.get(col), fmt) for col, _, fmt in SUMMARY_VIEW]
        cells.append(f"[{_cell(row.get('mean_ci_lo'), '{:.1f}')}, {_cell(row.get('mean_ci_hi'), '{:.1f}')}]")
        cells.append(f"[{_cell(row.get('degenerate_lo'), '{:.0%}')}, {_cell(row.get('degenerate_hi'), '{:.0%}')}]")
        body.append(cells)
    notes = "* over non-degenerate runs; n excludes failed runs; diverged runs count as degenerate"
    return "\n".join([*_table(header, body, {0, 1}), notes])


def format_claims(verdicts: pd.DataFrame) -> str:
    """The claims (rows of an analysis/verdicts table, in its order) with their labels: one line each, and the
    reason under it when the label comes with one."""
    if verdicts.empty:
        return ""
    missing = [c for c in VERDICT_COLUMNS if c not in verdicts]
    if missing:
        raise ValueError(f"verdicts table lacks column(s) {missing}; expected {list(VERDICT_COLUMNS)}")
    header = ["label", "task", "a vs b", "statistic", "effect", "95% CI", "p (Holm)", "claim"]
    body, reasons = [], []
    for row in verdicts.to_dict("records"):
        ci = f"[{_cell(row['ci_lo'], '{:+.2f}')}, {_cell(row['ci_hi'], '{:+.2f}')}]"
        pair = f"{row['a']} vs {row['b']}"
        body.append([str(row["label"]), str(row["task"]), pair, str(row["statistic"]), _cell(row["effect"], "{:+.2f}"),
                     ci, _cell(row["p_holm"], "{:.3g}"), str(row["claim"])])  # fmt: skip
        reason = _cell(row["reason"], "{}")
        reasons.append("" if reason == "-" else reason.strip())
    lines = _table(header, body, {0, 1, 2, 3, 7})
    out = ["claims (each tested one-sided in its direction, Holm across the claims):", *lines[:2]]
    for line, reason in zip(lines[2:], reasons, strict=True):
        out += [line, *([f"    why: {reason}"] if reason else [])]
    return "\n".join(out)
