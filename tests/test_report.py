"""Report layer: files, sections, self-contained HTML, paper verdicts on data with a known effect, compare."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from harness.experiment.config import parse_experiment
from harness.experiment.spec import EarlyStopPolicy
from harness.report import ReportError, compare_report, markdown_to_html, parse_paper, write_report
from harness.storage.store import write_run

FAST = {"n_boot": 200, "n_perm": 199}
N_INIT, N_ORDER, N_EVALS = 4, 2, 5
PROVENANCE = json.dumps({"torch": "2.13.0", "transformers": "5.0.0", "device": "cpu", "git_sha": "deadbeef"})


def build_store(
    path: Path, offsets: dict[str, float], seed: int = 0, model: str = "packaged", failed: bool = True
) -> Path:
    """rte runs: recipe score = 70 + offset + init/order effects + tiny noise, on a 4 x 2 seed grid; 5 eval points.
    standard gets one extra failed run; 'bad' recipes (offset <= -20) sit on the majority baseline (degenerate)."""
    rng = np.random.default_rng(seed)
    init_fx, order_fx = rng.normal(0, 1.0, N_INIT), rng.normal(0, 0.5, N_ORDER)
    frac = np.arange(1, N_EVALS + 1) / N_EVALS
    for recipe, offset in offsets.items():
        for i in range(N_INIT):
            for j in range(N_ORDER):
                final = 70 + offset + init_fx[i] + order_fx[j] + rng.normal(0, 0.05)
                if offset <= -20:
                    final = 52.5 - abs(rng.normal(0, 0.3))
                curve = 52.0 + (final - 52.0) * frac
                spec = {
                    "model": model,
                    "model_layers": 2,
                    "sample_size": 1000,
                    "eval_protocol": "heldout",
                    "recipe": {"name": recipe, "lr": 2e-5, "reinit_layers": 2 if recipe == "reinit" else 0},
                }
                run = {
                    "run_id": f"{recipe}-{i}-{j}",
                    "experiment": path.name,
                    "task": "rte",
                    "recipe": recipe,
                    "model": model,
                    "config_key": f"rte/{recipe}",
                    "init_seed": i,
                    "order_seed": j,
                    "sample_seed": 0,
                    "status": "done",
                    "metric": "accuracy",
                    "score": final,
                    "val_best": final + 0.5,
                    "val_final": final,
                    "majority_val": 52.9,
                    "majority_test": 52.5,
                    "steps_done": 100,
                    "total_steps": 100,
                    "attempts": 1,
                    "provenance": PROVENANCE,
                    "spec": json.dumps(spec),
                    "device": "cpu",
                    "finished_at": "2025-01-01T00:00:00Z",
                }
                points = [
                    {"eval_index": k, "step": 20 * (k + 1), "fraction": float(frac[k]), "val_metric": curve[k]}
                    for k in range(N_EVALS)
                ]
                write_run(path, run, points)
    failed_run = {
        "run_id": "standard-failed",
        "experiment": path.name,
        "task": "rte",
        "recipe": "standard",
        "model": model,
        "config_key": "rte/standard",
        "init_seed": 9,
        "order_seed": 9,
        "sample_seed": 0,
        "status": "failed",
        "metric": "accuracy",
        "steps_done": 0,
        "total_steps": 100,
        "attempts": 3,
        "error": "Traceback ...\nRuntimeError: worker killed (signal 9)",
    }
    if failed:
        write_run(path, failed_run, [])
    return path


PAPER = {
    "source": "Zhang et al. 2021, Table 1 (test, 20 seeds, BERT-large)",
    "model": "bert-large-uncased",
    "seeds": 20,
    "setting": {
        "model": "bert-large-uncased",
        "sample_size": "full training set",
        "lr": 2e-5,
        "batch_size": 32,
        "reinit_layers": 0,
        "seeds": 20,
        "recipes": {"reinit": {"reinit_layers": 5}},
        "effects": {"batch_size": "halves the paper's batch"},
    },
    "results": {"rte": {"standard": {"mean": 69.5, "std": 2.5}, "reinit": {"mean": 72.6, "std": 1.6}}},
    "claims": [
        {"claim": "Re-init improves the mean over Standard", "task": "rte", "a": "reinit", "b": "standard"},
        {"claim": "Re-init lowers the mean", "task": "rte", "a": "reinit", "b": "standard", "direction": "less"},
        {
            "claim": "Bad has more degenerate runs",
            "task": "rte",
            "a": "bad",
            "b": "standard",
            "statistic": "degenerate_rate",
            "where": "Figure 2",
        },
        {"claim": "Re-init beats Bad", "task": "rte", "a": "reinit", "b": "bad"},
        {"claim": "Bad spreads wider than Standard", "task": "rte", "a": "bad", "b": "standard", "statistic": "std"},
    ],
}


def experiment_spec(name: str, paper: dict | None = None):
    data = {
        "name": name,
        "model": "packaged",
        "task": "rte",
        "seeds": {"init": N_INIT, "order": N_ORDER},
        "description": "Synthetic store for the report tests.",
        "recipes": {"standard": {}, "reinit": {"reinit_layers": 2}, "bad": {"lr": 1e-3}},
    }
    if paper:
        data["paper"] = paper
    return parse_experiment(data, f"{name}.toml")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    exp = build_store(tmp_path_factory.mktemp("results") / "zhang", {"standard": 0.0, "reinit": 5.0, "bad": -30.0})
    return write_report(exp, spec=experiment_spec("zhang", PAPER), **FAST)


def table_row(md: str, first_cell: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def test_report_files_exist(report):
    out = report.parent
    assert report.name == "report.md" and report.is_file()
    assert (out / "report.html").is_file()
    for name in ("seeds", "degenerate", "expected_max", "curves_rte", "variance"):
        png = out / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5000, name
        pixels = mpimg.imread(png)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert pixels[..., :3].std() > 0.01, f"{name}.png looks blank"
        assert f"]({name}.png)" in report.read_text()


def test_report_sections(report):
    md = report.read_text()
    main = ["# Report: zhang", "## Deviations from the paper's setting", "## Paper vs ours", "### Verdict per claim",
            "## Summary per recipe", "## Variance decomposition", "## Appendix"]  # fmt: skip
    appendix = ["### Setup", "### Provenance", "### Substitutions and caveats", "### Runs by status",
                "### Degenerate-run definition", "### Comparisons", "### Expected maximum performance",
                "### Evaluation curves"]  # fmt: skip
    for heading in (*main, *appendix):
        assert f"\n{heading}" in f"\n{md}", heading
    positions = [f"\n{md}".index(f"\n{h}") for h in (*main, *appendix)]
    assert positions == sorted(positions), "sections out of order: evidence first, the rest in the appendix"
    assert "Early-stopping simulation" not in md  # not an early-stopping experiment, and not asked for
    assert "accuracy <= the majority-class baseline" in md
    assert "`2.13.0`" in md and "`deadbeef`" in md  # provenance
    assert "Code: all 24 runs from commit `deadbeef` (a clean checkout)." in md  # the failed run has none
    assert "not BERT-large" in md  # substitution note for the packaged model
    assert "worker killed (signal 9)" in md  # failed runs' errors
    assert "This report: task(s) rte; recipes standard, reinit, bad." in md
    status = table_row(md.split("### Runs by status")[1], "rte")  # first status row: rte / standard
    assert status[:7] == ["rte", "standard", "8", "0", "0", "1", "9"]
    assert "Holm" in md and "Brown-Forsythe" in md
    # recipes follow the TOML order, and the default baseline is its first recipe
    assert md.index("| rte | reinit vs standard |") < md.index("| rte | bad vs standard |")


def test_report_shows_the_store_relative_to_the_checkout(report, tmp_path, monkeypatch):
    md = report.read_text()
    assert str(report.parent.parent) not in md  # an absolute path of this machine
    assert "`…/results0/zhang`" in md or "`…/" in md


def test_early_stopping_table_only_when_asked_or_about_it(tmp_path):
    exp = build_store(tmp_path / "es", {"standard": 0.0, "reinit": 5.0})
    spec = experiment_spec("es")
    asked = write_report(exp, spec=spec, out_dir=tmp_path / "asked", include=("early-stopping",), **FAST).read_text()
    assert "### Early-stopping simulation" in asked  # asked: in the appendix
    about = dataclasses.replace(spec, schedule=dataclasses.replace(spec.schedule, early_stop=EarlyStopPolicy()))
    md = write_report(exp, spec=about, out_dir=tmp_path / "about", **FAST).read_text()
    assert "\n## Early-stopping simulation\n" in md  # an early-stopping experiment: in the main body
    # no degenerate run in either recipe: no empty rate figure; no grid stub, no churn without predictions
    assert "degenerate.png" not in md and "No configuration has a degenerate run." in md
    assert "declare `seeds = {init" not in md and "Prediction churn" not in md


def test_deviations_table_from_the_declared_setting(report):
    md = report.read_text()
    section = md.split("## Deviations from the paper's setting", 1)[1].split("\n## ", 1)[0]
    model = ["all arms", "bert-large-uncased", "all-MiniLM-L6-v2 (packaged; the first 2 of its 6 layers)"]
    assert table_row(section, "model")[1:4] == model
    assert table_row(section, "training examples")[2:4] == ["full training set", "1000 (class-balanced)"]
    assert "learning rate" in section.split("As in the paper:")[1]  # the stored specs say 2e-5, as the paper
    assert table_row(section, "re-initialised top layers (L)")[1:4] == ["reinit", "5", "2"]
    assert table_row(section, "batch size")[2:5] == ["32", "16", "halves the paper's batch"]
    assert "seeds per arm" in section and table_row(section, "seeds per arm")[2:4] == ["20", "8"]


def test_html_is_self_contained(report):
    html = (report.parent / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report.read_text())
    assert "forest.png" in figures  # the verdicts' forest plot is drawn with the claims
    assert len(sources) == len(figures) >= 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in html and "http://" not in html and "https://" not in html
    assert "<table>" in html and "<h2" in html


def test_paper_table_shows_paper_numbers(report):
    md = report.read_text()
    standard = next(x for x in md.splitlines() if x.startswith("| rte | standard | 69.5"))
    assert "69.5 ± 2.5 [20]" in standard
    assert re.search(r"\| 70\.\d ± \d\.\d \[8\] \|", standard)  # ours: mean about 70, 8 counted runs
    assert "72.6 ± 1.6 [20]" in md
    assert "not in the paper" in md  # 'bad' has no paper numbers


def verdict_cells(md: str, claim: str) -> dict[str, str]:
    """The claim's row of the verdict table (the first screen's summary names the claim too)."""
    section = md.split("### Verdict per claim", 1)[1]
    header = table_row(section, "claim")
    return dict(zip(header, table_row(section, claim), strict=True))


def test_verdicts_from_known_effects(report):
    md = report.read_text()
    up = verdict_cells(md, "Re-init improves the mean over Standard")
    assert up["paper effect"] == "+3.1"
    assert up["our effect [95% CI]"].startswith("+5.0") or up["our effect [95% CI]"].startswith("+4.9")
    # one-sided in the claim's direction, Holm across the five claims; small p printed "<0.001", never "0.000"
    assert up["verdict"] == "**reproduced**" and up["p_Holm (one-sided test)"] == "<0.001 (Welch t)"
    assert "p_Holm 0.000" not in md
    assert "the direction reproduces, not the size" in up["caveats"]  # +3.1 lies outside our narrow CI
    assert "bert-large-uncased" in up["caveats"] and "fewer seeds than the paper (8/8 vs 20)" in up["caveats"]

    down = verdict_cells(md, "Re-init lowers the mean")  # the paper's +3.1 argues against "lower"
    assert down["verdict"] == "**not reproduced**" and "+3.1 lies outside our 95% CI" in down["why"]

    degenerate = verdict_cells(md, "Bad has more degenerate runs")
    assert degenerate["paper effect"] == "not printed (only in Figure 2)"
    effect = degenerate["our effect [95% CI]"]
    assert effect.startswith("+100 pp [") and "8/8 vs 0/8 degenerate" in effect
    assert degenerate["verdict"] == "**reproduced**"
    assert degenerate["p_Holm (one-sided test)"].endswith("(Fisher exact)")

    # bad sits on the majority baseline: a mean or spread claim against it is not testable on this model
    for claim in ("Bad spreads wider than Standard", "Re-init beats Bad"):
        cells = verdict_cells(md, claim)
        assert cells["verdict"] == "**not testable here**"
        assert "bad sits at the constant predictor: 8/8 runs degenerate" in cells["why"]
        assert cells["p_Holm (one-sided test)"].startswith("1.000")  # kept in the Holm family at p = 1
    assert "Holm across the 5 claims" in md


def test_compare_report(tmp_path):
    a = build_store(tmp_path / "minilm", {"standard": 0.0, "reinit": 5.0}, seed=1)
    b = build_store(tmp_path / "bert", {"standard": 2.0, "reinit": 1.0, "longer": 3.0}, seed=2, model="bert-base")
    md_path = compare_report(a, b, **FAST)
    assert md_path == tmp_path / "compare-minilm-vs-bert" / "report.md"
    md = md_path.read_text()
    for text in (
        "# Comparison: minilm vs bert",
        "## Summary per configuration",
        "## Comparison tests",
        "| rte/standard | minilm vs bert |",
        "| rte/reinit | minilm vs bert |",
        "bert-base",
    ):
        assert text in md, text
    assert "rte/longer" not in md.split("## Comparison tests")[1]  # only configurations in common
    for name in ("seeds", "degenerate", "expected_max"):
        assert (md_path.parent / f"{name}.png").stat().st_size > 5000
    html = (md_path.parent / "report.html").read_text()
    assert all(s.startswith("data:image/png") for s in re.findall(r'src="([^"]*)"', html))


def test_compare_report_needs_common_configs(tmp_path):
    a = build_store(tmp_path / "a", {"standard": 0.0}, failed=False)
    b = build_store(tmp_path / "b", {"other": 0.0}, failed=False)
    with pytest.raises(ReportError, match="share no task/recipe"):
        compare_report(a, b, **FAST)


def test_report_without_paper_or_spec(tmp_path):
    exp = build_store(tmp_path / "own", {"standard": 0.0, "reinit": 1.0})
    md = write_report(exp, **FAST).read_text()
    assert "## Paper vs ours" not in md and "## Summary per recipe" in md
    with pytest.raises(ReportError, match="no stored runs"):
        write_report(tmp_path / "empty")


@pytest.mark.parametrize(
    ("paper", "match"),
    [
        ({"model": "x"}, "'source' is required"),
        ({"source": "s", "table": 1}, "unknown key"),
        ({"source": "s", "results": {"rte": {"standard": {"mean": 1, "sd": 2}}}}, "unknown field"),
        ({"source": "s", "results": {"rte": {"standard": {"degenerate_rate": 48}}}}, r"fraction in \[0, 1\]"),
        (
            {"source": "s", "claims": [{"claim": "c", "task": "rte", "a": "x", "b": "y", "statistic": "iqm"}]},
            "statistic",
        ),
        (
            {
                "source": "s",
                "claims": [{"claim": "c", "task": "rte", "a": "x", "b": "y", "statistic": "std", "test": "welch_t"}],
            },
            "test",
        ),
        ({"source": "s", "claims": [{"claim": "c", "task": "rte", "a": "x"}]}, "missing"),
    ],
)
def test_parse_paper_rejects_bad_sections(paper, match):
    with pytest.raises(ReportError, match=match):
        parse_paper(paper)


def test_parse_paper_reads_the_documented_example():
    docs = Path(__file__).resolve().parents[1] / "docs" / "reports.md"
    block = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    import tomllib

    ref = parse_paper(tomllib.loads(block)["paper"])
    assert ref is not None and ref.seeds == 20 and ref.cell("rte", "reinit").mean == 72.6
    assert [c.statistic for c in ref.claims] == ["mean", "std", "degenerate_rate"]
    assert ref.claims[1].test == "levene" and ref.claims[0].test == "welch_t"
    assert parse_paper({}) is None


def test_markdown_to_html_subset(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(tmp_path / "fig.png")
    md = (
        "# T <x>\n\ntext with **bold** and `a|b` <script>\n\n"
        "| a | b |\n| :-- | --: |\n| 1 \\| 2 | 3 |\n\n- one\n- two\n\n![cap](fig.png)\n"
    )
    html = markdown_to_html(md, tmp_path)
    assert "<h1" in html and "T &lt;x&gt;" in html and "&lt;script&gt;" in html and "<script>" not in html
    assert "<strong>bold</strong>" in html and "<code>a|b</code>" in html
    assert '<td style="text-align:left">1 | 2</td>' in html and '<td style="text-align:right">3</td>' in html
    assert "<li>one</li>" in html and 'src="data:image/png;base64,' in html


def test_report_does_not_import_torch():
    code = "import sys, harness.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_warnings_reach_the_caveats():
    import pandas as pd

    from harness.report.provenance import substitution_notes

    runs = pd.DataFrame(
        {"model": ["m", "m"], "recipe": ["cloze", "standard"], "spec": ["{}", "{}"],
         "notes": ["WARNING: cloze head is randomly initialised: m has no pre-trained MLM head weights", ""]}
    )  # fmt: skip
    notes = substitution_notes(runs, None)
    assert any("1 run(s) (cloze) carry a warning" in n and "randomly initialised" in n for n in notes)


def test_dodge_claims_share_the_verdict_table(tmp_path):
    """Dodge et al.'s claims from experiments/dodge2020/seeds_grid.toml (CPU scale: a 4 x 4 SST-2 grid) get
    labels in the same verdict table as every other paper's, from a grid store with curves."""
    import pandas as pd

    from harness.analysis.verdicts.claims import verdicts_from_frame
    from harness.experiment.config import load_experiment

    spec = load_experiment(Path(__file__).resolve().parents[1] / "experiments/dodge2020/seeds_grid.toml", scale="cpu")
    rng = np.random.default_rng(0)
    init_fx, order_fx = rng.normal(0, 0.3, 4), rng.normal(0, 2.5, 4)  # data order dominates
    for i in range(4):
        for j in range(4):
            final = 78 + init_fx[i] + order_fx[j] + rng.normal(0, 0.3)
            early = 60 + (final - 78) * 0.8 + rng.normal(0, 0.5)
            run = {"run_id": f"g-{i}-{j}", "experiment": "grid", "task": "sst2", "recipe": "bertadam", "model": "m",
                   "config_key": "sst2/bertadam", "init_seed": i + 1, "order_seed": j + 1, "sample_seed": 0,
                   "status": "done", "metric": "accuracy", "score": final, "val_best": final, "val_final": final,
                   "majority_val": 50.9, "majority_test": float("nan"), "steps_done": 100, "total_steps": 100,
                   "attempts": 1, "provenance": PROVENANCE, "device": "cpu", "finished_at": "2025-01-01T00:00:00Z",
                   "spec": json.dumps({"eval_protocol": "dev", "recipe": {"name": "bertadam", "select": "final"}}),
                   }  # fmt: skip
            curve = ((0.25, early), (0.5, (early + final) / 2), (1.0, final))
            points = [{"eval_index": k, "step": 10 * (k + 1), "fraction": f, "val_metric": v}
                      for k, (f, v) in enumerate(curve)]  # fmt: skip
            write_run(tmp_path / "grid", run, points)
    md = write_report(tmp_path / "grid", spec=spec, **FAST).read_text()
    verdicts = verdicts_from_frame(pd.read_parquet(tmp_path / "grid" / "analysis" / "verdicts.parquet"))
    assert [v.statistic for v in verdicts] == ["variance_share", "expected_max_gain", "early_stopping_gain"]
    share, gain, stop = verdicts
    assert share.effect < 0 and "order" in share.detail
    assert share.label == "inconclusive"  # the paper printed no effect: never "not reproduced"
    assert gain.label == "reproduced" and gain.effect > 1.0
    assert stop.label in ("reproduced", "inconclusive") and "start 16, stop at 25%, keep 4" in stop.detail
    for v in verdicts:
        assert f"| {v.claim} | sst2 | bertadam |" in md and f"**{v.label}**" in md


def test_report_when_the_first_recipe_is_missing_from_a_task(tmp_path):
    """Each task is then compared against its own first recipe (as the analysis does), not refused with
    "baseline recipe None has no stored runs"."""
    exp = build_store(tmp_path / "mixed", {"standard": 0.0, "reinit": 1.0, "other": 2.0}, failed=False)
    for part in (exp / "runs").glob("*.parquet"):
        frame = pd.read_parquet(part)
        if frame["recipe"].iloc[0] != "standard":  # reinit and other ran on sst2 only, standard on rte only
            frame["task"] = "sst2"
            frame["config_key"] = "sst2/" + frame["recipe"]
            frame.to_parquet(part)
    md = write_report(exp, **FAST).read_text()
    assert "## Summary per recipe" in md and "sst2" in md
