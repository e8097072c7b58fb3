"""What `harness analyze` prints: the summary in the experiment's order and the claims with their labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.analysis.terminal import format_claims, format_summary, in_experiment_order


def test_rows_follow_the_declared_tasks_and_recipes_then_the_rest():
    frame = pd.DataFrame({"task": ["rte", "sst2", "rte", "sst2", "cola"], "recipe": ["b", "a", "a", "b", "a"],
                          "n": [1, 2, 3, 4, 5]})  # fmt: skip
    ordered = in_experiment_order(frame, tasks=["sst2", "rte"], recipes=["b", "a"])
    assert list(zip(ordered["task"], ordered["recipe"], strict=True)) == [
        ("sst2", "b"), ("sst2", "a"), ("rte", "b"), ("rte", "a"), ("cola", "a")
    ]  # fmt: skip
    text = format_summary(ordered.assign(n_diverged=0, n_failed=0, mean=60.0))
    assert [line.split()[0] for line in text.splitlines()[2:7]] == ["sst2", "sst2", "rte", "rte", "cola"]


def _verdicts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim": ["Re-init raises the mean", "Re-init lowers the std"],
            "task": ["rte", "rte"], "a": ["reinit2", "reinit2"], "b": ["standard", "standard"],
            "statistic": ["mean", "std"], "label": ["reproduced", "not testable here"],
            "p_holm": [0.0123, np.nan], "effect": [2.14, 0.8], "ci_lo": [0.4, np.nan], "ci_hi": [3.9, np.nan],
            "reason": ["", "an arm sits at the constant predictor"],
        }
    )  # fmt: skip


def test_claims_print_one_line_each_with_label_effect_and_reason():
    text = format_claims(_verdicts())
    lines = text.splitlines()
    assert lines[0].startswith("claims") and lines[1].split()[:3] == ["label", "task", "a"]
    assert lines[3].startswith("reproduced") and "+2.14" in lines[3] and "[+0.40, +3.90]" in lines[3]
    assert "0.0123" in lines[3] and lines[3].endswith("Re-init raises the mean")
    assert lines[4].startswith("not testable here") and "[-, -]" in lines[4]
    assert lines[5] == "    why: an arm sits at the constant predictor" and len(lines) == 6
    assert format_claims(_verdicts().iloc[0:0]) == ""
    with pytest.raises(ValueError, match="label"):
        format_claims(_verdicts().drop(columns="label"))


def test_analyze_prints_the_experiments_order_and_the_claims_under_it(
    tmp_path, tiny_model_dir, tiny_glue_dir, capsys, monkeypatch
):
    from harness.analysis import pipeline
    from harness.cli import main
    from harness.experiment.config import load_experiment
    from harness.storage.records import base_row
    from harness.storage.store import write_run

    toml = tmp_path / "order.toml"
    toml.write_text(
        f'name = "order"\ntasks = ["sst2", "rte"]\nmodel = "{tiny_model_dir}"\ndata_dir = "{tiny_glue_dir}"\n'
        "seeds = 3\n[recipes.zeta]\n[recipes.mid]\nlr = 1e-3\n[recipes.alpha]\nlr = 1e-4\n"
    )
    rng = np.random.default_rng(0)
    for spec in load_experiment(toml).runs:
        score = float(rng.normal(70, 2))
        row = {**base_row(spec), "status": "done", "metric": "accuracy", "score": score, "majority_val": 50.0,
               "majority_test": 50.0, "steps_done": 1, "total_steps": 1, "attempts": 1}  # fmt: skip
        write_run(tmp_path / "results" / "order", row, [])
    real = pipeline.analyze_runs
    monkeypatch.setattr(pipeline, "analyze_runs", lambda *a, **k: {**real(*a, **k), "verdicts": _verdicts()})
    argv = ["--results", str(tmp_path / "results"), "analyze", str(toml)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split()[:2] for line in out.splitlines()[2:8]]
    assert rows == [["sst2", "zeta"], ["sst2", "mid"], ["sst2", "alpha"], ["rte", "zeta"], ["rte", "mid"],
                    ["rte", "alpha"]]  # fmt: skip
    claims = out.index("claims (each tested one-sided")
    assert out.index("* over non-degenerate runs") < claims and "reproduced" in out[claims:]
    assert "analysis tables written to" in out
    assert main(argv) == 0
    assert "are current (the store has not changed" in capsys.readouterr().out
