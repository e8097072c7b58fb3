"""What the report shows: the degenerate-aware strip-plot axis, scale notes, the held-out caveat, no empty
paper table, stopped runs apart, p-values never printed as 0.000."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from test_report import FAST, build_store, experiment_spec

from harness.report import plots, write_report
from harness.report.provenance import notes_for_scale, substitution_notes
from harness.storage.store import write_run


def test_stsb_strip_plot_zooms_on_the_spread_not_on_the_degenerate_seeds(tmp_path):
    good = np.array([86.2, 87.5, 88.0, 89.9, 88.8])
    groups = [plots.Group("standard", np.r_[good, 0.0, 0.0], np.r_[np.zeros(5), 1, 1].astype(bool), "#000")]
    lo, hi = plots.focus_limits(groups)
    # old axis: 0..90 with the bar at 10, so the 86-90 spread took 4% of the height
    assert 84 < lo < good.min() and good.max() < hi < 91
    assert plots.focus_limits([plots.Group("a", good, np.zeros(5, bool), "#000")]) is None  # nothing to cut
    near = [plots.Group("a", np.r_[good, 85.0], np.r_[np.zeros(5), 1].astype(bool), "#000")]
    assert plots.focus_limits(near) is None  # a degenerate seed close to the rest needs no cut
    runs = pd.DataFrame({"task": "stsb", "recipe": "standard", "metric": "spearman", "status": "done",
                         "score": np.r_[good, 0.0, 0.0]})  # fmt: skip
    deg = pd.Series(np.r_[np.zeros(5), 1, 1].astype(bool), index=runs.index)
    path = plots.seed_distributions(runs, deg, {"stsb": 10.0}, {"standard": "#0072B2"}, tmp_path / "s.png")
    assert path is not None and path.stat().st_size > 5000


def test_scale_notes_name_the_scale_that_ran():
    notes = ["General note.", "CPU scale: the packaged MiniLM, 300 examples.", "Paper scale: BERT-large."]
    spec = experiment_spec("x")
    assert notes_for_scale(notes, dataclasses.replace(spec, scale="paper")) == [
        "This report is of the [scale.paper] settings of the experiment file.", "General note.",
        "Paper scale: BERT-large.",
    ]  # fmt: skip
    assert "CPU scale: the packaged MiniLM, 300 examples." in notes_for_scale(
        notes, dataclasses.replace(spec, scale="cpu")
    )
    assert notes_for_scale(notes, spec) == ["General note."]  # no scale applied: no scale's notes


def _heldout_runs(select: str) -> pd.DataFrame:
    spec = {"eval_protocol": "heldout", "recipe": {"name": "a", "select": select}}
    return pd.DataFrame({"model": ["bert-base-uncased"], "notes": [""], "spec": [json.dumps(spec)]})


def test_other_half_caveat_only_when_the_best_checkpoint_is_selected():
    best = " ".join(substitution_notes(_heldout_runs("best"), None))
    final = " ".join(substitution_notes(_heldout_runs("final"), None))
    assert "selection on the other half" in best
    assert "selection on the other half" not in final and 'select = "final"' in final


def test_paper_section_without_printed_numbers_has_no_empty_table(tmp_path):
    exp = build_store(tmp_path / "claims_only", {"standard": 0.0, "reinit": 5.0})
    paper = {"source": "Someone 2021", "claims": [{"claim": "Re-init helps", "task": "rte", "a": "reinit",
                                                   "b": "standard"}]}  # fmt: skip
    md = write_report(exp, spec=experiment_spec("claims_only", paper), **FAST).read_text()
    section = md.split("## Paper vs ours")[1].split("## Comparisons")[0]
    assert "paper mean ± std" not in section and "printed no per-recipe numbers" in section
    assert "### Verdict per claim" in section
    assert "0.000" not in md  # p-values below 0.001 are printed "<0.001"


def test_stopped_runs_are_shown_apart_and_left_out_of_the_summary(tmp_path):
    exp = build_store(tmp_path / "stops", {"standard": 0.0, "reinit": 5.0}, failed=False)
    stopped = {"run_id": "standard-stopped", "experiment": "stops", "task": "rte", "recipe": "standard",
               "model": "packaged", "config_key": "rte/standard", "init_seed": 7, "order_seed": 7, "sample_seed": 0,
               "status": "stopped", "metric": "accuracy", "score": 10.0, "val_best": 10.0, "val_final": 10.0,
               "majority_val": 52.9, "majority_test": 52.5, "steps_done": 25, "total_steps": 100,
               "attempts": 1}  # fmt: skip
    write_run(exp, stopped, [{"eval_index": 0, "step": 25, "fraction": 0.25, "val_metric": 10.0}])
    md = write_report(exp, **FAST).read_text()
    assert "Early-stopped runs (left out of every statistic above" in md
    row = next(x for x in md.splitlines() if x.startswith("| rte | standard |") and "| 1 | 25%" in x)
    assert "10.0" in row
    summary = md.split("## Summary per recipe")[1].split("Early-stopped runs")[0]
    standard = next(x for x in summary.splitlines() if x.startswith("| rte | standard |"))
    assert "| 8 |" in standard  # the 4 x 2 grid, not 9
    simulation = md.split("## Early-stopping simulation")[1].split("\n## ")[0]
    assert "stopped 1 runs online" in simulation and "survivors" in simulation


def test_a_simulation_without_online_stops_has_no_survivor_caveat(tmp_path):
    exp = build_store(tmp_path / "nostops", {"standard": 0.0, "reinit": 5.0}, failed=False)
    md = write_report(exp, **FAST).read_text()
    assert "survivors" not in md


def _dev_runs(selects: dict[str, str]) -> pd.DataFrame:
    specs = [json.dumps({"eval_protocol": "dev", "recipe": {"name": r, "select": s}}) for r, s in selects.items()]
    return pd.DataFrame({"model": "bert-base-uncased", "notes": "", "recipe": list(selects), "spec": specs})


def test_the_dev_set_caveat_names_only_the_arms_it_selects_for():
    final = " ".join(substitution_notes(_dev_runs({"bertadam": "final"}), None))
    assert "also selects" not in final and "selects nothing" in final  # Dodge et al.'s select = "final"
    mixed = " ".join(substitution_notes(_dev_runs({"default": "final", "mosbach": "best"}), None))
    assert "also selects the checkpoint of mosbach" in mixed and "default report their last checkpoint" in mixed
    best = " ".join(substitution_notes(_dev_runs({"a": "best"}), None))
    assert "dev set that also selects the checkpoint (as in" in best


def test_code_state_says_when_runs_mix_commits_or_ran_from_a_dirty_tree():
    from harness.report.provenance import code_state

    def runs(*shas: str) -> pd.DataFrame:
        return pd.DataFrame({"provenance": [json.dumps({"git_sha": s}) if s else "" for s in shas]})

    assert code_state(runs("abc", "abc")) == "all 2 runs from commit `abc` (a clean checkout)"
    assert "a checkout with uncommitted changes" in code_state(runs("abc+dirty", "abc+dirty"))
    mixed = code_state(runs("abc", "def+dirty", "abc", ""))
    assert mixed.startswith("MIXED: the 3 runs come from 2 code states: `abc` (2 runs), `def+dirty` (1 runs)")
    assert "1 of them from a checkout with uncommitted changes" in mixed
