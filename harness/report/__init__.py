"""Report layer: Markdown + self-contained HTML reports with figures, paper tables and verdicts (no torch).

Reads only the store (via the analysis layer, which computes every statistic); formats and plots.
"""

from harness.report.compare import compare_report
from harness.report.experiment import write_report
from harness.report.paper import Claim, PaperCell, PaperReference, ReportError, Verdict, parse_paper
from harness.report.render import markdown_to_html, write_html

__all__ = [
    "Claim",
    "PaperCell",
    "PaperReference",
    "ReportError",
    "Verdict",
    "compare_report",
    "markdown_to_html",
    "parse_paper",
    "write_html",
    "write_report",
]
