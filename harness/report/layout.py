"""Which sections a report shows, and where: the evidence of its claims up front, the rest in an appendix,
and a section without data not at all.

Main body: verdicts, deviations, the paper's table, the summary per recipe, then the sections the
experiment is about (a seed grid: the variance decomposition; a paper with no recipe claims, as Dodge
et al.'s seed studies: the expected maximum; early stopping: the stopping table). An experiment without
a paper (a variance report of one's own model) keeps comparisons, expected maximum and curves up front.
The early-stopping table appears only in a report about early stopping, or when asked for
(`harness report --with early-stopping`).
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from harness.experiment.spec import ExperimentSpec

OPTIONAL = ("early-stopping",)  # sections a report leaves out unless asked for (`--with`)


def about_early_stopping(spec: ExperimentSpec | None, runs: pd.DataFrame) -> bool:
    """An experiment that stops seeds early (its schedule says so, or its store holds stopped runs)."""
    stopped = bool((runs["status"].astype(str) == "stopped").any()) if "status" in runs else False
    return stopped or (spec is not None and spec.schedule.early_stop is not None)


def main_sections(
    spec: ExperimentSpec | None,
    has_claims: bool,
    has_paper: bool,
    tables: dict[str, pd.DataFrame],
    runs: pd.DataFrame,
) -> set[str]:
    """The optional sections drawn in the main body (names: comparisons, expected_max, curves, variance,
    early_stopping); the others that have data go to the appendix."""
    main: set[str] = set()
    if not has_paper:
        main |= {"comparisons", "expected_max", "curves"}
    elif not has_claims:
        main.add("expected_max")
    dec = tables.get("variance_decomposition")
    if dec is not None and not dec.empty:
        main.add("variance")
    if about_early_stopping(spec, runs):
        main.add("early_stopping")
    return main


def shows_early_stopping(spec: ExperimentSpec | None, runs: pd.DataFrame, include: Collection[str]) -> bool:
    return about_early_stopping(spec, runs) or "early-stopping" in include


def has_degenerate(summary: pd.DataFrame) -> bool:
    """Whether any configuration has a degenerate (or diverged) run: else the rate figure is an empty plot."""
    return bool(pd.to_numeric(summary.get("degenerate_n"), errors="coerce").fillna(0).sum() > 0)


def demote(lines: list[str], levels: int = 1) -> list[str]:
    """Markdown lines with every heading one level deeper (a section moved under the appendix heading)."""
    return [("#" * levels + line) if line.startswith("#") else line for line in lines]
