"""When to stop adding seeds: the decision of an adaptive seed budget at one look (pure, no I/O).

`ci_width<=W` stops a configuration once the 95% t interval of its mean score is at most W wide.
`sequential` stops the configurations of a pair once its group-sequential Welch test is settled
(harness/analysis/stats/sequential.py: Lan-DeMets alpha spending keeps the error rate at alpha over all
looks); a configuration keeps getting seeds while any pair it belongs to is open. Every rule stops
at the budget's maximum.

One alpha everywhere: a [paper] claim on means is tested one-sided, in its direction, at alpha / m, its
Bonferroni share of the Holm family of the m claims of the experiment, so a claim the budget settles is
significant in the verdict too (Holm's adjusted p <= m p <= alpha), and the verdict replays exactly this test
(harness/analysis/verdicts/claims.py). Claims on spreads and degenerate rates do not drive the budget; their verdicts
say so. Without claims, each recipe is tested against the first, two-sided at alpha.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.stats.sequential import ci_width, sequential_look
from harness.experiment.paper import parse_paper
from harness.experiment.spec import AdaptiveSeeds


@dataclass(frozen=True)
class Pair:
    """Recipes a and b on one task; direction "greater"/"less" is a claim on mean(a) vs mean(b), None two-sided.
    A claim is tested at alpha * alpha_share (1 / the number of claims in the Holm family)."""

    task: str
    a: str
    b: str
    direction: str | None = None
    alpha_share: float = 1.0

    def keys(self) -> tuple[str, str]:
        return f"{self.task}/{self.a}", f"{self.task}/{self.b}"

    def __str__(self) -> str:
        sign = {"greater": " > ", "less": " < "}.get(self.direction or "", " vs ")
        return f"{self.task}: {self.a}{sign}{self.b}"


@dataclass(frozen=True)
class BudgetDecision:
    """Whether a configuration stops getting seeds after this look, and why."""

    config_key: str
    look: int
    n: int  # seeds of this configuration scheduled so far
    stop: bool
    reason: str


def budget_pairs(paper: Mapping[str, Any], tasks: Sequence[str], recipes: Sequence[str]) -> list[Pair]:
    """The pairs a sequential budget tests: the [paper] claims on means (each at its Bonferroni share of the
    claims' Holm family), else each recipe vs the first."""
    ref = parse_paper(paper)
    claims = ref.claims if ref else ()
    pairs = [
        Pair(c.task, c.a, c.b, c.direction, 1 / len(claims))
        for c in claims
        if c.statistic == "mean" and c.task in tasks and c.a in recipes and c.b in recipes
    ]
    if pairs:
        return pairs
    return [Pair(t, r, recipes[0]) for t in tasks for r in recipes[1:]]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def decide(
    policy: AdaptiveSeeds,
    look: int,
    scores: Mapping[str, Sequence[float]],
    pairs: Sequence[Pair] = (),
) -> dict[str, BudgetDecision]:
    """Decisions at look `look` (1-based) for the open configurations in `scores` (config_key -> its seeds'
    scores at this look, NaN for runs without one); `pairs` only for the sequential target."""
    n = policy.looks[look - 1]
    last = look == len(policy.looks)
    out: dict[str, BudgetDecision] = {}
    width = policy.ci_width
    if width is not None:
        for key, values in scores.items():
            w = ci_width(_finite(values))
            met = math.isfinite(w) and w <= width
            reason = f"95% CI width {w:.2f} <= {width:g}" if met else f"95% CI width {w:.2f} > {width:g}"
            if last and not met:
                reason += f"; reached max = {policy.max}"
            out[key] = BudgetDecision(key, look, n, met or last, reason)
        return out
    open_pairs: dict[str, list[str]] = {k: [] for k in scores}
    settled: dict[str, list[str]] = {k: [] for k in scores}
    for pair in pairs:
        ka, kb = pair.keys()
        if ka not in scores or kb not in scores:
            continue
        res = sequential_look(
            _finite(scores[ka]),
            _finite(scores[kb]),
            look,
            policy.looks,
            policy.alpha * pair.alpha_share,
            policy.spending,
            two_sided=pair.direction is None,
            direction=pair.direction or "greater",
        )
        text = f"{pair}: z = {res.z:.2f} {'>=' if res.settled else '<'} boundary {res.boundary:.2f}"
        for key in (ka, kb):
            (settled if res.settled else open_pairs)[key].append(text)
    for key in scores:
        if open_pairs[key] and not last:
            out[key] = BudgetDecision(key, look, n, False, "open: " + "; ".join(open_pairs[key]))
        elif open_pairs[key]:
            out[key] = BudgetDecision(key, look, n, True, f"reached max = {policy.max}; " + "; ".join(open_pairs[key]))
        elif settled[key]:
            out[key] = BudgetDecision(key, look, n, True, "settled: " + "; ".join(settled[key]))
        else:
            out[key] = BudgetDecision(key, look, n, True, "in no pair still being tested")
    return out
