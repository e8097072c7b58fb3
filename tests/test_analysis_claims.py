"""Verdict records (harness/analysis/verdicts/claims.py): four computed labels, the gates, Holm over every claim, seeds
needed for the verdict's own test, early-stopped runs, and the one-recipe statistics of Dodge et al. 2020."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.analysis.seeds.compare import holm
from harness.analysis.seeds.degenerate import newcombe_interval
from harness.analysis.stats.power import fisher_seeds, seeds_for_power, spread_seeds
from harness.analysis.verdicts.claims import (
    LABELS,
    ClaimVerdict,
    claim_verdicts,
    holm_levels,
    verdicts_frame,
    verdicts_from_frame,
)
from harness.experiment.paper import parse_paper


def runs_frame(arms: dict[str, np.ndarray], *, task: str = "sst2", majority: float = 50.0, select=None,
               protocol: str = "heldout", status: dict[str, list[str]] | None = None) -> pd.DataFrame:  # fmt: skip
    """Runs of one task: recipe -> scores (NaN = diverged); `select` recipe -> best/final; `status` overrides."""
    rows = []
    for recipe, scores in arms.items():
        for i, score in enumerate(scores):
            st = (status or {}).get(recipe, [])
            s = st[i] if i < len(st) else ("diverged" if np.isnan(score) else "done")
            spec = {"eval_protocol": protocol, "recipe": {"name": recipe, "select": (select or {}).get(recipe, "best")}}
            rows.append({
                "run_id": f"{recipe}-{i}", "task": task, "recipe": recipe, "status": s, "score": float(score),
                "metric": "accuracy", "majority_val": majority, "majority_test": majority, "init_seed": i + 1,
                "order_seed": i + 1, "val_best": float(score), "val_final": float(score), "spec": json.dumps(spec),
                "provenance": "{}", "config_key": f"{task}/{recipe}",
            })  # fmt: skip
    return pd.DataFrame(rows)


def claim(a="new", b="old", statistic="mean", direction="greater", **kw) -> dict:
    return {"claim": f"{a} {direction} {b} on {statistic}", "task": "sst2", "a": a, "b": b, "statistic": statistic,
            "direction": direction, **kw}  # fmt: skip


def verdicts(runs, *claims, results=None, seeds=None, **kw) -> tuple[ClaimVerdict, ...]:
    paper = {"source": "test", "claims": list(claims), **({"results": results} if results else {})}
    if seeds:
        paper["seeds"] = seeds
    return claim_verdicts(parse_paper(paper), runs, n_boot=400, n_perm=199, **kw)


RNG = np.random.default_rng(3)
NEW, OLD = 80 + RNG.normal(0, 1.5, 16), 76 + RNG.normal(0, 1.5, 16)


def test_reproduced_when_significant_after_holm_in_the_claimed_direction():
    (v,) = verdicts(runs_frame({"new": NEW, "old": OLD}), claim())
    assert v.label == "reproduced" and v.label in LABELS
    want = stats.ttest_ind(NEW, OLD, equal_var=False, alternative="greater").pvalue
    assert v.p_one_sided == pytest.approx(want) and v.p_holm == pytest.approx(want)
    assert v.effect == pytest.approx(NEW.mean() - OLD.mean()) and v.ci_lo < v.effect < v.ci_hi
    assert v.n_a == v.n_b == 16 and v.seeds_needed is None and "Welch t p_Holm <0.001 < 0.05" in v.reason


def test_not_reproduced_only_with_a_printed_effect_outside_our_ci():
    runs = runs_frame({"new": NEW, "old": OLD})
    printed = {"sst2": {"new": {"mean": 70.0}, "old": {"mean": 60.0}}}  # the paper: +10, far above our +4
    (v,) = verdicts(runs, claim(direction="less"), results=printed)
    assert v.paper_effect == pytest.approx(10.0) and v.label == "not reproduced"
    assert "+10.0 lies outside our 95% CI" in v.reason
    (none,) = verdicts(runs, claim(direction="less"))  # nothing printed: the same data cannot say "not reproduced"
    assert none.paper_effect is None and none.label == "inconclusive"
    assert "printed no effect at this scale" in none.reason
    (hidden,) = verdicts(runs, claim(direction="less", paper_effect="not printed"), results=printed)
    assert hidden.paper_effect is None and hidden.label == "inconclusive"


def test_reproduced_wins_over_a_different_size_and_says_so():
    printed = {"sst2": {"new": {"mean": 70.0}, "old": {"mean": 60.0}}}
    (v,) = verdicts(runs_frame({"new": NEW, "old": OLD}), claim(), results=printed)
    assert v.label == "reproduced" and any("the direction reproduces, not the size" in c for c in v.caveats)


def test_inconclusive_carries_the_seeds_of_its_own_one_sided_test_at_its_holm_level():
    rng = np.random.default_rng(8)
    a, b = 77 + rng.normal(0, 2, 8), 76 + rng.normal(0, 2, 8)
    big_a, big_b = 90 + rng.normal(0, 1, 8), 70 + rng.normal(0, 1, 8)
    runs = pd.concat([runs_frame({"new": a, "old": b}), runs_frame({"x": big_a, "y": big_b}).assign(
        run_id=lambda f: "xy-" + f["run_id"])], ignore_index=True)  # fmt: skip
    small, big = verdicts(runs, claim(), claim("x", "y"))
    assert small.label == "inconclusive" and big.label == "reproduced"
    # the big claim ranks first (alpha / 2), the small one second: Holm level alpha / 1
    assert small.holm_level == pytest.approx(0.05) and big.holm_level == pytest.approx(0.025)
    want = seeds_for_power(a.mean() - b.mean(), a.std(ddof=1), b.std(ddof=1), 0.05, 0.8, "greater")
    assert small.seeds_needed == want and want != seeds_for_power(a.mean() - b.mean(), a.std(ddof=1), b.std(ddof=1))


def test_spread_and_rate_claims_need_their_own_tests_seeds():
    rng = np.random.default_rng(4)
    a, b = 80 + rng.normal(0, 1.0, 10), 80 + rng.normal(0, 1.4, 10)
    a[:2], b[:1] = 50.0, 50.0  # two and one runs at the majority bar (degenerate)
    runs = runs_frame({"new": a, "old": b})
    spread, rate = verdicts(runs, claim(statistic="std", direction="less"), claim(statistic="degenerate_rate"))
    assert spread.label == rate.label == "inconclusive"
    levels = holm_levels(np.array([spread.p_one_sided, rate.p_one_sided]), 0.05)
    assert spread.seeds_needed == spread_seeds(a, b, "less", levels[0], 0.8, "brown_forsythe")
    assert rate.seeds_needed == fisher_seeds(2, 10, 1, 10, "greater", levels[1], 0.8)
    assert rate.effect == pytest.approx(0.1) and (rate.ci_lo, rate.ci_hi) == pytest.approx(
        newcombe_interval(2, 10, 1, 10)
    )


def test_gate_an_arm_at_the_constant_predictor():
    rng = np.random.default_rng(1)
    learns = 80 + rng.normal(0, 1, 10)
    collapsed = np.r_[np.full(6, 50.0), 70 + rng.normal(0, 1, 4)]  # 6 of 10 at the bar
    near = 51.5 + rng.normal(0, 0.3, 10)  # above the bar, but its mean within 2 points of it
    runs = runs_frame({"new": learns, "old": collapsed, "near": near})
    mean, rate, close = verdicts(runs, claim(), claim(statistic="degenerate_rate", direction="less"),
                                 claim("new", "near"))  # fmt: skip
    assert mean.label == "not testable here" and "old sits at the constant predictor: 6/10" in mean.reason
    assert rate.label == "reproduced"  # a rate claim is about one arm collapsing: gated only when both do
    assert close.label == "not testable here" and "mean 51.5 within 2 points of its 50.0" in close.reason


def test_gate_a_rate_claim_without_degenerate_runs_and_asymmetric_selection():
    runs = runs_frame({"new": NEW, "old": OLD}, protocol="dev", select={"new": "best", "old": "final"})
    rate, mean = verdicts(runs, claim(statistic="degenerate_rate"), claim())
    assert rate.label == "not testable here" and "no degenerate run in either arm (0/16 vs 0/16)" in rate.reason
    assert mean.label == "not testable here" and "asymmetric checkpoint selection" in mean.reason
    heldout = runs_frame({"new": NEW, "old": OLD}, select={"new": "best", "old": "final"})  # chosen on val only
    assert verdicts(heldout, claim())[0].label == "reproduced"


def test_untestable_claims_stay_in_the_holm_family_at_p_1():
    runs = runs_frame({"new": NEW, "old": OLD})
    ok, missing = verdicts(runs, claim(), claim("new", "absent"))
    assert missing.label == "not testable here" and missing.reason == "not run here (absent)"
    assert missing.p_holm == 1.0 and ok.family_size == 2
    assert ok.p_holm == pytest.approx(holm(np.array([ok.p_one_sided, 1.0]))[0]) == pytest.approx(2 * ok.p_one_sided)


def test_early_stopped_runs_are_left_out_counted_and_caveated():
    scores = {"new": np.r_[NEW, 99.0, 99.0], "old": OLD}
    runs = runs_frame(scores, status={"new": ["done"] * 16 + ["stopped", "stopped"]})
    (v,) = verdicts(runs, claim())
    assert v.n_a == 16 and v.n_stopped_excluded == 2
    assert v.effect == pytest.approx(NEW.mean() - OLD.mean())  # the two 99s at the rung are not in the mean
    assert any("2 early-stopped run(s) left out" in c and "survivorship" in c for c in v.caveats)
    assert not any("early-stopped" in c for c in verdicts(runs_frame({"new": NEW, "old": OLD}), claim())[0].caveats)


def test_fewer_seeds_than_the_paper_is_a_caveat_and_records_round_trip():
    vs = verdicts(runs_frame({"new": NEW, "old": OLD}), claim(), claim(statistic="std"), seeds=20)
    assert all("fewer seeds than the paper (16/16 vs 20)" in v.caveats for v in vs)
    frame = verdicts_frame(vs)
    assert list(frame["label"]) == [v.label for v in vs] and frame["seeds_needed"].dtype == "Int64"
    assert verdicts_from_frame(frame) == vs


# --- Dodge et al. 2020: one-recipe statistics --------------------------------------------------------------------


def grid_runs(init_sd: float, order_sd: float, n: int = 6, seed: int = 0, even: bool = False) -> pd.DataFrame:
    """An n x n init x order grid: score = 80 + init effect + order effect + noise 0.3 (even: the two seed
    sources get the same evenly spaced effects, so they contribute exactly alike)."""
    rng = np.random.default_rng(seed)
    fi, fo = rng.normal(0, init_sd, n), rng.normal(0, order_sd, n)
    if even:
        fi, fo = np.linspace(-init_sd, init_sd, n), rng.permutation(np.linspace(-order_sd, order_sd, n))
    rows = [(i + 1, j + 1, 80 + fi[i] + fo[j] + rng.normal(0, 0.3)) for i in range(n) for j in range(n)]
    runs = runs_frame({"grid": np.array([s for *_, s in rows])})
    runs["init_seed"], runs["order_seed"] = [i for i, _, _ in rows], [j for _, j, _ in rows]
    return runs


def one(statistic, direction="greater", **kw) -> dict:
    return {"claim": f"{statistic} {direction}", "task": "sst2", "a": "grid", "statistic": statistic,
            "direction": direction, **kw}  # fmt: skip


def test_variance_share_claims_from_the_grid_bootstrap():
    order_heavy = grid_runs(0.2, 3.0)
    (less,) = verdicts(order_heavy, one("variance_share", "less"))
    assert less.label == "reproduced" and less.effect < -0.5 and less.ci_hi < 0 and less.b == ""
    (comparable,) = verdicts(order_heavy, one("variance_share", "comparable", margin=0.25))
    assert comparable.label == "inconclusive" and comparable.p_one_sided > 0.5
    assert (less.margin, comparable.margin) == (0.0, 0.25)  # kept beside the verdict: the plot draws it
    balanced = grid_runs(2.0, 2.0, n=20, even=True)  # levels resampled: 20 a side keep the CI within +-0.4
    (same,) = verdicts(balanced, one("variance_share", "comparable", margin=0.4))
    assert abs(same.effect) < 0.1 and -0.4 < same.ci_lo < same.ci_hi < 0.4 and same.label == "reproduced"


def test_variance_share_uses_non_degenerate_runs_only():
    runs = grid_runs(0.2, 3.0)
    runs.loc[runs["init_seed"] == 1, "score"] = 50.0  # init seed 1 collapses on every order: not variance
    (v,) = verdicts(runs, one("variance_share", "less"))
    assert "5 × 6 grid" in v.detail and v.label == "reproduced"


def test_expected_max_gain_is_the_closed_form_and_tested_against_its_margin():
    runs = grid_runs(1.0, 1.0)
    v = np.sort(runs["score"].to_numpy())
    n, size = 5, v.size
    weights = (np.arange(1, size + 1) / size) ** n - (np.arange(size) / size) ** n
    (gain,) = verdicts(runs, one("expected_max_gain", n=n, margin=0.5))
    assert gain.effect == pytest.approx(weights @ v - v.mean())
    assert gain.label == "reproduced" and gain.ci_lo < gain.effect < gain.ci_hi
    (huge,) = verdicts(runs, one("expected_max_gain", n=n, margin=50.0))
    assert huge.label == "inconclusive" and huge.seeds_needed is None


def test_early_stopping_gain_matches_the_simulation_table_and_needs_every_curve():
    from harness.analysis.seeds.early_stop import early_stopping_table

    rng = np.random.default_rng(2)
    runs = runs_frame({"grid": np.zeros(30)})
    early = rng.normal(0, 1, 30)
    final = early + rng.normal(0, 0.5, 30)
    points = [((0.25, early[i]), (1.0, final[i])) for i in range(30)]
    curves = pd.DataFrame([{"run_id": f"grid-{i}", "eval_index": k, "fraction": f, "val_metric": 70 + v}
                           for i in range(30) for k, (f, v) in enumerate(points[i])])  # fmt: skip
    runs["score"] = 70 + final
    (v,) = verdicts(runs, one("early_stopping_gain", n_start=20, fraction=0.25, keep=5), curves=curves)
    table = early_stopping_table(curves, runs, n_start=(20,), fractions=(0.25,), keep=(5,))
    row = table.iloc[0]
    assert v.effect == pytest.approx(row["expected_best_score"] - row["expected_best_same_budget"])
    assert v.ci_lo <= v.effect <= v.ci_hi and v.label in LABELS
    stopped = runs.assign(status=["stopped"] + ["done"] * 29)
    (biased,) = verdicts(stopped, one("early_stopping_gain", n_start=20, fraction=0.25, keep=5), curves=curves)
    assert biased.label == "not testable here" and "stopped online" in biased.reason


def test_adaptive_mean_claim_uses_the_sequential_boundary_not_a_fixed_test():
    """Seeds added by a sequential budget (Pocock, looks at 4/8/12/16): data where the fixed-sample one-sided Welch
    test on all 16 seeds gives p < 0.05 but the group-sequential test never crossed its boundary. The old verdict
    called this significant; the claim is inconclusive, and its p is the stage-wise p-value (> alpha)."""
    from harness.analysis.stats.sequential import sequential_replay
    from harness.experiment.spec import AdaptiveSeeds

    policy = AdaptiveSeeds(min=4, max=16, step=4, target="sequential", spending="pocock")
    rng = np.random.default_rng(0)
    while True:  # the first null study of this stream with a fixed-sample "hit" the design does not confirm
        a, b = 70 + rng.normal(0, 2, 16), 70 + rng.normal(0, 2, 16)
        fixed = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
        if fixed < 0.05 and not sequential_replay(a, b, policy.looks, 0.05, "pocock").crossed[0]:
            break
    (v,) = verdicts(runs_frame({"new": a, "old": b}), claim(), adaptive=policy)
    assert v.label == "inconclusive" and v.p_one_sided > 0.05 > fixed and v.alpha == 0.05
    assert v.n_a == v.n_b == 16 and any("group-sequential verdict" in c for c in v.caveats)
    (plain,) = verdicts(runs_frame({"new": a, "old": b}), claim())  # the same data without the budget
    assert plain.label == "reproduced"
