"""`harness report <experiment>`: results/<name>/report/report.md, report.html and the PNG figures."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis import analyze_experiment, compare, is_degenerate
from harness.analysis.pipeline import load_scoped
from harness.analysis.seeds.degenerate import fill_finished_nan
from harness.analysis.verdicts.claims import ClaimVerdict, verdicts_from_frame
from harness.experiment.spec import ExperimentSpec
from harness.report import churn as churn_report
from harness.report import layout, plots, sections
from harness.report.deviations import arm_confounds, deviations_section, eval_split_sizes, parse_setting
from harness.report.folder import is_stage, publish, stage_report
from harness.report.forest import forest_caption, forest_plot
from harness.report.paper import PaperReference, ReportError, paper_table, parse_paper, verdict_table
from harness.report.provenance import (
    code_state,
    experiment_source,
    model_description,
    notes_for_scale,
    provenance_table,
    recipe_table,
    repo_path,
    sample_note,
    scope_line,
    score_label,
    setup_table,
    substitution_notes,
)
from harness.report.render import write_html
from harness.report.summary import SUMMARY_NOTE, VERDICTS_CSV, label_counts
from harness.report.summary import summary_table as verdict_summary
from harness.report.tables import (
    failure_summary,
    md_table,
    status_table,
    stopped_table,
    summary_table,
)
from harness.storage.safe_files import real_folder
from harness.storage.store import load_predictions

REPORT_DIR = "report"
VERDICT_NOTE = (
    "How a verdict is made (harness/analysis/verdicts/claims.py; docs/reports.md): each claim has one "
    "pre-declared test, "
    "one-sided in the claimed direction (Welch t for means; Brown-Forsythe or Levene, the t test of the absolute "
    "deviations, for spreads; Fisher exact for degenerate rates; bootstrap tests for Dodge et al.'s one-recipe "
    "statistics), Holm-adjusted across all the claims (an untestable claim counts as p = 1). Labels, checked in "
    "this order: **not testable here** when a gate fails (an arm at the constant predictor: over half its runs "
    "degenerate or its mean within 2 points of the constant's score; a rate claim with no degenerate run; the "
    "best checkpoint chosen on the scored split in one arm, the final one in the other; or the data are "
    "missing); **reproduced** when p_Holm < α; **not reproduced** when the paper's printed effect at this scale "
    "lies outside our 95% CI (impossible where the paper printed none); otherwise **inconclusive**, with the "
    "seeds per arm that would give the same test 80% power at the claim's Holm level. Effects: mean and gains "
    "a − b in points (BCa bootstrap CI), std the ratio a / b (bootstrap CI), degenerate rates a − b (Newcombe "
    "CI). Early-stopped runs are left out and counted in the caveats."
)


def write_markdown_report(md: list[str], out: Path, files: list[list[str]], title: str) -> Path:
    """Close `md` with a "Files" table of `files` ([name, content] rows), write out/report.md and its HTML;
    `out` from stage_report is then published (harness/report/folder.py). Returns the report.md path."""
    md = [*md, "## Files", "", md_table(["file", "content"], files, "ll"), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")
    write_html(md_path, title=title)
    return publish(out) / md_path.name if is_stage(out) else md_path


def recipe_order(runs: pd.DataFrame, spec: ExperimentSpec | None) -> list[str]:
    stored = list(dict.fromkeys(runs["recipe"].astype(str)))
    declared = [r for r in (spec.recipes if spec else ()) if r in stored]
    return list(dict.fromkeys([*declared, *stored]))


def order_runs(runs: pd.DataFrame, spec: ExperimentSpec | None) -> pd.DataFrame:
    """Runs sorted (stably) by the experiment's task and recipe order, so tables and figures follow the TOML."""
    tasks = list(dict.fromkeys([*(spec.tasks if spec else ()), *runs["task"].astype(str)]))
    recipes = recipe_order(runs, spec)
    key = runs["task"].astype(str).map(tasks.index) * len(recipes) + runs["recipe"].astype(str).map(recipes.index)
    return runs.iloc[key.to_numpy().argsort(kind="stable")]


def order_frame(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """An analysis table's rows in the order of `runs`' configurations (tables without task/recipe unchanged)."""
    if frame.empty or "task" not in frame or ("recipe" not in frame and "a" not in frame):
        return frame
    configs = list(dict.fromkeys(zip(runs["task"].astype(str), runs["recipe"].astype(str), strict=True)))
    rank = {c: i for i, c in enumerate(configs)}
    col = "recipe" if "recipe" in frame else "a"
    key = [rank.get((t, r), len(rank)) for t, r in zip(frame["task"].astype(str), frame[col].astype(str), strict=True)]
    return frame.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)


def pair_rows(
    task: str,
    a: str,
    b: str,
    runs_a: pd.DataFrame,
    runs_b: pd.DataFrame,
    deg_a: pd.Series,
    deg_b: pd.Series,
    *,
    n_boot: int,
    n_perm: int,
    seed: int,
) -> list[dict]:
    """compare() of runs_a's scores against runs_b's (degenerate flags from deg_a / deg_b): a row per test."""
    res = compare(
        runs_a["score"].to_numpy(float),
        runs_b["score"].to_numpy(float),
        degenerate_a=deg_a.loc[runs_a.index].to_numpy(),
        degenerate_b=deg_b.loc[runs_b.index].to_numpy(),
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
    )
    return [{"task": task, "a": a, "b": b, **dataclasses.asdict(c)} for c in res]


def verdict_section(verdicts: Sequence[ClaimVerdict], ref: PaperReference, runs: pd.DataFrame) -> list[str]:
    """The verdict table of the analysis layer's records, with the scale line and how a verdict is made."""
    paper_scale = ", ".join(x for x in (ref.model, f"{ref.seeds} seeds" if ref.seeds else "") if x)
    sizes = "; ".join(note for t in dict.fromkeys(v.task for v in verdicts) if (note := sample_note(runs, t)))
    scale = f"ours: {model_description(runs)}{f', {sizes}' if sizes else ''}; paper: {paper_scale or 'scale not given'}"
    alpha = verdicts[0].alpha
    return [
        "### Verdict per claim",
        "",
        f"One level everywhere: α = {alpha:g}, one-sided, Holm across the {verdicts[0].family_size} claims below.",
        "",
        verdict_table(verdicts, scale),
        "",
        VERDICT_NOTE,
        "",
    ]


def write_report(
    exp_dir: Path,
    spec: ExperimentSpec | None = None,
    baseline: str | None = None,
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    out_dir: str | Path | None = None,
    run_ids: Collection[str] | None = None,
    include: Collection[str] = (),
    data_dir: str | None = None,
) -> Path:
    """Write exp_dir/report/{report.md, report.html, *.png} from the analysis tables (read back from
    exp_dir/analysis when the store has not changed since they were written, else computed); returns report.md.

    With out_dir, everything (the analysis tables under out_dir/analysis) goes there and nothing is written
    under exp_dir, so a read-only store can be reported. run_ids: the runs of the spec being reported (None:
    every run in the folder). include: optional sections to show although the experiment is not about them
    (layout.OPTIONAL: "early-stopping"). data_dir: the GLUE folder the runs read (the churn tables' gold labels;
    default: the file's data_dir, else $HARNESS_DATA_DIR)."""
    exp_dir = Path(exp_dir)
    runs, curves = load_scoped(exp_dir, run_ids)
    others = runs.attrs.get("other_runs", 0)
    if runs.empty:
        held = f" ({others} run(s) of other specs or scales are there: pass --scale or --all)" if others else ""
        raise ReportError(f"no stored runs of this spec under {exp_dir}{held}; run `harness run <experiment.toml>`")
    runs = fill_finished_nan(runs)  # the same meaning of a finished run's NaN metric as in the analysis tables
    data_dir = data_dir or (spec.data_dir if spec else None)
    thresholds = dict(spec.degenerate_threshold) if spec else None
    ref = parse_paper(spec.paper) if spec else None
    recipes = recipe_order(runs, spec)
    per_task = runs.groupby(runs["task"].astype(str))["recipe"].agg(lambda r: set(r.astype(str)))
    if baseline is None:
        if all(recipes[0] in found for found in per_task):
            baseline = recipes[0]  # the experiment's first declared recipe, not the first run id on disk
        # else: each task against its own first recipe (harness.analysis.seeds.compare.compare_recipes)
    elif baseline not in recipes:
        raise ReportError(f"baseline recipe {baseline!r} has no stored runs; recipes: {', '.join(recipes)}")
    runs = order_runs(runs, spec)
    tables = {
        k: order_frame(v, runs)
        for k, v in analyze_experiment(
            exp_dir, thresholds, baseline, n_boot=n_boot, n_perm=n_perm, run_ids=run_ids,
            out_dir=real_folder(out_dir, "analysis") if out_dir is not None else None,
            paper=spec.paper if spec else None, adaptive=spec.adaptive if spec else None,
            data_dir=data_dir,
        ).items()
    }  # fmt: skip
    degenerate = is_degenerate(runs, thresholds)
    out = stage_report(out_dir) if out_dir is not None else stage_report(exp_dir, REPORT_DIR)  # published at the end
    colors = plots.group_colors(recipes)
    summary, rules = tables["summary"], tables["degenerate_rules"]
    metrics = dict(zip(runs["task"].astype(str), runs["metric"].astype(str), strict=True))
    name = spec.name if spec else exp_dir.name
    has_claims = bool(ref and ref.claims)
    main = layout.main_sections(spec, has_claims, ref is not None, tables, runs)
    appendix: list[str] = []

    md = [f"# Report: {name}", ""]
    if spec is not None and spec.description:
        md += [spec.description, ""]
    md += [
        f"{scope_line(runs, spec)} Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from "
        f"{len(runs)} stored runs in `{repo_path(exp_dir)}`. Scores are metric × 100 on the {score_label(runs)}.",
        "",
    ]
    if others:
        md += [
            f"The folder holds {others} other run(s) of other specs or scales (e.g. the other `[scale]` "
            "section, or a recipe edited since); they are left out (`harness report --all` pools them).",
            "",
        ]

    setting = parse_setting(spec.paper.get("setting") if spec else None) if ref is not None else None
    verdicts = tables.get("verdicts")  # one row per claim with its label (harness.report.summary documents it)
    if verdicts is not None and not verdicts.empty:
        verdicts = verdicts.assign(confounds=arm_confounds(setting, runs, verdicts))
        verdicts.to_csv(out / VERDICTS_CSV, index=False)  # the first screen as a table, beside the figures
        md += ["## Verdicts", "", f"{label_counts(verdicts)}.", "", verdict_summary(verdicts), "", SUMMARY_NOTE, ""]
        sections.fig(md, forest_plot(verdicts, out / "forest.png", name), forest_caption(verdicts))
    predictions = load_predictions(exp_dir)
    if ref is not None:
        md += deviations_section(setting, runs, eval_split_sizes(predictions, runs))

    if ref is not None:
        md += [
            "## Paper vs ours",
            "",
            f"Reference: {ref.source}"
            + (f" ({ref.split})" if ref.split else "")
            + (f"; model {ref.model}" if ref.model else "")
            + (f"; {ref.seeds} seeds" if ref.seeds else "")
            + ".",
            "",
        ]
        if any(ref.results.values()):
            md += [paper_table(ref, summary), ""]
        else:
            md += ["The paper printed no per-recipe numbers for this experiment; its claims are checked below.", ""]
        if claim_records := verdicts_from_frame(tables["verdicts"]):
            md += verdict_section(claim_records, ref, runs)

    md += [
        "## Summary per recipe",
        "",
        summary_table(summary),
        "",
        "n counts done and diverged runs (failed runs are excluded; early-stopped runs are shown apart below); "
        "diverged runs have no score and count as degenerate; a finished run whose metric is undefined (a constant "
        "predictor) scores 0, as the harness's own metric gives it. CIs: BCa bootstrap for mean and std, Wilson for "
        "the degenerate rate.",
        "",
    ]
    stopped = stopped_table(runs)
    if stopped:
        md += [
            "Early-stopped runs (left out of every statistic above, the comparisons, the expected maximum and the "
            "variance decomposition; their score is their checkpoint at the rung, not a finished run's):",
            "",
            stopped,
            "",
        ]
    lines = plots.degenerate_lines(rules, summary)
    sections.fig(
        md,
        plots.seed_distributions(runs, degenerate, lines, colors, out / "seeds.png", score_label(runs)),
        "Seed distributions per recipe: box = quartiles, dots = seeds, × = degenerate seeds",
    )
    if layout.has_degenerate(summary):  # with no degenerate run anywhere the figure would be empty bars
        sections.fig(
            md,
            plots.degenerate_rates(summary, colors, out / "degenerate.png"),
            "Degenerate-run rate per recipe with 95% Wilson intervals",
        )
    else:
        md += ["No configuration has a degenerate run.", ""]

    optional = {
        "variance": sections.variance_section(tables["variance_decomposition"], out),
        "expected_max": sections.expected_max_section(tables["expected_max"], metrics, colors, out),
        "early_stopping": (
            sections.early_stopping_section(tables.get("early_stopping"), runs)
            if layout.shows_early_stopping(spec, runs, include)
            else []
        ),
        "comparisons": sections.comparisons_section(tables["comparisons"]),
        "curves": sections.curves_section(curves, runs, degenerate, out),
    }
    for key in ("comparisons", "variance", "expected_max", "early_stopping", "curves"):
        (md if key in main else appendix).extend(optional[key] if key in main else layout.demote(optional[key]))

    setup = ["### Setup", "", setup_table(runs, spec, source=experiment_source(exp_dir, spec)), ""]
    recipes_md = recipe_table(runs)
    if recipes_md:
        setup += ["Recipes:", "", recipes_md, ""]
    setup += ["### Provenance", "", f"Code: {code_state(runs)}.", "", provenance_table(runs), ""]
    notes = substitution_notes(runs, spec, ref.model if ref else "", notes_for_scale(ref.notes if ref else (), spec))
    if notes:
        setup += ["### Substitutions and caveats", "", *(f"- {n}" for n in notes), ""]
    setup += ["### Runs by status", "", status_table(runs), ""]
    failures = failure_summary(runs)
    if failures:
        setup += ["Failed runs (no score; excluded from n), by error:", "", failures, ""]
    setup += ["### Degenerate-run definition", "", *(f"- {r}" for r in rules["rule"]), ""]

    appendix += layout.demote(churn_report.budget_section(exp_dir))
    appendix += layout.demote(churn_report.seeds_needed_section(runs, recipes, verdicts_from_frame(tables["verdicts"])))
    if not predictions.empty:
        appendix += layout.demote(churn_report.churn_section(exp_dir, runs, tables, recipes, colors, out, data_dir))
    md += ["## Appendix", "", "Setup, provenance and the sections that support the ones above.", "", *setup, *appendix]

    files = [
        ["`analysis/*.parquet`", "every analysis table behind this report (`harness analyze`)"],
        ["`report/*.png`", "the figures above"],
        ["`report/report.html`", "this report, self-contained"],
    ]
    return write_markdown_report(md, out, files, title=f"Report: {name}")
