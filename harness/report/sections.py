"""The report sections that may sit in the main body or in the appendix (harness/report/layout.py decides):
comparisons, expected maximum, evaluation curves, variance decomposition, early stopping. Each returns its
Markdown lines (drawing its figure into `out`), or [] when it has no data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report import plots
from harness.report.tables import comparison_tables, decomposition_table, early_stopping_table, emp_table

HOLM_NOTE = (
    "p (Holm): two-sided, Holm-Bonferroni adjusted within each method's family (one method across every pair of "
    "this table: e.g. the Welch tests form one family, the Fisher tests another); bold when below 0.05. These "
    "tables are exploratory; verdicts on the paper's claims use their own pre-declared tests. "
    "Effects are a − b (mean difference, bootstrap BCa 95% CI), a / b (std ratio) and the odds ratio of "
    "degenerate runs (conditional MLE with its exact CI). Rank-biserial r = 2U/(n_a n_b) − 1. P(a>b): probability "
    "that a random seed of a beats one of b. ASO ε_min < 0.5 means a is almost stochastically better (0.2 strict)."
)


def fig(md: list[str], path: Path | None, caption: str) -> None:
    if path is not None:
        md.append(f"![{caption}]({path.name})")
        md.append("")


def comparisons_section(comparisons: pd.DataFrame) -> list[str]:
    md = ["## Comparisons", ""]
    if comparisons.empty:
        return [*md, "Only one recipe per task: nothing to compare.", ""]
    loc, spread = comparison_tables(comparisons)
    return [*md, "Location (a − b):", "", loc, "", "Spread and degenerate runs:", "", spread, "", HOLM_NOTE, ""]


def expected_max_section(emp: pd.DataFrame, metrics: dict[str, str], colors: dict[str, str], out: Path) -> list[str]:
    if emp.empty:
        return []
    md = [
        "## Expected maximum performance",
        "",
        emp_table(emp),
        "",
        'Expected best validation score (of the checkpoint each run reports: `val_best` under select = "best", '
        '`val_final` under "final") among n seeds drawn with replacement from the stored runs (Dodge et al. 2019), '
        "with a 95% bootstrap band; diverged runs count at their degenerate value (the majority baseline, 0 for "
        "correlations), early-stopped runs are left out (the `used` column of `analysis/expected_max.parquet`). "
        "Expected test: Zhang et al.'s expected test performance, the held-out score of the seed best on validation "
        "among n, with its 95% bootstrap band (where a held-out score exists).",
        "",
    ]
    fig(md, plots.expected_max(emp, metrics, colors, out / "expected_max.png"),
         "Expected maximum validation score vs number of trials")  # fmt: skip
    return md


def curves_section(curves: pd.DataFrame, runs: pd.DataFrame, degenerate: pd.Series, out: Path) -> list[str]:
    if curves.empty:
        return []
    md = ["## Evaluation curves", ""]
    for task in dict.fromkeys(runs["task"].astype(str)):
        fig(
            md,
            plots.eval_curves(curves, runs, degenerate, task, out / f"curves_{_slug(task)}.png"),
            f"{task}: evaluation curves of the seeds, coloured by final outcome",
        )
    return md


def variance_section(dec: pd.DataFrame, out: Path) -> list[str]:
    if dec.empty:  # no init x order grid: nothing to decompose
        return []
    md = [
        "## Variance decomposition (init vs data order)",
        "",
        decomposition_table(dec),
        "",
        'Two-way random-effects ANOVA shares; "std, init fixed" is Dodge et al.\'s expected std with the init '
        "seed held fixed (only the data order varies).",
        "",
    ]
    fig(md, plots.variance_shares(dec, out / "variance.png"), "Share of score variance by seed source")
    return md


def early_stopping_section(es: pd.DataFrame | None, runs: pd.DataFrame) -> list[str]:
    if es is None or es.empty:
        return []
    md = [
        "## Early-stopping simulation",
        "",
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
    return md


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
