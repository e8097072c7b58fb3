"""`harness report --compare A B`: two experiments (e.g. the same recipes on two models) side by side."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from harness.analysis import degenerate_rules, expected_max_table, is_degenerate, summarize
from harness.analysis.seeds.compare import holm_by_method
from harness.analysis.seeds.describe import COUNTED_STATUSES
from harness.experiment.spec import ExperimentSpec
from harness.report import plots
from harness.report.experiment import pair_rows, write_markdown_report
from harness.report.folder import stage_report
from harness.report.paper import ReportError
from harness.report.provenance import model_description, provenance_table, setup_table, substitution_notes
from harness.report.sections import HOLM_NOTE
from harness.report.tables import comparison_tables, summary_table
from harness.storage.store import load_runs


def _labels(exp_a: Path, exp_b: Path, spec_a: ExperimentSpec | None, spec_b: ExperimentSpec | None) -> tuple[str, str]:
    a = spec_a.name if spec_a else exp_a.name
    b = spec_b.name if spec_b else exp_b.name
    return (f"{a} (A)", f"{b} (B)") if a == b else (a, b)


def _configs(runs: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(runs["config_key"].astype(str)))


def compare_rows(
    runs_a: pd.DataFrame,
    runs_b: pd.DataFrame,
    deg_a: pd.Series,
    deg_b: pd.Series,
    configs: list[str],
    labels: tuple[str, str],
    n_boot: int,
    n_perm: int,
) -> pd.DataFrame:
    """compare() of A's against B's scores for every configuration in common, Holm per method across the table."""
    rows = []
    for i, key in enumerate(configs):
        a = runs_a[(runs_a["config_key"].astype(str) == key) & runs_a["status"].astype(str).isin(COUNTED_STATUSES)]
        b = runs_b[(runs_b["config_key"].astype(str) == key) & runs_b["status"].astype(str).isin(COUNTED_STATUSES)]
        if a.empty or b.empty:
            continue
        rows += pair_rows(key, *labels, a, b, deg_a, deg_b, n_boot=n_boot, n_perm=n_perm, seed=101 * i)
    frame = pd.DataFrame(rows)
    return holm_by_method(frame) if len(frame) else frame


def compare_report(
    exp_a: Path,
    exp_b: Path,
    *,
    spec_a: ExperimentSpec | None = None,
    spec_b: ExperimentSpec | None = None,
    out_dir: str | None = None,
    n_boot: int = 2000,
    n_perm: int = 9999,
    run_ids_a: Collection[str] | None = None,
    run_ids_b: Collection[str] | None = None,
) -> Path:
    """Write <out_dir>/report.md, report.html and figures comparing A and B on every task/recipe they share.

    run_ids_a / run_ids_b: the runs of each side's spec (None: every run in its folder).
    """
    exp_a, exp_b = Path(exp_a), Path(exp_b)
    runs_a, runs_b = load_runs(exp_a), load_runs(exp_b)
    if run_ids_a is not None:
        runs_a = runs_a[runs_a["run_id"].isin(set(run_ids_a))].reset_index(drop=True)
    if run_ids_b is not None:
        runs_b = runs_b[runs_b["run_id"].isin(set(run_ids_b))].reset_index(drop=True)
    for path, runs in ((exp_a, runs_a), (exp_b, runs_b)):
        if runs.empty:
            raise ReportError(f"no stored runs under {path}; run `harness run <experiment.toml>` first")
    labels = _labels(exp_a, exp_b, spec_a, spec_b)
    th_a = dict(spec_a.degenerate_threshold) if spec_a else None
    th_b = dict(spec_b.degenerate_threshold) if spec_b else None
    common = [k for k in _configs(runs_a) if k in set(_configs(runs_b))]
    if not common:
        raise ReportError(
            f"{labels[0]} and {labels[1]} share no task/recipe configuration: A has "
            f"{_configs(runs_a)}, B has {_configs(runs_b)}; name recipes alike to compare them"
        )
    runs_a = runs_a[runs_a["config_key"].astype(str).isin(common)]
    runs_b = runs_b[runs_b["config_key"].astype(str).isin(common)]
    deg_a, deg_b = is_degenerate(runs_a, th_a), is_degenerate(runs_b, th_b)
    # staged, then published: only files the harness wrote are replaced (harness/report/folder.py)
    out = stage_report(out_dir) if out_dir else stage_report(exp_a.parent, f"compare-{exp_a.name}-vs-{exp_b.name}")

    sums = []
    for label, runs, th in ((labels[0], runs_a, th_a), (labels[1], runs_b, th_b)):
        s = summarize(runs, th, n_boot=n_boot)
        s.insert(0, "experiment", label)
        sums.append(s)
    summary = pd.concat(sums, ignore_index=True)
    order = {k: i for i, k in enumerate(common)}
    summary = summary.sort_values(
        ["config_key", "experiment"],
        key=lambda c: c.map(order) if c.name == "config_key" else c.map({labels[0]: 0, labels[1]: 1}),
        kind="stable",
    )
    comparisons = compare_rows(runs_a, runs_b, deg_a, deg_b, common, labels, n_boot, n_perm)
    colors = plots.group_colors(labels)

    md = [
        f"# Comparison: {labels[0]} vs {labels[1]}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. A = `{exp_a}` ({len(runs_a)} runs, "
        f"{model_description(runs_a)}); B = `{exp_b}` ({len(runs_b)} runs, {model_description(runs_b)}). "
        f"Configurations in common: {', '.join(common)}. Effects are A − B (or A / B).",
        "",
    ]
    for label, runs, spec in ((labels[0], runs_a, spec_a), (labels[1], runs_b, spec_b)):
        md += [f"## {label}: setup and provenance", "", setup_table(runs, spec), "", provenance_table(runs), ""]
        notes = substitution_notes(runs, spec)
        if notes:
            md += [*(f"- {n}" for n in notes), ""]
    md += ["## Summary per configuration", "", summary_table(summary, label="experiment"), ""]

    per_config = summary.assign(task=summary["config_key"])
    lines = plots.degenerate_lines(degenerate_rules(runs_a, th_a), sums[0])
    seeds_png = _seed_panels(runs_a, runs_b, deg_a, deg_b, common, labels, colors, lines, out / "seeds.png")
    md += [f"![Seed distributions, {labels[0]} vs {labels[1]}, per configuration]({seeds_png.name})", ""]
    deg_png = plots.degenerate_rates(
        per_config, colors, out / "degenerate.png", label_col="experiment", xlabel="configuration"
    )
    md += [f"![Degenerate-run rate per configuration with 95% Wilson intervals]({deg_png.name})", ""]

    md += ["## Comparison tests (A vs B per configuration)", ""]
    if comparisons.empty:
        md += ["No configuration has counted runs on both sides.", ""]
    else:
        loc, spread = comparison_tables(comparisons, label="A vs B")
        md += [
            "Location (A − B):",
            "",
            loc.replace("| task |", "| configuration |", 1),
            "",
            "Spread and degenerate runs:",
            "",
            spread.replace("| task |", "| configuration |", 1),
            "",
            HOLM_NOTE.replace("a − b", "A − B").replace("a / b", "A / B"),
            "",
        ]

    emps = []
    for label, runs in ((labels[0], runs_a), (labels[1], runs_b)):
        e = expected_max_table(runs, n_boot=min(n_boot, 1000))
        if len(e):
            e["experiment"], e["config_key"] = label, e["task"].astype(str) + "/" + e["recipe"].astype(str)
            emps.append(e)
    emp = pd.concat(emps, ignore_index=True) if emps else pd.DataFrame()
    metrics = dict(zip(runs_a["task"].astype(str), runs_a["metric"].astype(str), strict=True))
    emp_png = plots.expected_max(
        emp, metrics, colors, out / "expected_max.png", label_col="experiment", panel_col="config_key"
    )
    if emp_png is not None:
        md += ["## Expected maximum performance", "", f"![Expected max validation score vs trials]({emp_png.name})", ""]
    files = [["`*.png`", "the figures above"], ["`report.html`", "this report, self-contained"]]
    return write_markdown_report(md, out, files, title=f"{labels[0]} vs {labels[1]}")


def _seed_panels(runs_a, runs_b, deg_a, deg_b, configs, labels, colors, lines, path: Path) -> Path:
    """One strip+box panel per configuration with A and B side by side."""
    fig, axes = plots._grid(len(configs))
    for ax, key in zip(axes, configs, strict=True):
        groups = []
        for label, runs, deg in ((labels[0], runs_a, deg_a), (labels[1], runs_b, deg_b)):
            r = runs[(runs["config_key"].astype(str) == key) & runs["status"].astype(str).isin(COUNTED_STATUSES)]
            groups.append(
                plots.Group(label, r["score"].to_numpy(float), deg.loc[r.index].to_numpy(bool), colors[label])
            )
        rows = runs_a[runs_a["config_key"].astype(str) == key]
        panel = plots.strip_box(ax, groups, lines.get(str(rows["task"].iloc[0])))
        panel[0].set_title(key)
        panel[0].set_ylabel(plots.metric_label(rows["metric"].iloc[0]))
    plots.strip_box_legend(fig, f"degenerate at or below ({labels[0]}'s rule)")
    return plots.save_figure(fig, path)
