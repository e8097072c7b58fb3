"""Markdown tables from the analysis layer's frames: formatting only, no statistics computed here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

ALPHA = 0.05
DASH = "–"


def is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False


def num(value: object, digits: int = 1, signed: bool = False) -> str:
    """A number with fixed decimals; a dash for NaN/None."""
    if is_missing(value):
        return DASH
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", "−")


def pct(value: object, digits: int = 0) -> str:
    """A fraction in [0, 1] as a percentage."""
    return DASH if is_missing(value) else f"{num(100 * float(value), digits)}%"  # type: ignore[arg-type]


def pval(value: object) -> str:
    """A p-value: three decimals, `<0.001` below that; bold when below ALPHA."""
    if is_missing(value):
        return DASH
    p = float(value)  # type: ignore[arg-type]
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return f"**{text}**" if p < ALPHA else text


def ci(lo: object, hi: object, digits: int = 1, percent: bool = False) -> str:
    if is_missing(lo) or is_missing(hi):
        return ""
    fmt = (lambda v: pct(v, digits)) if percent else (lambda v: num(v, digits))
    return f"[{fmt(lo)}, {fmt(hi)}]"


def cell_text(value: object) -> str:
    text = DASH if is_missing(value) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A pipe table; `align` has one letter per column (l/r/c), default: first column left, the rest right."""
    rows = [[cell_text(c) for c in r] for r in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(cell_text(h) for h in headers) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_table(summary: pd.DataFrame, label: str | None = None) -> str:
    """Per configuration: n, mean [CI], std [CI], median, IQM, min-max, degenerate k/n (rate) [Wilson CI],
    non-degenerate mean/std. `label` names an extra first column (e.g. the experiment in a comparison report)."""
    headers = [
        "task",
        "recipe",
        "n",
        "mean [95% CI]",
        "std [95% CI]",
        "median",
        "IQM",
        "min–max",
        "degenerate [95% CI]",
        "mean / std non-deg.",
    ]
    if label:
        headers.insert(0, label)
    rows = []
    for r in summary.to_dict("records"):
        row = [
            r["task"],
            r["recipe"],
            int(r["n"]),
            f"{num(r['mean'])} {ci(r['mean_ci_lo'], r['mean_ci_hi'])}".strip(),
            f"{num(r['std'])} {ci(r['std_ci_lo'], r['std_ci_hi'])}".strip(),
            num(r["median"]),
            num(r["iqm"]),
            f"{num(r['min'])}–{num(r['max'])}",
            f"{int(r['degenerate_n'])}/{int(r['n'])} = {pct(r['degenerate_rate'])} "
            f"{ci(r['degenerate_lo'], r['degenerate_hi'], 0, percent=True)}".strip(),
            f"{num(r['mean_nondeg'])} / {num(r['std_nondeg'])}",
        ]
        if label:
            row.insert(0, r.get(label, ""))
        rows.append(row)
    return md_table(headers, rows, ("l" if label else "") + "ll" + "r" * 8)


def _pick(group: pd.DataFrame, method: str) -> dict[str, object]:
    hit = group[group["method"] == method]
    return hit.iloc[0].to_dict() if len(hit) else {}


def comparison_tables(comparisons: pd.DataFrame, label: str = "a vs b") -> tuple[str, str]:
    """Two tables from a `compare_table` frame: location (mean difference, Welch t, Mann-Whitney, permutation,
    P(a>b), ASO) and spread/failures (std ratio, Levene, Brown-Forsythe, Fisher on degenerate counts)."""
    loc_rows, spread_rows = [], []
    keys = ["task", "a", "b"]
    for (task, a, b), g in comparisons.groupby(keys, sort=False):
        name = [task, f"{a} vs {b}"]
        boot, welch = _pick(g, "bootstrap_mean_diff"), _pick(g, "welch_t")
        mwu, perm = _pick(g, "mann_whitney_u"), _pick(g, "permutation_mean_diff")
        poi, aso_ = _pick(g, "prob_improvement"), _pick(g, "aso")
        loc_rows.append(
            [
                *name,
                f"{num(boot.get('effect'), 1, True)} {ci(boot.get('ci_lo'), boot.get('ci_hi'))}".strip(),
                num(welch.get("statistic"), 2),
                pval(welch.get("pvalue")),
                pval(welch.get("p_adjusted")),
                num(mwu.get("effect"), 2, True),
                pval(mwu.get("p_adjusted")),
                pval(perm.get("p_adjusted")),
                f"{num(poi.get('effect'), 2)} {ci(poi.get('ci_lo'), poi.get('ci_hi'), 2)}".strip(),
                num(aso_.get("statistic"), 2),
            ]
        )
        ratio, lev, bf = _pick(g, "bootstrap_std_ratio"), _pick(g, "levene"), _pick(g, "brown_forsythe")
        fisher = _pick(g, "fisher_exact_degenerate")
        spread_rows.append(
            [
                *name,
                f"{num(ratio.get('effect'), 2)} {ci(ratio.get('ci_lo'), ratio.get('ci_hi'), 2)}".strip(),
                pval(lev.get("p_adjusted")),
                pval(bf.get("p_adjusted")),
                fisher.get("note", DASH) or DASH,
                f"{num(fisher.get('effect'), 2)} {ci(fisher.get('ci_lo'), fisher.get('ci_hi'), 2)}".strip(),
                pval(fisher.get("p_adjusted")),
            ]
        )
    loc = md_table(
        [
            "task",
            label,
            "mean diff [95% CI]",
            "Welch t",
            "p",
            "p (Holm)",
            "rank-biserial",
            "MWU p (Holm)",
            "perm. p (Holm)",
            "P(a>b) [95% CI]",
            "ASO ε_min",
        ],
        loc_rows,
        "ll" + "r" * 9,
    )
    spread = md_table(
        [
            "task",
            label,
            "std ratio a/b [95% CI]",
            "Levene p (Holm)",
            "Brown-Forsythe p (Holm)",
            "degenerate a vs b",
            "odds ratio [95% CI]",
            "Fisher p (Holm)",
        ],
        spread_rows,
        "ll" + "r" * 6,
    )
    return loc, spread


def status_table(runs: pd.DataFrame) -> str:
    """Run counts by status per configuration, with a total row."""
    statuses = ("done", "diverged", "stopped", "failed")
    counts = pd.crosstab([runs["task"].astype(str), runs["recipe"].astype(str)], runs["status"].astype(str))
    order = list(dict.fromkeys(zip(runs["task"].astype(str), runs["recipe"].astype(str), strict=True)))
    counts = counts.reindex(index=pd.MultiIndex.from_tuples(order), columns=statuses, fill_value=0)
    rows = [
        [t, r, *(int(v) for v in vals), int(sum(vals))]
        for (t, r), vals in zip(counts.index, counts.values, strict=True)
    ]
    totals = counts.sum(axis=0)
    rows.append(["**all**", "", *(int(v) for v in totals), int(totals.sum())])
    return md_table(["task", "recipe", *statuses, "total"], rows, "ll" + "r" * 5)


def failure_summary(runs: pd.DataFrame, limit: int = 10) -> str:
    """Failed runs grouped by the first line of their error, most frequent first."""
    failed = runs[runs["status"].astype(str) == "failed"]
    if failed.empty:
        return ""
    first_line = failed["error"].fillna("(no error recorded)").astype(str).map(lambda e: e.strip().splitlines()[-1:])
    failed = failed.assign(first=first_line.map(lambda x: (x[0] if x else "(empty)")[:160]))
    rows = []
    for error, g in sorted(failed.groupby("first"), key=lambda kv: -len(kv[1]))[:limit]:
        configs = ", ".join(sorted(g["config_key"].astype(str).unique())[:4])
        rows.append([f"`{error}`", len(g), configs, ", ".join(g["run_id"].astype(str).head(3))])
    return md_table(["error (last line)", "runs", "configurations", "e.g. run ids"], rows, "lrll")


def emp_table(emp: pd.DataFrame, at: Sequence[int] = (1, 3, 5, 10, 20)) -> str:
    """Expected max at a few trial counts per configuration, with the bootstrap band; Zhang et al.'s expected
    test performance beside it where a held-out score exists."""
    rows = []
    has_test = "test_emp" in emp and emp["test_emp"].notna().any()
    for (task, recipe), g in emp.groupby(["task", "recipe"], sort=False):
        g = g.set_index("n")
        n_max = int(g.index.max())
        ns = [n for n in at if n <= n_max] + ([n_max] if n_max not in at else [])
        cells = [f"n={n}: {num(g.at[n, 'emp'])} {ci(g.at[n, 'band_lo'], g.at[n, 'band_hi'])}".strip() for n in ns]
        row = [task, recipe, int(g["n_scores"].iloc[0]), str(g["column"].iloc[0]), "; ".join(cells)]
        if has_test:
            row.append(
                "; ".join(
                    f"n={n}: {num(g.at[n, 'test_emp'])} {ci(g.at[n, 'test_band_lo'], g.at[n, 'test_band_hi'])}".strip()
                    for n in ns
                    if not is_missing(g.at[n, "test_emp"])
                )
                or DASH
            )
        rows.append(row)
    headers = ["task", "recipe", "runs", "score column", "expected max of n trials [95% band]"]
    if has_test:
        headers.append("expected test of the best-on-validation seed [95% band]")
    return md_table(headers, rows, "llrll" + ("l" if has_test else ""))


def stopped_table(runs: pd.DataFrame) -> str:
    """Early-stopped runs per configuration: how many, where they stopped and their score there; "" if none."""
    stopped = runs[runs["status"].astype(str) == "stopped"]
    if stopped.empty:
        return ""
    rows = []
    for (task, recipe), g in stopped.groupby([stopped["task"].astype(str), stopped["recipe"].astype(str)], sort=False):
        score = pd.to_numeric(g["score"], errors="coerce")
        done, total = (pd.to_numeric(g.get(c), errors="coerce") for c in ("steps_done", "total_steps"))
        steps = done / total
        at = pct(float(steps.median())) if steps.notna().any() else DASH
        rows.append([task, recipe, len(g), at, num(score.mean()), f"{num(score.min())} – {num(score.max())}"])
    return md_table(["task", "recipe", "stopped", "at (median share of steps)", "mean score there", "range"], rows,
                    "llrrrr")  # fmt: skip


def decomposition_table(dec: pd.DataFrame) -> str:
    rows = [
        [
            r["task"],
            r["recipe"],
            f"{int(r['n_init'])} × {int(r['n_order'])} × {int(r['replicates'])}",
            pct(r["share_init"]),
            pct(r["share_order"]),
            pct(r["share_interaction"]),
            num(r["std"], 2),
            num(r["std_fix_init"], 2),
            num(r["std_fix_order"], 2),
            pval(r["p_init"]),
            pval(r["p_order"]),
            int(r["n_dropped"]),
        ]
        for r in dec.to_dict("records")
    ]
    return md_table(
        [
            "task",
            "recipe",
            "init × order × reps",
            "init share",
            "order share",
            "interaction + residual",
            "std",
            "std, init fixed",
            "std, order fixed",
            "F-test p init",
            "F-test p order",
            "runs dropped",
        ],
        rows,
        "ll" + "r" * 10,
    )


def early_stopping_table(es: pd.DataFrame) -> str:
    """One row per configuration and stopping fraction f, one column per number kept p, at the largest start count
    t not above the stored runs (else the smallest): compute saved · P(best seed kept) · E[best kept]."""
    shown = []
    for _, g in es.groupby("config_key", sort=False):
        n_runs = int(g["n_runs"].iloc[0])
        starts = sorted(int(t) for t in g["n_start"].unique())
        fitting = [t for t in starts if t <= n_runs]
        t = max(fitting) if fitting else min(starts)
        shown.append(g[g["n_start"] == t])
    keeps = sorted({int(k) for sub in shown for k in sub["keep"].unique()})
    rows = []
    for sub in shown:
        key, n_runs, t = sub["config_key"].iloc[0], int(sub["n_runs"].iloc[0]), int(sub["n_start"].iloc[0])
        how = "exact" if "method" not in sub or (sub["method"] == "exact").all() else "Monte Carlo"
        for f, gf in sub.groupby("fraction", sort=True):
            by_keep = {int(r["keep"]): r for r in gf.to_dict("records")}
            cells = [
                f"{pct(r['saved_fraction'])} · {pct(r['p_best_survives'])} · {num(r['expected_best_score'])}"
                if (r := by_keep.get(k)) is not None
                else DASH
                for k in keeps
            ]
            rows.append([key, f"{t} of {n_runs} ({how})", num(f, 2), *cells, num(gf["expected_best_all"].iloc[0])])
    headers = [
        "configuration",
        "t started (runs stored)",
        "stop at f",
        *(f"keep p={k}" for k in keeps),
        "E[best], all t trained",
    ]
    return md_table(headers, rows, "lrr" + "r" * (len(keeps) + 1))
