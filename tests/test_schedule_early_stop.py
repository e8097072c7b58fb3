"""The early-stopping rule (harness/schedule/early_stop.py): pure functions and the rung state machine."""

from __future__ import annotations

import math

import pytest

from harness.schedule.early_stop import RungTracker, decide, keep_count, ranking, rung_score_of_curve


@pytest.mark.parametrize(
    ("n", "keep", "k"),
    [(8, 0.5, 4), (7, 0.5, 4), (1, 0.5, 1), (3, 0.1, 1), (10, 0.25, 3), (8, 3, 3), (2, 5, 2), (0, 0.5, 0)],
)
def test_keep_count(n: int, keep: float, k: int) -> None:
    assert keep_count(n, keep) == k


def test_decide_stops_all_but_the_best_fraction() -> None:
    scores = {"a": 70.0, "b": 55.0, "c": 80.0, "d": 60.0, "e": 65.0, "f": 50.0}
    assert decide(scores, 0.5) == {"b", "d", "f"}
    assert decide(scores, 2) == {"b", "d", "e", "f"}
    assert decide(scores, 0.99) == set()


def test_decide_ranks_nan_last_and_breaks_ties_by_run_id() -> None:
    scores = {"x": math.nan, "b": 60.0, "a": 60.0, "c": 40.0}
    assert ranking(scores) == ["a", "b", "c", "x"]
    assert decide(scores, 0.25) == {"b", "c", "x"}


def test_tracker_waits_for_the_whole_cohort_then_decides() -> None:
    t = RungTracker(at=0.25, keep=0.5)
    t.expect([("cfg", "r1"), ("cfg", "r2"), ("cfg", "r3"), ("other", "o1")])
    assert t.arrive("cfg", "r1", 70.0) is None
    assert t.arrive("cfg", "r2", 50.0) is None
    assert t.ready() == []  # r3 still running
    t.leave("cfg", "r3")  # r3 ended before the rung (e.g. diverged)
    assert t.ready() == ["cfg"]
    decisions = {d.run_id: d.keep for d in t.resolve("cfg")}
    assert decisions == {"r1": True, "r2": False}
    assert t.arrive("cfg", "r2", 50.0) is False  # sticky on retry
    assert t.arrive("cfg", "r1", 70.0) is True


def test_tracker_partial_cohorts_rank_against_every_known_score() -> None:
    t = RungTracker(at=0.25, keep=0.5)
    t.expect([("cfg", f"r{i}") for i in range(4)])
    t.arrive("cfg", "r0", 60.0)
    t.arrive("cfg", "r1", 70.0)
    assert t.ready() == []
    assert {d.run_id: d.keep for d in t.resolve("cfg")} == {"r0": False, "r1": True}  # deadlock breaker
    t.arrive("cfg", "r2", 65.0)
    t.arrive("cfg", "r3", 75.0)
    assert t.ready() == ["cfg"]
    # 4 known scores, keep 2: r3 (75) and r1 (70); r2 (65) is stopped
    assert {d.run_id: d.keep for d in t.resolve("cfg")} == {"r2": False, "r3": True}


def test_tracker_counts_runs_stored_by_earlier_sessions() -> None:
    t = RungTracker(at=0.25, keep=0.5)
    t.add_prior("cfg", "old1", 90.0)
    t.add_prior("cfg", "old2", 85.0)
    t.expect([("cfg", "new")])
    t.arrive("cfg", "new", 80.0)
    assert [(d.run_id, d.keep, d.rank, d.n, d.k) for d in t.resolve("cfg")] == [("new", False, 3, 3, 2)]


def test_withdrawn_run_is_awaited_again() -> None:
    t = RungTracker(at=0.25, keep=0.5)
    t.expect([("cfg", "a"), ("cfg", "b")])
    t.arrive("cfg", "a", 1.0)
    t.arrive("cfg", "b", 2.0)
    t.withdraw("cfg", "b")  # its worker died while waiting
    assert t.ready() == []
    t.arrive("cfg", "b", 2.0)
    assert t.ready() == ["cfg"]


def test_rung_score_of_curve_takes_the_first_eval_at_or_past_the_rung() -> None:
    assert rung_score_of_curve([(0.5, 3.0), (0.2, 1.0), (0.3, 2.0), (1.0, 9.0)], 0.25) == 2.0
    assert rung_score_of_curve([(0.1, 1.0), (1.0, 9.0)], 0.25) is None
