"""What the report's figures show: every seed on an axis, crowded curve panels as bands, legends inside the
canvas and off the data, and a forest plot with one row per claim beside the paper's printed effect."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection

from harness.analysis.verdicts.claims import EFFECT_NAMES
from harness.report import forest, plots
from harness.report.summary import summary_rows

NAN = float("nan")


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every figure the report layer saves during the test, drawn (so extents are known) before it is closed."""
    saved: list = []
    original = plots.save_figure

    def keep(fig, path: Path, dpi: int = plots.DPI) -> Path:
        fig.canvas.draw()
        fig.test_renderer = fig.canvas.get_renderer()  # closing the figure detaches its canvas
        saved.append(fig)
        return original(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(forest, "save_figure", keep)
    return saved


def mosbach_rte_like(seed: int = 0) -> tuple[pd.DataFrame, pd.Series, dict[str, float]]:
    """Mosbach et al.'s Table 1 on RTE as our GPU store has it: most default and mixout seeds at or below the
    constant predictor (52.7), a few far below it, the recipe's seeds above."""
    rng = np.random.default_rng(seed)
    scores = {
        "default": np.r_[np.full(15, 52.7), rng.choice([47.3, 48.0, 50.2, 51.6], 8), 57.0, 53.4],
        "mixout": np.r_[rng.uniform(45.8, 52.7, 24), 53.1],
        "mosbach": np.r_[rng.uniform(53.0, 56.3, 16), rng.uniform(49.5, 52.7, 9)],
    }
    runs = pd.DataFrame(
        [{"task": "rte", "recipe": r, "metric": "accuracy", "status": "done", "score": float(s)}
         for r, values in scores.items() for s in values]
    )  # fmt: skip
    degenerate = runs["score"] <= 52.71
    return runs, degenerate, {"rte": 52.71}


def test_the_strip_plot_keeps_every_seed_on_an_axis(tmp_path, figures):
    runs, degenerate, base = mosbach_rte_like()
    colors = plots.group_colors(["default", "mixout", "mosbach"])
    plots.seed_distributions(runs, degenerate, base, colors, tmp_path / "seeds.png")
    (fig,) = figures
    limits = [ax.get_ylim() for ax in fig.axes]
    off = [s for s in runs["score"] if not any(lo <= s <= hi for lo, hi in limits)]
    assert not off, f"{len(off)} seeds off every axis: {sorted(off)[:5]}"
    assert len(fig.axes) == 2  # the panel is broken in two: the spread above, the seeds far below it beneath


def test_a_panel_without_far_degenerate_seeds_is_one_axis(tmp_path, figures):
    runs = pd.DataFrame({"task": "sst2", "recipe": "a", "metric": "accuracy", "status": "done",
                         "score": [78.0, 79.5, 80.1, 76.2]})  # fmt: skip
    plots.seed_distributions(
        runs, pd.Series(False, index=runs.index), {"sst2": 51.0}, {"a": "#000"}, tmp_path / "s.png"
    )
    (fig,) = figures
    assert len(fig.axes) == 1
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= runs["score"].min() and runs["score"].max() <= hi


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_the_strip_legend_explains_only_what_is_drawn(tmp_path, figures):
    """No × and a baseline below the axis: the legend names neither (the survey's seeds.png named both)."""
    runs = pd.DataFrame({"task": "sst2", "recipe": "a", "metric": "accuracy", "status": "done",
                         "score": [78.0, 79.5, 80.1, 76.2]})  # fmt: skip
    plots.seed_distributions(runs, pd.Series(False, index=runs.index), {"sst2": 51.0}, {"a": "#000"}, tmp_path / "a")
    runs, degenerate, base = mosbach_rte_like()
    plots.seed_distributions(
        runs, degenerate, base, plots.group_colors(["default", "mixout", "mosbach"]), tmp_path / "b"
    )
    clean, collapsed = figures
    assert _legend_labels(clean) == ["one seed"]
    assert _legend_labels(collapsed) == ["one seed", "degenerate seed", "degenerate at or below"]


def grid_runs(n: int = 100, degenerate_n: int = 6, evals: int = 10) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(1)
    runs, curves = [], []
    for i in range(n):
        final = 51.0 if i < degenerate_n else rng.normal(76, 3)
        runs.append({"run_id": f"r{i}", "task": "sst2", "recipe": "bertadam", "status": "done",
                     "metric": "accuracy", "score": final})  # fmt: skip
        for k in range(evals):
            f = (k + 1) / evals
            curves.append({"run_id": f"r{i}", "eval_index": k, "fraction": f,
                           "val_metric": 51 + (final - 51) * f + rng.normal(0, 2)})  # fmt: skip
    frame = pd.DataFrame(runs)
    return frame, pd.DataFrame(curves), pd.Series(np.arange(n) < degenerate_n, index=frame.index)


def test_a_crowded_curve_panel_is_drawn_as_bands_and_a_sparse_outcome_as_lines(tmp_path, figures):
    runs, curves, degenerate = grid_runs()
    plots.eval_curves(curves, runs, degenerate, "sst2", tmp_path / "curves.png")
    (fig,) = figures
    ax = fig.axes[0]
    medians = [line for line in ax.get_lines() if len(line.get_xdata()) > 1 and line.get_linestyle() != "None"]
    seed_lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    bands = [c for c in ax.collections if not isinstance(c, LineCollection)]
    # 6 degenerate seeds as lines, the 94 others as one median line over two bands (was 100 lines)
    assert len(medians) == 1 and len(bands) == 2
    assert [len(c.get_segments()) for c in seed_lines] == [6]


def _inside(inner, outer, tol: float = 1.0) -> bool:
    return (
        inner.x0 >= outer.x0 - tol
        and inner.y0 >= outer.y0 - tol
        and inner.x1 <= outer.x1 + tol
        and (inner.y1 <= outer.y1 + tol)
    )


def _check_legends(fig) -> None:
    renderer = fig.test_renderer
    canvas = fig.bbox
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    assert legends, "a figure without a legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert _inside(box, canvas), f"legend {box} leaves the canvas {canvas}"
        for ax in fig.axes:
            if ax.get_visible() and ax.get_legend() is not legend:
                assert not box.overlaps(ax.get_window_extent(renderer)), "legend on a data panel"


def verdict_frame() -> pd.DataFrame:
    """A hand-made verdict frame in the columns harness.report.summary documents (Mosbach-like claims)."""
    rows = [
        ("spread smaller (Levene)", "cola", "std", 1.64, 0.88, 4.79, 1.0 / 25.6, "not reproduced", "", NAN),
        ("mean higher", "cola", "mean", 9.3, 7.7, 10.5, 19.0, "reproduced", "", NAN),
        ("fails less often", "cola", "degenerate_rate", -0.96, -1.0, -0.8, NAN, "reproduced", "", NAN),
        ("spread smaller on RTE", "rte", "std", 0.62, 0.43, 0.93, 2.4 / 7.2, "not testable here", "at the bar", NAN),
        ("re-init raises the mean", "sst2", "mean", 1.4, -0.2, 2.7, 3.1, "inconclusive", "CI holds both", 21),
        ("an open ratio CI", "sst2", "std", 0.5, 0.0, math.inf, NAN, "inconclusive", "", NAN),
        ("not run", "mrpc", "mean", NAN, NAN, NAN, 2.0, "not testable here", "not run at this scale", NAN),
    ]
    cols = ["claim", "task", "statistic", "effect", "ci_lo", "ci_hi", "paper_effect", "label", "reason", "seeds_needed"]
    frame = pd.DataFrame(rows, columns=cols)
    frame = frame.assign(a="x", b="y", direction="greater", test="welch_t", n_a=25, n_b=25, p_holm=0.5)
    # the rest of harness.analysis.verdicts.claims.ClaimVerdict, so the frame also renders as the verdict table
    return frame.assign(
        n_stopped_excluded=0, effect_name=frame["statistic"].map(EFFECT_NAMES).fillna("mean_diff"), p_one_sided=0.5,
        alpha=0.05, caveats=[[] for _ in range(len(frame))], where="", detail="", family_size=len(frame),
        holm_level=0.05 / len(frame),
    )  # fmt: skip


def test_forest_plot_has_a_row_per_claim_and_the_papers_effect_beside_ours(tmp_path, figures):
    frame = verdict_frame()
    path = forest.forest_plot(frame, tmp_path / "forest.png", "x")
    assert path is not None and path.stat().st_size > 5000
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_xscale() for ax in panels] == ["linear", "log", "linear"]  # means, stds (ratios), rates
    assert sum(len(ax.get_yticks()) for ax in panels) == len(frame)
    diamonds = sum(len(c.get_offsets()) for ax in panels for c in ax.collections)
    assert diamonds == frame["paper_effect"].notna().sum()
    for ax in panels:  # every finite estimate and paper effect is on its panel's axis
        lo, hi = ax.get_xlim()
        for line in ax.get_lines():
            for x in line.get_xdata():
                assert lo - 1e-9 <= x <= hi + 1e-9
    labels = [t.get_text() for ax in fig.axes if not ax.get_xlabel() for t in ax.get_yticklabels()]
    assert "not testable here\n(no estimate)" in labels and labels.count("reproduced") == 2
    _check_legends(fig)


def dodge_frame() -> pd.DataFrame:
    """Dodge et al.'s one-recipe claims beside a difference of means, in the verdict frame's columns."""
    rows = [
        ("init matters as much as order", "variance_share", 0.12, -0.05, 0.31),
        ("more seeds raise the best score", "expected_max_gain", 3.2, 1.9, 4.4),
        ("early stopping beats the same budget", "early_stopping_gain", 0.8, -0.3, 1.7),
        ("mean higher", "mean", 9.3, 7.7, 10.5),
    ]
    frame = verdict_frame().iloc[: len(rows)].reset_index(drop=True)
    return frame.assign(
        claim=[r[0] for r in rows], statistic=[r[1] for r in rows], effect=[r[2] for r in rows],
        ci_lo=[r[3] for r in rows], ci_hi=[r[4] for r in rows], paper_effect=NAN, label="inconclusive",
    )  # fmt: skip


def test_a_ratio_axis_labels_its_ticks_below_one():
    """The paper's spread ratios often sit near 0.2-0.5: that side of the log axis is labelled too."""
    ticks = [forest._minor_tick(v) for v in (0.2, 0.3, 0.5, 2.0, 4.0, 5.0, 20.0)]
    assert ticks == ["0.2", "", "0.5", "2", "", "5", "20"]


def test_dodge_claims_get_axes_of_their_own_kind(tmp_path, figures):
    """A variance share or an expected-max gain is not a difference of two recipes' means: each kind has its
    own panel, its own axis label, and its own units in the summary line."""
    forest.forest_plot(dodge_frame(), tmp_path / "forest.png")
    (fig,) = figures
    panels = {ax.get_xlabel(): [t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes if ax.get_xlabel()}
    assert len(panels) == 4
    share = next(label for label in panels if "variance share" in label)
    assert panels[share] == ["init matters as much as order [cola]"]
    means = next(label for label in panels if label.startswith("difference of means"))
    assert panels[means] == ["mean higher [rte]"]
    share_ax = next(ax for ax in fig.axes if ax.get_xlabel() == share)
    assert share_ax.get_xlim()[1] - share_ax.get_xlim()[0] < 1.0  # a share's axis, not padded in score points
    lines = {r[0]: r[3] for r in summary_rows(dodge_frame().assign(b=["", None, None, "y"]))}
    assert lines["init matters as much as order (x)"] == "+0.12 of the variance [−0.05, 0.31]"  # one arm, no "vs"
    assert lines["mean higher (x vs y)"] == "+9.3 [7.7, 10.5]"


def test_a_claim_tested_against_a_margin_shows_it(tmp_path, figures):
    """Dodge et al.'s 'comparable' share is tested against |share difference| < 0.25, the expected-max gain
    against 1 point: the plot draws the band and the line, and its axis holds them, beside the null line."""
    frame = dodge_frame().assign(direction=["comparable", "greater", "greater", "greater"], margin=[0.25, 1.0, 0, 0])
    forest.forest_plot(frame, tmp_path / "forest.png")
    (fig,) = figures
    share_ax = next(ax for ax in fig.axes if "variance share" in ax.get_xlabel())
    (band,) = share_ax.collections
    xs = band.get_paths()[0].vertices[:, 0]
    assert (xs.min(), xs.max()) == pytest.approx((-0.25, 0.25))
    lo, hi = share_ax.get_xlim()
    assert lo < -0.25 and hi > 0.25
    gain_ax = next(ax for ax in fig.axes if ax.get_xlabel().startswith("E[best of n seeds]"))
    assert any(list(line.get_xdata()) == [1.0, 1.0] and line.get_linestyle() == ":" for line in gain_ax.lines)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "comparable: within the claim's margin" in labels and "smallest effect claimed" in labels
    assert "paper's printed effect" not in labels  # no row has one: the legend names only what is drawn
    forest.forest_plot(dodge_frame(), tmp_path / "old.png")  # a table written before margins were kept
    assert not any(ax.collections for ax in figures[1].axes)


def test_the_forest_caption_names_the_papers_effect_only_where_one_is_drawn():
    """Dodge et al. printed none of their claims' effects: the caption must not promise a comparison."""
    assert "beside the paper's printed effect" in forest.forest_caption(verdict_frame())
    assert "beside" not in forest.forest_caption(dodge_frame())
    assert "printed no effect" in forest.forest_caption(dodge_frame())
    ratio_below_axis = dodge_frame().assign(statistic="std", paper_effect=0.0)  # a ratio of 0: off a log axis
    assert "beside" not in forest.forest_caption(ratio_below_axis)


def test_paper_forest_names_each_experiment(tmp_path, figures):
    frame = verdict_frame()
    forest.paper_forest({"table1": frame.iloc[:2], "small-data": frame.iloc[2:3]}, tmp_path / "paper.png")
    (fig,) = figures
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
    assert "table1: spread smaller" in texts and "small-data: fails less often" in texts
    assert forest.paper_forest({"empty": frame.iloc[:0]}, tmp_path / "none.png") is None


def test_legends_sit_inside_the_figure_and_off_the_data(tmp_path, figures):
    runs, degenerate, base = mosbach_rte_like()
    colors = plots.group_colors(["default", "mixout", "mosbach"])
    plots.seed_distributions(runs, degenerate, base, colors, tmp_path / "seeds.png")
    grid, curves, deg = grid_runs()
    plots.eval_curves(curves, grid, deg, "sst2", tmp_path / "curves.png")
    summary = pd.DataFrame({"task": "rte", "recipe": ["default", "mosbach"], "degenerate_rate": [0.92, 0.36],
                            "degenerate_lo": [0.75, 0.2], "degenerate_hi": [0.98, 0.55], "degenerate_n": [23, 9],
                            "n": [25, 25]})  # fmt: skip
    plots.degenerate_rates(summary, colors, tmp_path / "degenerate.png")
    emp = pd.DataFrame({"task": "rte", "recipe": "default", "n": [1, 2, 3], "emp": [50.0, 51, 52],
                        "band_lo": [49.0, 50, 51], "band_hi": [51.0, 52, 53], "column": "val_best"})  # fmt: skip
    plots.expected_max(emp, {"rte": "accuracy"}, colors, tmp_path / "emp.png")
    dec = pd.DataFrame({"task": ["sst2"], "recipe": ["a"], "share_init": [0.1], "share_order": [0.7],
                        "share_interaction": [0.2]})  # fmt: skip
    plots.variance_shares(dec, tmp_path / "variance.png")
    assert len(figures) == 5
    for fig in figures:
        _check_legends(fig)
