"""Report sections: prediction churn per task, seeds needed per claim, and the adaptive seed budget.

The churn numbers are the analysis tables churn, per_example and recipe_agreement (`harness analyze` writes
them); example texts come from the task's dev split through harness/experiment/data.py with the run's own
evaluation protocol (split seed, eval size), so the tables store only indices; when the data cannot be read at
report time the tables show indices without text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.analysis.predictions.agreement import CHURN_STATUSES, eval_examples, run_spec, top_flips
from harness.analysis.predictions.churn import label_text
from harness.analysis.seeds.describe import COUNTED_STATUSES
from harness.analysis.stats.power import seeds_needed
from harness.analysis.verdicts.claims import TEST_NAMES, ClaimVerdict
from harness.experiment import data as D
from harness.experiment.seed_budget import load_budget
from harness.report.tables import ci, md_table, num, pct, pval
from harness.storage.store import part_stats

TOP_FLIPS = 8
TEXT_CHARS = 140

CHURN_NOTE = (
    "Churn: share of examples on which two seeds of a recipe predict different classes, averaged over all "
    "pairs of seeds (Bhojanapalli et al. 2021); 95% CI by the jackknife over seeds (the examples held fixed). "
    "Accuracy per example: share of seeds right on it; *always right / always wrong / flips* count examples "
    "that every seed gets right, every seed gets wrong, or that split the seeds. Recipe agreement: churn between "
    "a seed of a and a seed of b, against the mean churn within a and within b; excess > 0 with a small "
    "permutation p means the recipes differ in *which* examples they get wrong beyond seed noise, while a "
    "high Spearman ρ of per-example accuracy means the same examples stay hard and only *how many* changes."
)


def _text(example: D.Example) -> str:
    text = example.text_a if example.text_b is None else f"{example.text_a} ‖ {example.text_b}"
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def churn_section(
    exp_dir: Path,
    runs: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    recipes: Sequence[str],
    colors: Mapping[str, str],
    out: Path,
    data_dir: str | None = None,
) -> list[str]:
    """Markdown (and one PNG per task) from the analysis tables churn, per_example and recipe_agreement
    (harness/analysis/predictions/agreement.py); example texts from the task data."""
    md = ["## Prediction churn between seeds", ""]
    if not part_stats(exp_dir, "predictions"):
        return [*md, "No per-example predictions stored (runs recorded before predictions were kept).", ""]
    counted = runs[runs["status"].astype(str).isin(CHURN_STATUSES)]
    for task in dict.fromkeys(counted["task"].astype(str)):
        md += _task_churn(task, counted[counted["task"].astype(str) == task], tables, recipes, colors, out, data_dir)
    return [*md, CHURN_NOTE, ""]


def _of_task(frame: pd.DataFrame | None, task: str, recipes: Sequence[str], column: str = "recipe") -> pd.DataFrame:
    """The rows of `task`, in the order of `recipes` (the experiment's)."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=[] if frame is None else frame.columns)
    rows = frame[frame["task"].astype(str) == task]
    rank = {r: i for i, r in enumerate(recipes)}
    key = rows[column].astype(str).map(lambda r: rank.get(r, len(rank)))
    return rows.iloc[key.to_numpy().argsort(kind="stable")]


def _task_churn(
    task: str,
    runs: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    recipes: Sequence[str],
    colors: Mapping[str, str],
    out: Path,
    data_dir: str | None,
) -> list[str]:
    first = run_spec(runs)
    if first is not None and first.task_def.is_regression:
        return [f"### {task}", "", "Regression task: churn of class predictions does not apply.", ""]
    rows = _of_task(tables.get("churn"), task, recipes)
    if rows.empty:
        return [f"### {task}", "", "Fewer than two seeds with stored predictions per recipe.", ""]
    split, width = str(rows["split"].iloc[0]), int(rows["n_examples"].iloc[0])
    per_example = _of_task(tables.get("per_example"), task, recipes)
    labelled = bool(per_example["share_correct"].notna().any())
    examples = eval_examples(first, split, data_dir) if first is not None and labelled else None
    md = [f"### {task}", "", f"Predictions on the {split} split ({width} examples).", ""]
    body = []
    for r in rows.to_dict("records"):
        row = [r["recipe"], r["n_runs"], pct(r["churn"], 1), ci(100 * r["ci_low"], 100 * r["ci_high"])]
        counts = [r["always_right"], r["always_wrong"], r["flips"]]
        body.append(row + ([int(x) for x in counts] if labelled else ["–", "–", "–"]))
    headers = ["recipe", "seeds", "churn", "95% CI (%)", "always right", "always wrong", "flips"]
    md += [md_table(headers, body, "lrrrrrr"), ""]
    figure = _churn_figure(task, rows, per_example if labelled else None, colors, out / f"churn_{_slug(task)}.png")
    md += [f"![{task}: churn per recipe and per-example accuracy across seeds]({figure.name})", ""]

    base = str(rows["recipe"].iloc[0])
    agreement = _of_task(tables.get("recipe_agreement"), task, recipes, column="a")
    if not agreement.empty:
        base = str(agreement["b"].iloc[0])
    flips = top_flips(per_example, task, base, TOP_FLIPS)
    if not flips.empty and examples is not None:  # without the examples' text the table is indices only
        md += [f"Examples that flip most between the seeds of `{base}`:", ""]
        flip_rows = []
        for r in flips.to_dict("records"):
            j = int(r["example"])
            text = _text(examples[j]) if j < len(examples) else "(text unavailable)"
            gold = label_text(r["gold"]) if pd.notna(r["gold"]) else "–"
            flip_rows.append([j, pct(r["flip_rate"]), r["votes"], gold, text])
        md += [md_table(["#", "pairs disagreeing", "seed votes", "gold", "text"], flip_rows, "rrlll"), ""]

    if not agreement.empty:
        agree = [[f"{a['a']} vs {a['b']}", pct(a["between"], 1), pct(a["within"], 1), num(100 * a["excess"], 1, True),
                  pval(a["p_value"]), num(a["accuracy_corr"], 2)] for a in agreement.to_dict("records")]  # fmt: skip
        headers = ["pair", "churn between", "churn within", "excess (pp)", "permutation p", "Spearman ρ (acc.)"]
        md += ["Recipe agreement (does the recipe change which examples fail, or only how many?):", ""]
        md += [md_table(headers, agree, "lrrrrr"), ""]
    return md


def _churn_figure(
    task: str, rows: pd.DataFrame, per_example: pd.DataFrame | None, colors: Mapping[str, str], path: Path
) -> Path:
    panels = 2 if per_example is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels + 0.6, 3.2), squeeze=False)
    ax = axes[0, 0]
    names = rows["recipe"].astype(str).tolist()
    value, lo, hi = (rows[c].to_numpy(float) for c in ("churn", "ci_low", "ci_high"))
    err = np.array(
        [np.where(np.isfinite(lo), 100 * (value - lo), 0.0), np.where(np.isfinite(hi), 100 * (hi - value), 0.0)]
    )
    ax.bar(range(len(names)), 100 * value, yerr=err, capsize=4, color=[colors.get(n, "#0072B2") for n in names])
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("churn between seeds (%)")
    ax.set_title(f"{task}: churn (95% CI)")
    if per_example is not None:
        ax2 = axes[0, 1]
        for name, n in zip(names, rows["n_runs"].astype(int), strict=True):
            acc = per_example.loc[per_example["recipe"].astype(str) == name, "share_correct"].to_numpy(float)
            bins = (np.arange(n + 2) - 0.5) / n  # one bin per possible share k/n
            ax2.hist(acc, bins=bins, histtype="step", linewidth=1.6, color=colors.get(name, "#0072B2"), label=name)
        ax2.set_xlabel("share of seeds right on the example")
        ax2.set_ylabel("examples")
        ax2.set_title("per-example accuracy")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def seeds_needed_section(
    runs: pd.DataFrame, recipes: Sequence[str], verdicts: Sequence[ClaimVerdict] = ()
) -> list[str]:
    """Seeds needed: per claim, from its verdict (the one-sided test the verdict uses, at the claim's Holm level,
    early-stopped runs left out); without claims, per recipe vs the baseline (two-sided Welch at 0.05)."""
    if verdicts:
        lines = []
        for v in verdicts:
            label = f"{v.task}: {v.a} vs {v.b} ({v.claim})" if v.b else f"{v.task}: {v.a} ({v.claim})"
            if v.label != "inconclusive":
                lines.append(f"- {label}: {v.label}; no more seeds needed to settle it here.")
            elif v.seeds_needed is not None:
                lines.append(
                    f"- {label}: inconclusive with n = {v.n_a}/{v.n_b}: **{v.seeds_needed} seeds per arm** for 80% "
                    f"power of the one-sided {TEST_NAMES.get(v.test, v.test)} test at its Holm level "
                    f"{v.holm_level:.3g}."
                )
            else:
                lines.append(f"- {label}: inconclusive; no finite number of seeds (no effect in the claimed "
                             "direction, or no power formula for this statistic).")  # fmt: skip
        note = (
            "Seeds per arm at which the claim's own test, one-sided at its Holm level (α / (m − r + 1) for the claim "
            "ranked r of m), would have 80% power if the observed effect and spreads were the true ones (Welch t: "
            "noncentral t; Brown-Forsythe/Levene: the t test of the absolute deviations; Fisher: exact binomial "
            "sum; harness/analysis/stats/power.py). Early-stopped runs are left out. "
            "A planning number for the next study."
        )
        return ["## Seeds needed", "", *lines, "", note, ""]
    counted = runs[runs["status"].astype(str).isin(COUNTED_STATUSES)]
    tasks = list(dict.fromkeys(counted["task"].astype(str)))
    lines = []
    for task, a, b in ((t, r, recipes[0]) for t in tasks for r in recipes[1:]):
        sel = counted[counted["task"].astype(str) == task]
        sa = sel[sel["recipe"].astype(str) == a]["score"].to_numpy(float)
        sb = sel[sel["recipe"].astype(str) == b]["score"].to_numpy(float)
        label = f"{task}: {a} vs {b}"
        try:
            res = seeds_needed(sa, sb)
        except ValueError:
            lines.append(f"- {label}: fewer than two scored seeds per recipe.")
            continue
        need = (
            f"**{res.seeds_needed} seeds per recipe** for 80% power (normal approximation {res.seeds_normal:.0f})"
            if res.seeds_needed is not None
            else "no finite number of seeds (no observed difference)"
        )
        lines.append(
            f"- {label}: observed difference {res.delta:+.2f} (std {res.sd_a:.2f} / {res.sd_b:.2f}, "
            f"n = {res.n_a}/{res.n_b}, power now {pct(res.power_now)}): {need}."
        )
    if not lines:
        return []
    return [
        "## Seeds needed",
        "",
        *lines,
        "",
        "Seeds per recipe for which a two-sided Welch t test at 0.05 would have 80% power if the observed "
        "difference and spreads were the true ones (noncentral t; harness/analysis/stats/power.py; early-stopped runs "
        "left out). A planning number for the next study: it uses this study's estimates, so it is itself uncertain.",
        "",
    ]


def budget_section(exp_dir: Path) -> list[str]:
    """Why an adaptive seed budget stopped each configuration, and the runs it saved against its maximum."""
    budget = load_budget(exp_dir)
    if not budget:
        return []
    rows = [[c["config_key"], c["n"], c["look"], c["reason"]] for c in budget["configs"]]
    return [
        "## Adaptive seed budget",
        "",
        f"Target `{budget['target']}`, at most {budget['max']} seeds per configuration: {budget['runs_used']} runs "
        f"instead of {budget['runs_at_max']}, **{budget['runs_saved']} runs saved** "
        f"({pct(budget['runs_saved'] / budget['runs_at_max']) if budget['runs_at_max'] else '–'} of the maximum).",
        "",
        md_table(["configuration", "seeds", "look", "why it stopped"], rows, "lrrl"),
        "",
        "Sequential targets test each pair after every step with Welch's t and Lan-DeMets alpha spending "
        "(O'Brien-Fleming or Pocock type; Lan & DeMets 1983), so the error rate over all looks stays at the "
        "declared alpha: a claim on means one-sided at α / m (its share of the Holm family of the m claims), a pair "
        "without a claim two-sided at α. The verdict of such a claim replays the same group-sequential test and "
        "reads its stage-wise p-value, so the budget and the verdict agree. Claims on spreads and degenerate rates "
        "were not considered when the budget stopped adding seeds; their verdicts say so. `ci_width<=W` stops a "
        "configuration once its 95% t interval of the mean is at most W wide.",
        "",
    ]
