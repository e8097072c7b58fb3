"""Adaptive seed budgets: the TOML form, and the loop that adds seeds in steps and stops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workers (spawn) import fakes_adaptive from here

from harness.experiment.config import ConfigError, parse_experiment
from harness.experiment.seed_budget import AdaptiveSeeds, load_budget
from harness.schedule.adaptive import run_adaptive
from harness.storage.store import load_events, load_predictions, load_runs


def _experiment(seeds, recipes=("base", "big"), paper=None, name="ad"):
    data = {"name": name, "task": "rte", "model": "fake", "seeds": seeds,
            "recipes": {r: {"lr": 1e-5 * (i + 1)} for i, r in enumerate(recipes)}}  # fmt: skip
    if paper:
        data["paper"] = paper
    return parse_experiment(data, "exp.toml")


def test_toml_form_declares_seeds_up_to_max_with_stable_ids():
    small = _experiment({"adaptive": {"min": 5, "max": 20, "step": 5, "target": "ci_width<=1.0"}})
    large = _experiment({"adaptive": {"min": 5, "max": 50, "step": 5, "target": "ci_width<=1.0"}})
    assert small.adaptive == AdaptiveSeeds(5, 20, 5, "ci_width<=1.0") and small.adaptive.ci_width == 1.0
    assert len(small.runs) == 40 and small.adaptive.looks == (5, 10, 15, 20)
    assert {r.run_id for r in small.runs} <= {r.run_id for r in large.runs}  # max grows, ids stay
    assert AdaptiveSeeds(min=3, max=10, step=4).looks == (3, 7, 10)


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ({"adaptive": {"min": 1, "max": 5}}, "2 <= min <= max"),
        ({"adaptive": {"min": 5, "max": 4}}, "2 <= min <= max"),
        ({"adaptive": {"target": "ci<1"}}, "ci_width<=W"),
        ({"adaptive": {"spending": "haybittle", "target": "sequential"}}, "obrien-fleming"),
        ({"adaptive": {"alpha": 1.5}}, r"\(0, 1\)"),
        ({"adaptive": {"maxi": 5}}, "unknown key"),
        ({"adaptive": {}, "init": [1]}, "alone in its table"),
    ],
)
def test_bad_adaptive_budget_names_the_field(seeds, message):
    with pytest.raises(ConfigError, match=message):
        _experiment(seeds)


def test_ci_target_adds_seeds_until_met_or_max(tmp_path: Path):
    exp = _experiment({"adaptive": {"min": 4, "max": 12, "step": 4, "target": "ci_width<=4.0"}})
    summary = run_adaptive(exp, tmp_path, train_fn="fakes_adaptive:scored", max_workers=2, progress=False)
    runs = load_runs(tmp_path / "ad")
    for d in summary.decisions:  # sd 2: the 95% CI of the mean is ~4 wide at 4-5 seeds, ~2.5 at 12
        mine = runs[runs["config_key"] == d.config_key]
        assert len(mine) == d.n and sorted(mine["init_seed"]) == list(range(1, d.n + 1))
        assert d.stop and ("<= 4" in d.reason or "reached max" in d.reason)
    assert summary.runs_used == len(runs) and summary.runs_saved == 24 - len(runs)
    budget = load_budget(tmp_path / "ad")
    assert budget["runs_saved"] == summary.runs_saved and len(budget["configs"]) == 2
    assert (load_events(tmp_path / "ad")["kind"] == "adaptive").any()
    preds = load_predictions(tmp_path / "ad")  # the driver stored every run's predictions
    assert set(preds["run_id"]) == set(runs["run_id"]) and len(preds) == 10 * len(runs)
    again = run_adaptive(exp, tmp_path, train_fn="fakes_adaptive:scored", max_workers=2, progress=False)
    assert again.decisions == summary.decisions and sum(s.done for s in again.steps) == 0  # resumes, same result


def test_sequential_target_stops_early_on_a_large_effect(tmp_path: Path):
    paper = {"source": "x", "claims": [{"claim": "big wins", "task": "rte", "a": "big", "b": "base"}]}
    exp = _experiment({"adaptive": {"min": 3, "max": 30, "step": 3, "target": "sequential"}}, paper=paper)
    summary = run_adaptive(exp, tmp_path, train_fn="fakes_adaptive:scored", max_workers=2, progress=False)
    assert all(d.stop and d.n < 30 and d.reason.startswith("settled") for d in summary.decisions)
    assert "rte: big > base" in summary.decisions[0].reason and summary.runs_saved >= 30
    assert len(load_runs(tmp_path / "ad")) == summary.runs_used


def test_run_adaptive_needs_a_budget(tmp_path: Path):
    with pytest.raises(ValueError, match="no adaptive seed budget"):
        run_adaptive(_experiment(3), tmp_path)


def test_budget_tests_each_mean_claim_at_its_holm_share_and_the_verdict_replays_it(tmp_path: Path):
    """One alpha: the budget settles a mean claim one-sided at alpha / m (m claims in the Holm family), and the
    claim's verdict replays that group-sequential test to the same look instead of a fixed-sample test."""
    from harness.analysis.budget import budget_pairs
    from harness.analysis.verdicts.claims import claim_verdicts
    from harness.experiment.paper import parse_paper

    claims = [{"claim": "big wins", "task": "rte", "a": "big", "b": "base"},
              {"claim": "big spreads less", "task": "rte", "a": "big", "b": "base", "statistic": "std",
               "direction": "less"}]  # fmt: skip
    paper = {"source": "x", "claims": claims}
    exp = _experiment({"adaptive": {"min": 3, "max": 30, "step": 3, "target": "sequential", "spending": "pocock"}},
                      paper=paper)  # fmt: skip
    (pair,) = budget_pairs(exp.paper, exp.tasks, exp.recipes)
    assert pair.direction == "greater" and pair.alpha_share == pytest.approx(0.5)
    summary = run_adaptive(exp, tmp_path, train_fn="fakes_adaptive:scored", max_workers=2, progress=False)
    mean, spread = claim_verdicts(parse_paper(paper), load_runs(tmp_path / "ad"), adaptive=exp.adaptive, n_boot=200)
    stop = summary.decisions[0].n
    assert mean.label == "reproduced" and mean.n_a == mean.n_b == stop and mean.p_one_sided <= 0.025
    assert any(c.startswith("group-sequential verdict (pocock spending at α/m = 0.025") and f"({stop} seeds per arm)"
               in c for c in mean.caveats)  # fmt: skip
    assert any("did not consider this claim" in c for c in spread.caveats) and spread.alpha == 0.05
