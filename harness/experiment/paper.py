"""The `[paper]` section of an experiment file: the paper's printed numbers and its pre-declared claims.

Format (docs/reports.md): `source`, `model`, `seeds`, optional `split`, `notes`;
`results.<task>.<recipe> = {mean, std, median, min, max, degenerate_rate, n}` (x100, rates in [0, 1]);
`[[claims]]` with `claim, task, a, b, statistic, direction` and optional `test`, `paper_effect`, `where`, and
the parameters of the one-configuration statistics (`margin`, `n`, `n_start`, `fraction`, `keep`).

Statistics: two recipes a and b of one task (`mean`, `std`, `degenerate_rate`), or one recipe a alone
(Dodge et al. 2020's `variance_share`, `expected_max_gain`, `early_stopping_gain`; `b` is left out).
A claim's paper effect is in the units of its statistic's effect: mean and gains a difference in score
points, std the ratio a / b, degenerate_rate a difference of rates (fractions), variance_share the
difference of shares init - order (fractions). It comes from the printed cells (`results`) unless the claim
gives `paper_effect`; `paper_effect = "not printed"` says the paper printed none at the scale this section
describes, even where `results` hold cells of another scale.

Parsing only (no statistics, no torch): the analysis layer computes the verdicts and the report renders them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class PaperError(ValueError):
    """A bad `[paper]` section: the message names the field and the fix."""


TWO_RECIPE_STATISTICS = ("mean", "std", "degenerate_rate")
ONE_RECIPE_STATISTICS = ("variance_share", "expected_max_gain", "early_stopping_gain")
STATISTICS = (*TWO_RECIPE_STATISTICS, *ONE_RECIPE_STATISTICS)
DIRECTIONS = ("greater", "less", "comparable")
TESTS = {
    "mean": ("welch_t", "mann_whitney_u", "permutation_mean_diff"),
    "std": ("brown_forsythe", "levene"),
    "degenerate_rate": ("fisher_exact_degenerate",),
    "variance_share": ("grid_bootstrap",),
    "expected_max_gain": ("bootstrap",),
    "early_stopping_gain": ("bootstrap",),
}
CELL_FIELDS = ("mean", "std", "median", "min", "max", "degenerate_rate", "n")
# "setting": the paper's training setting, read by harness/report/deviations.py
TOP_KEYS = {"source", "model", "seeds", "split", "notes", "results", "claims", "setting"}
RULE_KEYS = ("margin", "n", "n_start", "fraction", "keep")
CLAIM_KEYS = {"claim", "task", "a", "b", "statistic", "direction", "test", "paper_effect", "where", *RULE_KEYS}
NOT_PRINTED = "not printed"


@dataclass(frozen=True)
class PaperCell:
    """Numbers the paper printed for one task x recipe (None where it printed none)."""

    mean: float | None = None
    std: float | None = None
    median: float | None = None
    min: float | None = None
    max: float | None = None
    degenerate_rate: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Claim:
    """One pre-declared claim: `a <direction> b` on `statistic` (or a property of recipe a alone)."""

    claim: str
    task: str
    a: str  # treatment recipe (the one configuration of a one-recipe statistic)
    b: str = ""  # reference recipe; "" for one-recipe statistics
    statistic: str = "mean"
    direction: str = "greater"  # greater | less: a's statistic vs b's (or vs 0); comparable: |effect| < margin
    test: str = ""  # default: the first of TESTS[statistic]
    paper_effect: float | None = None  # stated effect (units of the statistic's effect); None: from the cells
    paper_printed: bool = True  # False: `paper_effect = "not printed"` (no printed effect at this scale)
    where: str = ""  # e.g. "Figure 3"
    margin: float = 0.0  # comparable: the equivalence margin; expected_max_gain: the smallest gain claimed
    n: int = 10  # expected_max_gain: E[max of n] - E[max of 1]
    n_start: int = 40  # early_stopping_gain: start t seeds ...
    fraction: float = 0.25  # ... stop all after this fraction of training ...
    keep: int = 10  # ... and train the best p to the end

    @property
    def two_recipes(self) -> bool:
        return self.statistic in TWO_RECIPE_STATISTICS


@dataclass(frozen=True)
class PaperReference:
    source: str
    model: str = ""
    seeds: int | None = None
    split: str = ""
    notes: tuple[str, ...] = ()
    results: Mapping[str, Mapping[str, PaperCell]] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()

    def cell(self, task: str, recipe: str) -> PaperCell | None:
        return self.results.get(task, {}).get(recipe)

    def paper_effect(self, claim: Claim) -> float | None:
        """The paper's effect for `claim` in its statistic's units (module note), None where none is printed."""
        if not claim.paper_printed:
            return None
        if claim.paper_effect is not None:
            return claim.paper_effect
        if not claim.two_recipes:
            return None
        ca, cb = self.cell(claim.task, claim.a), self.cell(claim.task, claim.b)
        va = getattr(ca, claim.statistic) if ca else None
        vb = getattr(cb, claim.statistic) if cb else None
        if va is None or vb is None:
            return None
        if claim.statistic == "std":
            return round(va / vb, 10) if vb else None
        return round(va - vb, 10)  # printed numbers: no float noise in the effect


def _number(value: Any, where: str, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PaperError(f"[paper] {where} = {value!r}; must be a finite number")
    if integer and (not float(value).is_integer() or value < 1):
        raise PaperError(f"[paper] {where} = {value!r}; must be a whole number >= 1")
    return int(value) if integer else float(value)


def _results(raw: Mapping[str, Any]) -> dict[str, dict[str, PaperCell]]:
    results: dict[str, dict[str, PaperCell]] = {}
    for task, recipes in dict(raw.get("results", {})).items():
        if not isinstance(recipes, Mapping):
            raise PaperError(f"[paper.results.{task}] must map recipe names to {{mean = .., std = ..}}")
        for recipe, cell in recipes.items():
            where = f"results.{task}.{recipe}"
            if not isinstance(cell, Mapping):
                raise PaperError(f"[paper] {where} must be a table like {{ mean = 69.5, std = 2.5 }}")
            bad = sorted(set(cell) - set(CELL_FIELDS))
            if bad:
                raise PaperError(f"[paper] {where}: unknown field(s) {bad}; allowed: {list(CELL_FIELDS)}")
            values = {k: _number(v, f"{where}.{k}", integer=k == "n") for k, v in cell.items()}
            rate = values.get("degenerate_rate")
            if rate is not None and not 0 <= rate <= 1:
                raise PaperError(f"[paper] {where}.degenerate_rate = {rate}; a fraction in [0, 1] (0.48 for 48%)")
            results.setdefault(str(task), {})[str(recipe)] = PaperCell(**values)
    return results


def _claim(c: Any, where: str) -> Claim:
    if not isinstance(c, Mapping):
        raise PaperError(f"[paper] {where} must be a table")
    bad = sorted(set(c) - CLAIM_KEYS)
    if bad:
        raise PaperError(f"[paper] {where}: unknown key(s) {bad}; allowed: {sorted(CLAIM_KEYS)}")
    stat, direction = c.get("statistic", "mean"), c.get("direction", "greater")
    if stat not in STATISTICS:
        raise PaperError(f"[paper] {where}.statistic = {stat!r}; allowed: {', '.join(STATISTICS)}")
    needed = ("claim", "task", "a", "b") if stat in TWO_RECIPE_STATISTICS else ("claim", "task", "a")
    missing = [k for k in needed if not isinstance(c.get(k), str) or not c.get(k)]
    if missing:
        raise PaperError(f"[paper] {where}: missing or empty {missing}")
    if stat in ONE_RECIPE_STATISTICS and c.get("b"):
        raise PaperError(f"[paper] {where}.b = {c['b']!r}; a {stat} claim is about recipe a alone: leave b out")
    if direction not in DIRECTIONS or (direction == "comparable" and stat != "variance_share"):
        allowed = DIRECTIONS if stat == "variance_share" else DIRECTIONS[:2]
        raise PaperError(f"[paper] {where}.direction = {direction!r}; for {stat} use one of {', '.join(allowed)}")
    test = c.get("test", TESTS[stat][0])
    if test not in TESTS[stat]:
        raise PaperError(f"[paper] {where}.test = {test!r}; for statistic {stat!r} use one of {TESTS[stat]}")
    extra: dict[str, Any] = {}
    effect = c.get("paper_effect")
    if effect == NOT_PRINTED:
        extra["paper_printed"] = False
    elif effect is not None:
        extra["paper_effect"] = _number(effect, f"{where}.paper_effect")
    for key in RULE_KEYS:
        if key in c:
            extra[key] = _number(c[key], f"{where}.{key}", integer=key in ("n", "n_start", "keep"))
    if direction == "comparable" and not extra.get("margin", 0) > 0:
        raise PaperError(f"[paper] {where}: a comparable claim needs margin > 0 (e.g. margin = 0.25 of the variance)")
    if stat == "early_stopping_gain":
        t, f, p = extra.get("n_start", 40), extra.get("fraction", 0.25), extra.get("keep", 10)
        if not (0 < f < 1 and 1 <= p < t):
            raise PaperError(f"[paper] {where}: need 0 < fraction < 1 and 1 <= keep < n_start, got {f}, {p}, {t}")
    if stat == "expected_max_gain" and extra.get("n", 10) < 2:
        raise PaperError(f"[paper] {where}.n = {extra['n']}; the gain of n seeds over one needs n >= 2")
    return Claim(
        c["claim"], c["task"], c["a"], str(c.get("b", "")), stat, direction, test, where=str(c.get("where", "")),
        **extra,
    )  # fmt: skip


def parse_paper(raw: Mapping[str, Any] | None) -> PaperReference | None:
    """Validate the free-form `[paper]` table of an ExperimentSpec; None when the experiment has none."""
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise PaperError(f"[paper] must be a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise PaperError(f"[paper] unknown key(s) {unknown}; allowed: {sorted(TOP_KEYS)}")
    if not isinstance(raw.get("source", ""), str) or not raw.get("source"):
        raise PaperError("[paper] 'source' is required: e.g. source = \"Zhang et al. 2021, Table 1\"")
    notes = raw.get("notes", [])
    notes = [notes] if isinstance(notes, str) else notes
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise PaperError("[paper] 'notes' must be a string or a list of strings")
    raw_claims = raw.get("claims", [])
    if not isinstance(raw_claims, list):
        raise PaperError("[paper] 'claims' must be an array of tables: [[paper.claims]]")
    claims = tuple(_claim(c, f"claims[{i}]") for i, c in enumerate(raw_claims))
    seeds = _number(raw["seeds"], "seeds", integer=True) if "seeds" in raw else None
    return PaperReference(
        str(raw["source"]), str(raw.get("model", "")), seeds, str(raw.get("split", "")), tuple(notes),
        _results(raw), claims,
    )  # fmt: skip
