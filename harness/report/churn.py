"""Report sections: prediction churn per task, seeds needed per claim, and the adaptive seed budget.

Example texts come from the task's dev split through harness/experiment/data.py with the run's own evaluation
protocol (split seed, eval size), so the predictions table stores only indices; when the data cannot
be read at report time the tables show indices without text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.analysis.churn import churn, most_flipped, per_example_accuracy, prediction_matrix, recipe_agreement
from harness.analysis.claims import TEST_NAMES, ClaimVerdict
from harness.analysis.describe import COUNTED_STATUSES
from harness.analysis.power import seeds_needed
from harness.experiment import data as D
from harness.experiment.seed_budget import load_budget
from harness.experiment.spec import RunSpec
from harness.report.tables import ci, md_table, num, pct, pval
from harness.storage.store import load_predictions

COUNTED = ("done", "stopped")  # runs whose predictions are a finished (or stopped) model's
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


def _eval_examples(spec: RunSpec, split: str, data_dir: str | None) -> list[D.Example] | None:
    """The examples of a run's evaluation split in stored order (None when the data cannot be read)."""
    try:
        dev = D.load_split(spec.task_def, "dev", data_dir)
        splits = D.eval_splits(spec.task_def, dev, spec.eval_protocol, spec.split_seed, spec.eval_size)
    except (D.DataError, OSError, ValueError):
        return None
    examples = splits.test if split == "test" else splits.val
    return list(examples) if examples is not None else None


def _spec_of(runs: pd.DataFrame) -> RunSpec | None:
    """The RunSpec of the first run (None when its stored spec cannot be read, e.g. an imported run)."""
    try:
        return RunSpec.from_json(str(runs["spec"].iloc[0]))
    except (TypeError, ValueError, KeyError):
        return None


def _text(example: D.Example) -> str:
    text = example.text_a if example.text_b is None else f"{example.text_a} ‖ {example.text_b}"
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def churn_section(
    exp_dir: Path,
    runs: pd.DataFrame,
    recipes: Sequence[str],
    colors: Mapping[str, str],
    out: Path,
    data_dir: str | None = None,
) -> list[str]:
    """Markdown (and one PNG per task) for the per-example predictions of the stored runs."""
    md = ["## Prediction churn between seeds", ""]
    preds = load_predictions(exp_dir)
    if preds.empty:
        return [*md, "No per-example predictions stored (runs recorded before predictions were kept).", ""]
    counted = runs[runs["status"].astype(str).isin(COUNTED)]
    for task in dict.fromkeys(counted["task"].astype(str)):
        md += _task_churn(task, counted[counted["task"].astype(str) == task], preds, recipes, colors, out, data_dir)
    return [*md, CHURN_NOTE, ""]


def _task_churn(
    task: str,
    runs: pd.DataFrame,
    preds: pd.DataFrame,
    recipes: Sequence[str],
    colors: Mapping[str, str],
    out: Path,
    data_dir: str | None,
) -> list[str]:
    first = _spec_of(runs)
    ids = set(runs["run_id"].astype(str))
    mine = preds[preds["run_id"].astype(str).isin(ids)]
    split = "test" if (mine["split"].astype(str) == "test").any() else "val"  # the reported split
    if first is not None and first.task_def.is_regression:
        return [f"### {task}", "", "Regression task: churn of class predictions does not apply.", ""]
    examples = _eval_examples(first, split, data_dir) if first is not None else None
    matrices: dict[str, np.ndarray] = {}
    for recipe in [r for r in recipes if r in set(runs["recipe"].astype(str))]:
        ids = runs[runs["recipe"].astype(str) == recipe]["run_id"].astype(str).tolist()
        _, m = prediction_matrix(preds, ids, split)
        if len(m) >= 2:
            matrices[recipe] = m
    if not matrices:
        return [f"### {task}", "", "Fewer than two seeds with stored predictions per recipe.", ""]
    width = {m.shape[1] for m in matrices.values()}
    labels = None
    if examples is not None and width == {len(examples)}:
        labels = np.array([e.label for e in examples], float)
    md = [f"### {task}", "", f"Predictions on the {split} split ({next(iter(width))} examples).", ""]
    rows = []
    for recipe, m in matrices.items():
        res = churn(m)
        row = [recipe, res.n_runs, pct(res.churn, 1), ci(100 * res.ci_low, 100 * res.ci_high)]
        if labels is not None:
            acc = per_example_accuracy(m, labels)
            row += [int((acc == 1).sum()), int((acc == 0).sum()), int(((acc > 0) & (acc < 1)).sum())]
        else:
            row += ["–", "–", "–"]
        rows.append(row)
    headers = ["recipe", "seeds", "churn", "95% CI (%)", "always right", "always wrong", "flips"]
    md += [md_table(headers, rows, "lrrrrrr"), ""]
    figure = _churn_figure(task, matrices, labels, colors, out / f"churn_{_slug(task)}.png")
    md += [f"![{task}: churn per recipe and per-example accuracy across seeds]({figure.name})", ""]

    base = next(iter(matrices))
    flips = most_flipped(matrices[base], labels, top=TOP_FLIPS)
    flips = flips[flips["flip_rate"] > 0]
    if not flips.empty and labels is not None:  # without the examples' text the table is indices only
        md += [f"Examples that flip most between the seeds of `{base}`:", ""]
        flip_rows = []
        for r in flips.to_dict("records"):
            text = _text(examples[int(r["example"])])  # type: ignore[index]
            gold = r.get("gold", "–")
            flip_rows.append([int(r["example"]), pct(r["flip_rate"]), r["votes"], gold, text])
        md += [md_table(["#", "pairs disagreeing", "seed votes", "gold", "text"], flip_rows, "rrlll"), ""]

    others = [r for r in matrices if r != base]
    if others:
        agree = []
        for recipe in others:
            a = recipe_agreement(matrices[recipe], matrices[base], labels)
            agree.append([f"{recipe} vs {base}", pct(a.between, 1), pct(a.within, 1), num(100 * a.excess, 1, True),
                          pval(a.p_value), num(a.accuracy_corr, 2)])  # fmt: skip
        headers = ["pair", "churn between", "churn within", "excess (pp)", "permutation p", "Spearman ρ (acc.)"]
        md += ["Recipe agreement (does the recipe change which examples fail, or only how many?):", ""]
        md += [md_table(headers, agree, "lrrrrr"), ""]
    return md


def _churn_figure(
    task: str, matrices: Mapping[str, np.ndarray], labels: np.ndarray | None, colors: Mapping[str, str], path: Path
) -> Path:
    panels = 2 if labels is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels + 0.6, 3.2), squeeze=False)
    ax = axes[0, 0]
    names = list(matrices)
    results = [churn(matrices[r]) for r in names]
    values = [100 * r.churn for r in results]
    low = [100 * (r.churn - r.ci_low) if math.isfinite(r.ci_low) else 0.0 for r in results]
    high = [100 * (r.ci_high - r.churn) if math.isfinite(r.ci_high) else 0.0 for r in results]
    err = np.array([low, high])
    ax.bar(range(len(names)), values, yerr=err, capsize=4, color=[colors.get(n, "#0072B2") for n in names])
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("churn between seeds (%)")
    ax.set_title(f"{task}: churn (95% CI)")
    if labels is not None:
        ax2 = axes[0, 1]
        for name in names:
            acc = per_example_accuracy(matrices[name], labels)
            n = len(matrices[name])
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
            "sum; harness/analysis/power.py). Early-stopped runs are left out. A planning number for the next study."
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
        "difference and spreads were the true ones (noncentral t; harness/analysis/power.py; early-stopped runs "
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
