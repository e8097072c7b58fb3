"""Report sections: churn per task (with example texts), seeds needed per claim, the adaptive budget."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.predictions.churn import mean_churn
from harness.analysis.stats.power import seeds_for_power
from harness.experiment import data as D
from harness.experiment.config import parse_experiment
from harness.experiment.seed_budget import BUDGET_FILE
from harness.report.experiment import write_report
from harness.storage.records import base_row
from harness.storage.store import write_predictions, write_run

FAST = {"n_boot": 200, "n_perm": 199}


def _store(root: Path, glue: Path, with_predictions: bool = True, flips=(0.1, 0.3), seeds: int = 5, stopped: int = 0):
    """seeds runs per recipe (reinit flips a share flips[0] of the test labels, standard flips[1]); the last
    `stopped` runs of reinit are stored as early-stopped, with a high score at their rung."""
    exp = parse_experiment(
        {"name": "ch", "task": "rte", "model": "packaged", "seeds": seeds, "eval_protocol": "heldout",
         "data_dir": str(glue), "recipes": {"standard": {}, "reinit": {"reinit_layers": 2}},
         "paper": {"source": "s", "claims": [{"claim": "re-init helps", "task": "rte", "a": "reinit",
                                               "b": "standard"}]}},
        "ch.toml",
    )  # fmt: skip
    spec0 = exp.runs[0]
    splits = D.eval_splits("rte", D.load_split("rte", "dev", str(glue)), "heldout", spec0.split_seed, None)
    labels = np.array([e.label for e in splits.test])
    rng = np.random.default_rng(0)
    matrices: dict[str, list] = {}
    for spec in exp.runs:
        flip = rng.random(len(labels)) < (flips[0] if spec.recipe.name == "reinit" else flips[1])
        preds = np.where(flip, 1 - labels, labels)
        matrices.setdefault(spec.recipe.name, []).append(preds)
        score = 100 * float(np.mean(preds == labels))
        status = "stopped" if spec.recipe.name == "reinit" and spec.init_seed > seeds - stopped else "done"
        score = 99.0 if status == "stopped" else score
        row = {**base_row(spec), "status": status, "metric": "accuracy", "score": score, "val_best": score,
               "val_final": score, "test_best": score, "test_final": score, "majority_val": 50.0,
               "majority_test": 50.0, "steps_done": 10, "total_steps": 10, "attempts": 1}  # fmt: skip
        if with_predictions:
            write_predictions(root / "ch", spec.run_id, {"val": preds.tolist(), "test": preds.tolist()})
        write_run(root / "ch", row, [{"eval_index": 0, "step": 10, "fraction": 1.0, "val_metric": score}])
    return exp, splits, {k: np.array(v) for k, v in matrices.items()}


@pytest.fixture(scope="module")
def churn_report(tmp_path_factory, tiny_glue_dir: Path):
    root = tmp_path_factory.mktemp("res")
    exp, splits, matrices = _store(root, tiny_glue_dir)
    budget = {"target": "sequential", "max": 20, "runs_used": 10, "runs_at_max": 40, "runs_saved": 30,
              "configs": [{"config_key": "rte/standard", "look": 1, "n": 5, "stop": True,
                           "reason": "settled: rte: reinit > standard: z = 3.1 >= boundary 2.9"}]}  # fmt: skip
    (root / "ch" / BUDGET_FILE).write_text(json.dumps(budget))
    md = write_report(root / "ch", spec=exp, **FAST).read_text()
    return md, root / "ch" / "report", splits, matrices


def test_churn_table_and_figure(churn_report):
    md, out, _, matrices = churn_report
    assert "## Prediction churn between seeds" in md and (out / "churn_rte.png").is_file()
    row = next(x for x in md.splitlines() if x.startswith("| standard | 5 |"))
    assert f"{100 * mean_churn(matrices['standard']):.1f}%" in row
    assert "![rte: churn per recipe" in md


def test_flipped_examples_show_their_text(churn_report):
    md, _, splits, _ = churn_report
    section = md[md.index("Examples that flip most") :]
    first = section.splitlines()[4]  # header, separator, then the top example
    index = int(first.strip("|").split("|")[0])
    assert splits.test[index].text_a.split()[0] in first


def test_recipe_agreement_and_seeds_needed(churn_report):
    md = churn_report[0]
    row = next(x for x in md.splitlines() if x.startswith("| reinit vs standard |"))
    assert len(row.split("|")) == 8  # pair, between, within, excess, p, rho
    line = next(x for x in md.splitlines() if x.startswith("- rte: reinit vs standard (re-init helps)"))
    assert "reproduced; no more seeds needed" in line  # 10% vs 30% flipped labels: settled with 5 seeds


def test_budget_section(churn_report):
    md = churn_report[0]
    assert "## Adaptive seed budget" in md and "**30 runs saved**" in md and "75%" in md
    assert "| rte/standard | 5 | 1 | settled: rte: reinit > standard" in md


def test_store_without_predictions_says_so(tmp_path: Path, tiny_glue_dir: Path):
    exp, _, _ = _store(tmp_path, tiny_glue_dir, with_predictions=False)
    md = write_report(tmp_path / "ch", spec=exp, **FAST).read_text()
    assert "Prediction churn" not in md and "## Adaptive seed budget" not in md  # no data, no section


def test_seeds_needed_is_for_the_verdicts_own_test_without_stopped_runs(tmp_path: Path, tiny_glue_dir: Path):
    """The seeds an inconclusive claim needs: one-sided Welch in the claim's direction at its Holm level (alone in
    its family: alpha), on the finished runs; the early-stopped runs' rung scores (99) are left out."""
    from harness.storage.store import load_runs

    exp, _, _ = _store(tmp_path, tiny_glue_dir, flips=(0.27, 0.3), seeds=8, stopped=2)
    md = write_report(tmp_path / "ch", spec=exp, **FAST).read_text()
    runs = load_runs(tmp_path / "ch")
    done = runs[runs["status"] == "done"]
    a = done[done["recipe"] == "reinit"]["score"].to_numpy(float)
    b = done[done["recipe"] == "standard"]["score"].to_numpy(float)
    assert len(a) == 6 and len(b) == 8
    n = seeds_for_power(a.mean() - b.mean(), a.std(ddof=1), b.std(ddof=1), 0.05, 0.8, "greater")
    line = next(x for x in md.splitlines() if x.startswith("- rte: reinit vs standard (re-init helps)"))
    assert f"inconclusive with n = 6/8: **{n} seeds per arm**" in line and "Holm level 0.05" in line
    two_sided = seeds_for_power(a.mean() - b.mean(), a.std(ddof=1), b.std(ddof=1))
    assert n != two_sided  # the old section's number (two-sided, stopped runs included) was another one


def test_unreadable_spec_still_reports_churn_without_text(tmp_path: Path, tiny_glue_dir: Path):
    import pandas as pd

    exp, _, _ = _store(tmp_path, tiny_glue_dir)
    runs_dir = tmp_path / "ch" / "runs"
    for part in runs_dir.glob("*.parquet"):  # e.g. runs imported from another tool: no RunSpec JSON
        frame = pd.read_parquet(part)
        frame["spec"] = "{}"
        frame.to_parquet(part, index=False)
    (tmp_path / "ch" / "runs.parquet").unlink(missing_ok=True)
    md = write_report(tmp_path / "ch", spec=exp, **FAST).read_text()
    assert "| standard | 5 |" in md  # the churn table stands without the texts
    assert "(text unavailable)" not in md and "Examples that flip most" not in md  # a table of indices: left out


def test_gold_labels_come_from_the_data_the_runs_read_not_the_readers_environment(
    tmp_path: Path, tiny_glue_dir: Path, monkeypatch
):
    """`harness report` from a shell without $HARNESS_DATA_DIR, of a file without data_dir, still counts the
    examples every seed gets right: the data folder `harness run` recorded is used."""
    from harness.cli import main
    from harness.storage.scope import remember_spec

    exp, _, _ = _store(tmp_path, tiny_glue_dir)
    source = tmp_path / "ch.toml"
    source.write_text(
        'name = "ch"\ntask = "rte"\nmodel = "packaged"\nseeds = 5\neval_protocol = "heldout"\n'
        "[recipes.standard]\n[recipes.reinit]\nreinit_layers = 2\n"
    )
    remember_spec(dataclasses.replace(exp, source=str(source)), tmp_path / "ch", None, data_dir=str(tiny_glue_dir))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    assert main(["--results", str(tmp_path), "report", "ch", "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| standard | 5 |"))
    assert "–" not in row, row  # always right / always wrong / flips are counted
