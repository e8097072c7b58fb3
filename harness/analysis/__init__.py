"""Analysis layer: pure functions over arrays and DataFrames read from the store (never imports torch)."""

from harness.analysis.pipeline import analyze_experiment, analyze_runs, load_or_analyze
from harness.analysis.seeds.compare import Comparison, compare, compare_table, holm, probability_of_improvement
from harness.analysis.seeds.decomposition import Decomposition, decompose_grid, variance_decomposition
from harness.analysis.seeds.degenerate import (
    DegenerateRule,
    degenerate_rule,
    degenerate_rules,
    is_degenerate,
    wilson_interval,
)
from harness.analysis.seeds.describe import Description, describe, iqm, summarize
from harness.analysis.seeds.early_stop import EarlyStopResult, early_stopping_table, simulate_early_stopping
from harness.analysis.seeds.emp import expected_max, expected_max_table
from harness.analysis.stats.aso import AsoResult, aso, violation_ratio
from harness.analysis.stats.bootstrap import Interval, bootstrap_ci
from harness.analysis.terminal import format_claims, format_summary

__all__ = [
    "AsoResult", "Comparison", "Decomposition", "DegenerateRule", "Description", "EarlyStopResult", "Interval",
    "analyze_experiment", "analyze_runs", "aso", "bootstrap_ci", "compare", "compare_table", "decompose_grid",
    "degenerate_rule", "degenerate_rules", "describe", "early_stopping_table", "expected_max", "expected_max_table",
    "format_claims", "format_summary", "holm", "iqm", "is_degenerate", "load_or_analyze",
    "probability_of_improvement", "simulate_early_stopping", "summarize", "variance_decomposition", "violation_ratio",
    "wilson_interval",
]  # fmt: skip
