"""`harness report <experiment>`: results/<name>/report/report.md, report.html and the PNG figures."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis import analyze_experiment, compare, is_degenerate
from harness.analysis.degenerate import fill_finished_nan
from harness.analysis.describe import COUNTED_STATUSES
from harness.analysis.pipeline import load_scoped
from harness.analysis.verdict import ClaimTest, claim_test, holm_across_claims
from harness.experiment.spec import ExperimentSpec
from harness.report import churn as churn_report
from harness.report import plots
from harness.report.paper import (
    Claim,
    PaperReference,
    ReportError,
    Verdict,
    claim_rows,
    paper_table,
    parse_paper,
    verdict,
    verdict_table,
    with_note,
)
from harness.report.provenance import (
    model_description,
    notes_for_scale,
    provenance_table,
    recipe_table,
    sample_note,
    score_label,
    setup_table,
    substitution_notes,
)
from harness.report.render import write_html
from harness.report.tables import (
    comparison_tables,
    decomposition_table,
    early_stopping_table,
    emp_table,
    failure_summary,
    md_table,
    status_table,
    stopped_table,
    summary_table,
)

REPORT_DIR = "report"
HOLM_NOTE = (
    "p (Holm): two-sided, Holm-Bonferroni adjusted within each method's family (one method across every pair of "
    "this table: e.g. the Welch tests form one family, the Fisher tests another); bold when below 0.05. These "
    "tables are exploratory; verdicts on the paper's claims use their own pre-declared tests. "
    "Effects are a − b (mean difference, bootstrap BCa 95% CI), a / b (std ratio) and the odds ratio of "
    "degenerate runs (conditional MLE with its exact CI). Rank-biserial r = 2U/(n_a n_b) − 1. P(a>b): probability "
    "that a random seed of a beats one of b. ASO ε_min < 0.5 means a is almost stochastically better (0.2 strict)."
)
VERDICT_NOTE = (
    "How a verdict is made: the paper effect is a − b of the claimed statistic from the printed numbers (for std "
    'also the ratio a / b), or "not published" when the paper showed it only in a figure. Our effect and its 95% '
    "CI come from the comparison table (bootstrap CI of the mean difference; bootstrap CI of the std ratio; for "
    "degenerate rates the difference of rates with Fisher's conditional odds ratio and its exact CI). Direction "
    "reproduced: our point effect has the claimed sign. Significant: direction reproduced and the claim's one "
    "pre-declared test, one-sided in the claimed direction (Welch t for means, Brown-Forsythe for std with its "
    "p halved in the direction of the std difference, Fisher exact for degenerate rates, unless the claim names "
    "another), gives p < 0.05 after Holm's correction across the claims of this experiment (one family). "
    "Paper effect within ours: the paper's effect lies inside our 95% CI (or within the claim's tolerance)."
)


def _fig(md: list[str], path: Path | None, caption: str) -> None:
    if path is not None:
        md.append(f"![{caption}]({path.name})")
        md.append("")


def clear_figures(out: Path) -> None:
    """Remove the figures of an earlier report from `out` (a figure not drawn this time must not linger)."""
    for old in out.glob("*.png"):
        old.unlink()


def write_markdown_report(md: list[str], out: Path, files: list[list[str]], title: str) -> Path:
    """Close `md` with a "Files" table of `files` ([name, content] rows), write out/report.md and its HTML."""
    md = [*md, "## Files", "", md_table(["file", "content"], files, "ll"), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")
    write_html(md_path, title=title)
    return md_path


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


def _extra_rows(
    runs: pd.DataFrame, degenerate: pd.Series, task: str, a: str, b: str, n_boot: int, n_perm: int, seed: int
) -> pd.DataFrame | None:
    """Comparison rows for a claimed pair that the main table lacks (Holm within this pair's tests only)."""
    counted = runs[runs["status"].astype(str).isin(COUNTED_STATUSES) & (runs["task"].astype(str) == task)]
    sa, sb = counted[counted["recipe"].astype(str) == a], counted[counted["recipe"].astype(str) == b]
    if sa.empty or sb.empty:
        return None
    return pd.DataFrame(pair_rows(task, a, b, sa, sb, degenerate, degenerate, n_boot=n_boot, n_perm=n_perm, seed=seed))


def _claim_test(runs: pd.DataFrame, degenerate: pd.Series, claim: Claim, n_perm: int, seed: int) -> ClaimTest:
    """The claim's one pre-declared test, one-sided in its direction, on the counted runs of its two recipes."""
    counted = runs[runs["status"].astype(str).isin(COUNTED_STATUSES) & (runs["task"].astype(str) == claim.task)]
    sa, sb = counted[counted["recipe"].astype(str) == claim.a], counted[counted["recipe"].astype(str) == claim.b]
    return claim_test(
        claim.statistic, claim.direction, sa["score"].to_numpy(float), sb["score"].to_numpy(float),
        test=claim.test, degenerate_a=degenerate.loc[sa.index].to_numpy(bool),
        degenerate_b=degenerate.loc[sb.index].to_numpy(bool), n_perm=n_perm, seed=seed,
    )  # fmt: skip


def paper_verdicts(
    ref: PaperReference,
    runs: pd.DataFrame,
    degenerate: pd.Series,
    tables: dict[str, pd.DataFrame],
    n_boot: int,
    n_perm: int,
) -> list[Verdict]:
    ours = model_description(runs)
    tested = [_claim_test(runs, degenerate, c, n_perm, seed=613 + i) for i, c in enumerate(ref.claims)]
    p_holm = holm_across_claims(tested)
    out = []
    for i, claim in enumerate(ref.claims):
        rows = claim_rows(tables["comparisons"], claim)
        note = ""
        if rows is None:
            extra = _extra_rows(runs, degenerate, claim.task, claim.a, claim.b, n_boot, n_perm, seed=977 + i)
            if extra is not None:
                rows = claim_rows(extra, claim)
                note = (
                    "Pair outside the main comparison table (which compares every recipe with the baseline): "
                    "effect and CI computed here with the same methods."
                )
        summary = tables["summary"]
        s = summary[(summary["task"].astype(str) == claim.task)]
        n = {str(r["recipe"]): int(r["n"]) for r in s.to_dict("records")}
        seeds = f"n = {n.get(claim.a, 0)}/{n.get(claim.b, 0)}"
        paper_scale = ", ".join(x for x in (ref.model, f"{ref.seeds} seeds" if ref.seeds else "") if x)
        scale = f"ours: {ours}, {seeds}; paper: {paper_scale or 'scale not given'}"
        fewer = ref.seeds is not None and min(n.get(claim.a, 0), n.get(claim.b, 0)) < ref.seeds
        v = verdict(
            ref,
            claim,
            summary,
            rows,
            scale,
            sample_note(runs, claim.task) + ("; fewer seeds than the paper" if fewer else ""),
            p_holm=float(p_holm[i]),
        )
        out.append(with_note(v, note) if note else v)
    return out


def write_report(
    exp_dir: Path,
    spec: ExperimentSpec | None = None,
    baseline: str | None = None,
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    out_dir: str | Path | None = None,
    run_ids: Collection[str] | None = None,
) -> Path:
    """Write exp_dir/report/{report.md, report.html, *.png} from the analysis tables (read back from
    exp_dir/analysis when the store has not changed since they were written, else computed); returns report.md.

    With out_dir, everything (the analysis tables under out_dir/analysis) goes there and nothing is written
    under exp_dir, so a read-only store can be reported. run_ids: the runs of the spec being reported (None:
    every run in the folder)."""
    exp_dir = Path(exp_dir)
    runs, curves = load_scoped(exp_dir, run_ids)
    others = runs.attrs.get("other_runs", 0)
    if runs.empty:
        held = f" ({others} run(s) of other specs or scales are there: pass --scale or --all)" if others else ""
        raise ReportError(f"no stored runs of this spec under {exp_dir}{held}; run `harness run <experiment.toml>`")
    runs = fill_finished_nan(runs)  # the same meaning of a finished run's NaN metric as in the analysis tables
    thresholds = dict(spec.degenerate_threshold) if spec else None
    ref = parse_paper(spec.paper) if spec else None
    recipes = recipe_order(runs, spec)
    per_task = runs.groupby(runs["task"].astype(str))["recipe"].agg(lambda r: set(r.astype(str)))
    if baseline is None and all(recipes[0] in found for found in per_task):
        baseline = recipes[0]  # the experiment's first declared recipe, not the first run id on disk
    elif baseline not in recipes:
        raise ReportError(f"baseline recipe {baseline!r} has no stored runs; recipes: {', '.join(recipes)}")
    runs = order_runs(runs, spec)
    tables = {
        k: order_frame(v, runs)
        for k, v in analyze_experiment(
            exp_dir, thresholds, baseline, n_boot=n_boot, n_perm=n_perm, run_ids=run_ids,
            out_dir=Path(out_dir) / "analysis" if out_dir is not None else None,
            data_dir=spec.data_dir if spec else None,
        ).items()
    }  # fmt: skip
    degenerate = is_degenerate(runs, thresholds)
    out = Path(out_dir) if out_dir is not None else exp_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    clear_figures(out)
    colors = plots.group_colors(recipes)
    summary, rules = tables["summary"], tables["degenerate_rules"]
    metrics = dict(zip(runs["task"].astype(str), runs["metric"].astype(str), strict=True))
    name = spec.name if spec else exp_dir.name

    md = [f"# Report: {name}", ""]
    if spec is not None and spec.description:
        md += [spec.description, ""]
    md += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {len(runs)} stored runs in "
        f"`{exp_dir}`. Scores are metric × 100 on the {score_label(runs)}.",
        "",
    ]
    if others:
        md += [
            f"The folder holds {others} other run(s) of other specs or scales (e.g. the other `[scale]` "
            "section, or a recipe edited since); they are left out (`harness report --all` pools them).",
            "",
        ]

    md += ["## Setup", "", setup_table(runs, spec), ""]
    recipes_md = recipe_table(runs)
    if recipes_md:
        md += ["Recipes:", "", recipes_md, ""]
    md += ["## Provenance", "", provenance_table(runs), ""]
    notes = substitution_notes(runs, spec, ref.model if ref else "", notes_for_scale(ref.notes if ref else (), spec))
    if notes:
        md += ["## Substitutions and caveats", "", *(f"- {n}" for n in notes), ""]

    md += ["## Runs by status", "", status_table(runs), ""]
    failures = failure_summary(runs)
    if failures:
        md += ["Failed runs (no score; excluded from n), by error:", "", failures, ""]

    md += ["## Degenerate-run definition", ""]
    md += [f"- {r}" for r in rules["rule"]] + [""]
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
    _fig(
        md,
        plots.seed_distributions(runs, degenerate, lines, colors, out / "seeds.png", score_label(runs)),
        "Seed distributions per recipe: box = quartiles, dots = seeds, × = degenerate seeds",
    )
    _fig(
        md,
        plots.degenerate_rates(summary, colors, out / "degenerate.png"),
        "Degenerate-run rate per recipe with 95% Wilson intervals",
    )

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
        if ref.claims:
            verdicts = paper_verdicts(ref, runs, degenerate, tables, n_boot, n_perm)
            md += ["### Verdict per claim", "", verdict_table(verdicts), "", VERDICT_NOTE, ""]

    comparisons = tables["comparisons"]
    md += ["## Comparisons", ""]
    if comparisons.empty:
        md += ["Only one recipe per task: nothing to compare.", ""]
    else:
        loc, spread = comparison_tables(comparisons)
        md += ["Location (a − b):", "", loc, "", "Spread and degenerate runs:", "", spread, "", HOLM_NOTE, ""]

    md += [
        "## Expected maximum performance",
        "",
        emp_table(tables["expected_max"]),
        "",
        'Expected best validation score (of the checkpoint each run reports: `val_best` under select = "best", '
        '`val_final` under "final") among n seeds drawn with replacement from the stored runs (Dodge et al. 2019), '
        "with a 95% bootstrap band; diverged runs count at their degenerate value (the majority baseline, 0 for "
        "correlations), early-stopped runs are left out (the `used` column of `analysis/expected_max.parquet`). "
        "Expected test: Zhang et al.'s expected test performance, the held-out score of the seed best on validation "
        "among n, with its 95% bootstrap band (where a held-out score exists).",
        "",
    ]
    _fig(
        md,
        plots.expected_max(tables["expected_max"], metrics, colors, out / "expected_max.png"),
        "Expected maximum validation score vs number of trials",
    )

    md += ["## Evaluation curves", ""]
    if curves.empty:
        md += ["No curves stored.", ""]
    for task in dict.fromkeys(runs["task"].astype(str)):
        _fig(
            md,
            plots.eval_curves(curves, runs, degenerate, task, out / f"curves_{_slug(task)}.png"),
            f"{task}: evaluation curve of every seed, coloured by final outcome",
        )

    md += ["## Variance decomposition (init vs data order)", ""]
    dec = tables["variance_decomposition"]
    if dec.empty:
        md += [
            "No configuration has an init × data-order seed grid (≥ 2 × 2); declare `seeds = {init = [..], "
            "order = [..]}` to decompose the variance.",
            "",
        ]
    else:
        md += [
            decomposition_table(dec),
            "",
            'Two-way random-effects ANOVA shares; "std, init fixed" is Dodge et al.\'s expected std with the init '
            "seed held fixed (only the data order varies).",
            "",
        ]
        _fig(md, plots.variance_shares(dec, out / "variance.png"), "Share of score variance by seed source")

    md += ["## Early-stopping simulation", ""]
    es = tables.get("early_stopping")
    if es is None or es.empty:
        md += ["No stored curves of done/diverged runs: nothing to simulate.", ""]
    else:
        md += [
            "Dodge et al. 2020: start t seeds, stop all after a fraction f of training, train only the best p "
            "to the end; cost t·f + p·(1 − f) full runs. Exact over every subset of t of the stored runs (ties at "
            "the cut broken at random, exactly); where t exceeds the stored runs, Monte Carlo draws with "
            "replacement. Each cell: compute saved · probability that the seed best after full training is kept · "
            "expected best final validation score among the kept.",
            "",
            early_stopping_table(es),
            "",
        ]
        if stopped := int((runs["status"] == "stopped").sum()):
            md += [
                f"Caveat: this experiment stopped {stopped} runs online, and only runs trained to the end are "
                "replayed here. They are the survivors of its own rung, so the table overstates the chance of "
                "keeping the best seed; replay an experiment that trains every seed to the end (a seed grid) "
                "for an unbiased simulation.",
                "",
            ]

    md += churn_report.budget_section(exp_dir)
    md += churn_report.seeds_needed_section(runs, recipes, spec.paper if spec else None)
    md += churn_report.churn_section(exp_dir, runs, tables, recipes, colors, out, spec.data_dir if spec else None)

    files = [
        ["`analysis/*.parquet`", "every analysis table behind this report (`harness analyze`)"],
        ["`report/*.png`", "the figures above"],
        ["`report/report.html`", "this report, self-contained"],
    ]
    return write_markdown_report(md, out, files, title=f"Report: {name}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
