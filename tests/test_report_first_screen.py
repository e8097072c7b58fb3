"""The first screen of a report: one line per claim from the verdict frame, then the deviations from the
paper's setting, field by field against the runs' stored specs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_report import FAST, PAPER, build_store, experiment_spec, table_row
from test_report_figures import verdict_frame

from harness.report import ReportError, write_report
from harness.report import experiment as report_experiment
from harness.report.deviations import arm_confounds, deviations, parse_setting
from harness.report.summary import check_frame, label_counts, summary_rows


def test_summary_lines_read_each_effect_in_its_kind():
    rows = {r[0].rsplit(" (", 1)[0]: r for r in summary_rows(verdict_frame())}
    assert rows["mean higher"][2:5] == ["+19.0", "+9.3 [7.7, 10.5]", "**reproduced**"]
    assert rows["spread smaller (Levene)"][2:4] == ["ratio 0.04", "ratio 1.64 [0.88, 4.79]"]
    assert rows["fails less often"][2:4] == ["not published", "−96 pp [−100, −80]"]  # rates in percentage points
    assert rows["an open ratio CI"][3] == "ratio 0.50 [0.00, ∞]"
    assert rows["not run"][3:6] == ["–", "**not testable here**", "not run at this scale"]
    assert rows["re-init raises the mean"][5] == "CI holds both; ~21 seeds per arm would settle it"
    assert (
        label_counts(verdict_frame())
        == "2 reproduced, 1 not reproduced, 2 inconclusive, 2 not testable here of 7 claims"
    )


def test_a_frame_of_another_shape_is_refused_with_the_missing_columns():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"):
        check_frame(verdict_frame().drop(columns="label"))
    with pytest.raises(ValueError, match=r"label\(s\) \['significant'\]"):
        check_frame(verdict_frame().assign(label="significant"))


def test_the_verdicts_come_first_with_their_forest_plot(tmp_path, monkeypatch):
    """When the analysis tables carry the verdict frame, the report opens with it (before deviations)."""
    original = report_experiment.analyze_experiment

    def with_verdicts(*args, **kwargs):
        return {**original(*args, **kwargs), "verdicts": verdict_frame()}

    monkeypatch.setattr(report_experiment, "analyze_experiment", with_verdicts)
    exp = build_store(tmp_path / "zhang", {"standard": 0.0, "reinit": 5.0})
    md = write_report(exp, spec=experiment_spec("zhang", PAPER), **FAST).read_text()
    order = ["## Verdicts", "## Deviations from the paper's setting", "## Paper vs ours", "## Summary per recipe"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    assert "](forest.png)" in md and (exp / "report" / "forest.png").stat().st_size > 5000
    assert "| mean higher (x vs y) | cola | +19.0 | +9.3 [7.7, 10.5] | **reproduced** |" in md
    table = pd.read_csv(exp / "report" / "verdicts.csv")  # the first screen as a table beside the report
    assert list(table["claim"]) == list(verdict_frame()["claim"]) and "confounds" in table


def _runs(recipes: dict[str, dict], protocol: str = "dev", task: str = "sst2", n: int = 3) -> pd.DataFrame:
    rows = []
    for name, recipe in recipes.items():
        spec = {"model": "packaged", "sample_size": 1000, "eval_protocol": protocol, "eval_size": 500,
                "engine": "vectorised", "recipe": {"name": name, **recipe}}  # fmt: skip
        rows += [{"task": task, "recipe": name, "status": "done", "total_steps": 189, "spec": json.dumps(spec)}] * n
    return pd.DataFrame(rows)


MOSBACH = {
    "model": "bert-large-uncased", "tasks": ["rte", "mrpc", "cola"], "sample_size": "full training set",
    "eval_protocol": "dev", "eval_size": "full dev set", "lr": 2e-5, "batch_size": 16, "epochs": 3,
    "bias_correction": False, "select": "not stated", "engine": "loop", "seeds": 25,
    "recipes": {"mosbach": {"bias_correction": True, "epochs": 20, "select": "best"}},
    "effects": {"tasks": "the model does not learn RTE here"},
}  # fmt: skip


def test_deviations_name_each_field_per_arm_against_the_stored_specs():
    runs = _runs({"default": {"lr": 1e-4, "epochs": 3.0, "bias_correction": False, "select": "final"},
                  "mosbach": {"lr": 3e-5, "epochs": 10.0, "bias_correction": True, "select": "best"}})  # fmt: skip
    devs, matched = deviations(parse_setting(MOSBACH), runs, {"sst2": {"val": 250, "test": 250}})
    by = {(d.setting, d.arms): d for d in devs}
    assert by[("tasks", "all arms")].ours == "sst2 (sst2 not in the paper)"
    assert by[("tasks", "all arms")].effect == "the model does not learn RTE here"
    assert (by[("learning rate", "default")].paper, by[("learning rate", "default")].ours) == ("2e-05", "0.0001")
    assert by[("learning rate", "mosbach")].ours == "3e-05"
    assert by[("training length", "mosbach")].paper == "20 epochs"
    assert by[("training length", "mosbach")].ours == "10 epochs (189 updates)"
    assert ("training length", "default") not in by  # 3 epochs, as the paper
    assert by[("checkpoint reported", "default")].paper == "not stated"  # unknown is shown, never matched
    assert "asymmetric between arms: mosbach report the best" in by[("checkpoint reported", "default")].effect
    assert (
        by[("evaluation split sizes", "all arms")].ours
        == "dev capped at 500 (stratified); examples per split: sst2 val 250 / test 250"
    )
    assert by[("training engine", "all arms")].ours == "seed groups (vectorised engine)"
    assert by[("seeds per arm", "all arms")].ours == "3"
    assert {"Adam bias correction", "batch size", "evaluation protocol"} <= set(matched)


def test_arms_that_differ_where_the_papers_do_not_are_called_confounded_on_the_first_screen():
    """The survey ran Mosbach et al.'s recipe at 3e-5 against the default at 1e-4, where the paper ran both at
    2e-5: its "reproduced" mean claim must say that the lr differs too. Length and bias correction differ in
    the paper as well (they are the recipe), and a one-recipe claim has no second arm."""
    default = {"lr": 1e-4, "epochs": 3.0, "bias_correction": False, "select": "final"}
    runs = _runs({"default": default, "mosbach": {"lr": 3e-5, "epochs": 10.0, "bias_correction": True}})
    claims = pd.DataFrame({"a": ["mosbach", "mosbach", "mosbach"], "b": ["default", "", "gone"]})
    assert arm_confounds(parse_setting(MOSBACH), runs, claims) == ["learning rate 3e-05 vs 0.0001", "", ""]
    assert arm_confounds(None, runs, claims) == ["", "", ""]  # no declared setting: no evidence either way
    one_lr = _runs({"default": default, "mosbach": {"lr": 1e-4, "epochs": 10.0, "bias_correction": True}})
    assert arm_confounds(parse_setting(MOSBACH), one_lr, claims.iloc[:1]) == [""]  # mosbach2021/confounds
    frame = verdict_frame().iloc[:2].assign(confounds=["learning rate 3e-05 vs 0.0001", ""])
    whys = [row[5] for row in summary_rows(frame)]
    assert whys[0].endswith("**confounded**: the arms also differ in learning rate 3e-05 vs 0.0001 (the paper's "
                            "arms do not)") and "confounded" not in whys[1]  # fmt: skip


def test_the_checkpoint_row_is_quiet_when_both_arms_match_the_paper():
    runs = _runs({"a": {"select": "best"}, "b": {"select": "best"}}, protocol="heldout")
    devs, matched = deviations(parse_setting({"select": "best"}), runs)
    assert devs == [] and matched == ["checkpoint reported"]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"learning_rate": 2e-5}, r"unknown field\(s\) \['learning_rate'\]"),
        ({"lr": [2e-5]}, "a number, true/false or a string"),
        ({"recipes": {"x": {"epoch": 3}}}, r"\[paper.setting.recipes.x\] unknown field"),
        ({"effects": {"lr": 1}}, "map field names to sentences"),
    ],
)
def test_a_bad_setting_names_the_field(raw, match):
    with pytest.raises(ReportError, match=match):
        parse_setting(raw)


def test_a_report_names_the_row_of_a_setting_it_matches(tmp_path):
    exp = build_store(tmp_path / "zhang", {"standard": 0.0, "reinit": 5.0})
    md = write_report(exp, spec=experiment_spec("zhang", PAPER), **FAST).read_text()
    assert table_row(md, "batch size")[4] == "halves the paper's batch"


def test_the_documented_setting_example_parses():
    import tomllib

    docs = Path(__file__).resolve().parents[1] / "docs" / "reports.md"
    block = docs.read_text().split("## The paper's setting", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    setting = parse_setting(tomllib.loads(block)["paper"]["setting"])
    assert setting is not None and setting.value("reinit_layers", "reinit") == 5 and setting.value("lr", "x") == 2e-5
