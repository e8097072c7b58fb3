"""Online early stopping keeps exactly the declared share whatever the slot count (8 seeds on 2 slots).

The driver of harness/schedule/core.py runs against a simulated backend: each attempt reaches the rung
after a random time and waits there for the driver's answer, so every draw is another arrival order
(and another ranking of the rung scores)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakes_schedule import _result, make_experiment

from harness.experiment.config import EarlyStopPolicy
from harness.schedule.backend import Attempt, Backend, Evaluated, Finished, Message, Started
from harness.schedule.core import RunSummary, _Driver, _tracker
from harness.schedule.early_stop import RungTracker
from harness.storage.records import EvalPoint
from harness.storage.store import load_runs


class SimBackend(Backend):
    """Discrete-event backend: an attempt reaches the rung at a random time, waits for its answer, then
    finishes (kept: trains to the end) or stops at once. No threads, no processes."""

    def __init__(self, slots: int, rng: np.random.Generator, rung_scores: dict[str, float]):
        self._slots, self.rng, self.scores = slots, rng, rung_scores
        self.now = 0.0
        self.live: dict[str, dict] = {}
        self.answered: dict[str, bool] = {}

    @property
    def slots(self) -> int:
        return self._slots

    def describe(self) -> str:
        return f"simulated, {self._slots} slot(s)"

    def submit(self, attempt: Attempt) -> None:
        self.live[attempt.key] = {"attempt": attempt, "at": self.now + self.rng.exponential(1.0), "state": "new"}

    def messages(self, timeout: float) -> list[Message]:
        movable = {k: v for k, v in self.live.items() if v["state"] in ("new", "training") or k in self.answered}
        if not movable:
            return []  # everyone waits at the rung: only the driver can move
        key = min(movable, key=lambda k: movable[k]["at"] if k not in self.answered else self.now)
        item = self.live[key]
        spec = item["attempt"].spec
        if key in self.answered:
            keep = self.answered.pop(key)
            del self.live[key]
            point = {"eval_index": 0, "step": 10, "fraction": 0.25, "epoch": 0.25, "train_loss": 1.0,
                     "val_metric": self.scores[spec.run_id], "test_metric": math.nan}  # fmt: skip
            curve = [point] if not keep else [point, {**point, "eval_index": 1, "step": 40, "fraction": 1.0}]
            ctx = SimpleNamespace(device="sim", micro_batch_size=None, threads=1)
            return [Finished(key, _result(spec, ctx, "done" if keep else "stopped", curve, 0.0))]
        self.now = max(self.now, item["at"])
        item["state"] = "waiting"
        point = EvalPoint(spec.run_id, spec.config_key, 0, 10, 0.25, self.scores[spec.run_id], math.nan)
        return [Started(key, "sim"), Evaluated(key, point, at_rung=True)]

    def answer(self, key: str, keep: bool) -> None:
        self.answered[key] = keep

    def cancel(self, key: str) -> None:
        self.live.pop(key, None)

    def close(self) -> None:
        pass


def _drive(tmp_path: Path, seed: int, n_seeds: int = 8, slots: int = 2, keep: float = 0.5):
    """Run the driver on the simulated backend; (stored runs, rung score per run id)."""
    exp = make_experiment(f"q{seed}", n_seeds, early_stop=EarlyStopPolicy(at=0.25, keep=keep))
    exp_dir = tmp_path / exp.name
    rng = np.random.default_rng(seed)
    scores = dict(zip((s.run_id for s in exp.runs), rng.permutation(n_seeds) + 50.0, strict=True))
    backend = SimBackend(slots, rng, scores)
    todo = list(exp.runs)
    tracker = _tracker(exp, exp_dir, todo, set(), todo)
    summary = RunSummary(exp.name, "sim", slots, total=len(todo), skipped=0)
    driver = _Driver(exp, exp_dir, backend, tracker, summary, progress=False)
    driver.run(todo)
    return load_runs(exp_dir), scores


def _status(tmp_path: Path, *args) -> list[str]:
    return _drive(tmp_path, *args)[0]["status"].astype(str).tolist()


@pytest.mark.parametrize("seed", range(20))
def test_eight_seeds_on_two_slots_keep_exactly_four(tmp_path: Path, seed: int) -> None:
    # the old rule ranked cohorts as they arrived: between 1 and 7 kept depending on the arrival order
    status = _status(tmp_path, seed)
    assert len(status) == 8 and status.count("done") == 4 and status.count("stopped") == 4


@pytest.mark.parametrize(("n_seeds", "slots", "keep", "kept"), [(8, 3, 0.25, 2), (7, 2, 0.5, 4), (6, 1, 2, 2)])
def test_other_slot_counts_and_shares_keep_exactly_the_declared_number(tmp_path, n_seeds, slots, keep, kept):
    for seed in range(3):
        assert _status(tmp_path / str(seed), seed, n_seeds, slots, keep).count("done") == kept


def test_enough_slots_is_exactly_dodges_rule(tmp_path: Path) -> None:
    runs, scores = _drive(tmp_path, 3, slots=8)
    best4 = set(sorted(scores, key=scores.get)[-4:])
    assert set(runs.loc[runs["status"] == "done", "run_id"]) == best4


def _simulate_tracker(rng: np.random.Generator, n_seeds: int, slots: int, keep: float) -> int:
    """The driver's rung logic on the tracker alone: `slots` runs in flight, each reaching the rung in a random
    order; when every slot waits while runs are queued the waiting cohort is decided. Returns how many are kept."""
    t = RungTracker(at=0.25, keep=keep)
    ids = [f"r{i}" for i in range(n_seeds)]
    scores = dict(zip(ids, rng.permutation(n_seeds).astype(float), strict=True))
    t.expect(("cfg", r) for r in ids)
    queue, live, kept = list(rng.permutation(ids)), [], 0
    while queue or live:
        while queue and len(live) < slots:
            live.append(queue.pop())
        running = [r for r in live if r not in t.waiting.get("cfg", set())]
        if running:
            r = running[int(rng.integers(len(running)))]
            t.arrive("cfg", r, scores[r])
        stuck = bool(queue) and all(r in t.waiting.get("cfg", set()) for r in live)
        if t.ready() or stuck:
            for d in t.resolve("cfg"):
                kept += d.keep
                live.remove(d.run_id)
    return kept


def test_tracker_keeps_exactly_the_share_over_2000_arrival_orders() -> None:
    rng = np.random.default_rng(0)
    assert {_simulate_tracker(rng, 8, 2, 0.5) for _ in range(2000)} == {4}
    assert {_simulate_tracker(rng, 10, 3, 0.25) for _ in range(500)} == {3}
