"""Churn between seeds, per-example accuracy, most-flipped examples, agreement between recipes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from harness.analysis.predictions.churn import (
    churn,
    flip_rate,
    mean_churn,
    most_flipped,
    pair_churn,
    per_example_accuracy,
    prediction_matrix,
    recipe_agreement,
)


def test_hand_computed_case():
    m = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]])
    # pairs: (0,1) differ on 1 of 4; (0,2) on 3 of 4; (1,2) on 2 of 4 -> mean 6/12
    assert mean_churn(m) == pytest.approx(0.5)
    explicit = np.mean([pair_churn(m[i], m[j]) for i, j in itertools.combinations(range(3), 2)])
    assert mean_churn(m) == pytest.approx(explicit)
    assert flip_rate(m).tolist() == pytest.approx([2 / 3, 2 / 3, 0.0, 2 / 3])
    assert per_example_accuracy(m, np.array([0, 1, 1, 1])).tolist() == pytest.approx([2 / 3, 2 / 3, 1.0, 2 / 3])


def test_multiclass_counts_match_explicit_pairs():
    rng = np.random.default_rng(1)
    m = rng.integers(0, 3, size=(7, 50))
    explicit = np.mean([pair_churn(m[i], m[j]) for i, j in itertools.combinations(range(7), 2)])
    assert mean_churn(m) == pytest.approx(explicit)


def test_independent_seeds_have_closed_form_churn():
    """Each seed right with probability p on each example, independently: E[churn] = 2p(1-p)."""
    rng = np.random.default_rng(2)
    p, labels = 0.8, np.zeros(4000, dtype=int)
    m = np.where(rng.random((12, 4000)) < p, labels, 1)
    res = churn(m)
    assert res.churn == pytest.approx(2 * p * (1 - p), abs=0.01)
    assert res.ci_low <= 2 * p * (1 - p) <= res.ci_high and res.n_pairs == 66 and res.n_examples == 4000


def test_jackknife_ci_covers_at_nominal_rate():
    """Seeds of varying skill: over 300 replications the 95% CI covers the population churn ~95% of the time."""
    rng = np.random.default_rng(3)
    m_examples = 200
    difficulty = rng.random(m_examples)

    def draw(n):
        skill = rng.normal(0, 0.15, size=(n, 1))
        return (rng.random((n, m_examples)) < np.clip(difficulty + skill, 0, 1)).astype(int)

    truth = mean_churn(draw(400))
    covered = [(r := churn(draw(10))).ci_low <= truth <= r.ci_high for _ in range(300)]
    assert 0.88 <= np.mean(covered) <= 0.995


def test_identical_seeds_have_zero_churn_and_few_seeds_no_ci():
    m = np.tile([0, 1, 1], (4, 1))
    assert churn(m).churn == 0 and churn(m).ci_high == 0
    two = churn(np.array([[0, 1], [1, 1]]))
    assert two.churn == 0.5 and math.isnan(two.ci_low)
    assert math.isnan(mean_churn(np.array([[0, 1]])))


def test_most_flipped_orders_by_flip_rate_with_votes():
    m = np.array([[0, 0, 1], [1, 0, 1], [1, 0, 0], [0, 0, 1]])
    table = most_flipped(m, labels=np.array([1, 0, 1]), top=2)
    assert table["example"].tolist() == [0, 2]  # 2-2 split first, then 3-1
    assert table.loc[0, "votes"] == "0×2, 1×2" and table.loc[0, "share_correct"] == 0.5
    assert table.loc[1, "flip_rate"] == pytest.approx(3 / 6)


def test_recipe_agreement_separates_which_from_how_many():
    rng = np.random.default_rng(4)
    n_ex = 300
    hard_a, hard_b = rng.random(n_ex) < 0.3, rng.random(n_ex) < 0.3  # b fails on different examples
    labels = np.zeros(n_ex, dtype=int)

    def seeds(hard, k):
        return (rng.random((k, n_ex)) < np.where(hard, 0.7, 0.05)).astype(int)

    same = recipe_agreement(seeds(hard_a, 5), seeds(hard_a, 5), labels)
    differ = recipe_agreement(seeds(hard_a, 5), seeds(hard_b, 5), labels)
    assert same.p_value > 0.05 and abs(same.excess) < 0.02 and same.accuracy_corr > 0.5
    assert differ.p_value < 0.05 and differ.excess > 0.03 and abs(differ.accuracy_corr) < 0.3
    with pytest.raises(ValueError, match="2 seeds"):
        recipe_agreement(seeds(hard_a, 1), seeds(hard_a, 3))


def test_prediction_matrix_from_store_table():
    frame = pd.DataFrame(
        {"run_id": ["b", "b", "a", "a", "c", "a"], "split": ["test", "test", "test", "test", "test", "val"],
         "example": [1, 0, 0, 1, 0, 0], "prediction": [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]}
    )  # fmt: skip
    ids, m = prediction_matrix(frame, ["a", "b", "c", "missing"], "test")
    assert ids == ["a", "b"] and m.tolist() == [[1.0, 1.0], [0.0, 1.0]]  # c has a different length


def test_churn_between_recipes_is_the_mean_over_cross_pairs():
    """The class-count form of the cross-recipe churn equals its definition: the mean over every (a, b) seed pair."""
    rng = np.random.default_rng(9)
    a, b = rng.integers(0, 3, (6, 50)), rng.integers(0, 3, (4, 50))
    explicit = np.mean([pair_churn(x, y) for x in a for y in b])
    assert recipe_agreement(a, b).between == pytest.approx(explicit, rel=1e-12)
