"""Online early stopping of poor seeds (Dodge et al. 2020): one synchronous rung per configuration.

The rule, as pure functions and a small state machine (no I/O, no processes):

* Each run of a configuration (task x recipe) reports its dev metric at its
  first evaluation with `at <= fraction < 1` (the rung), then waits.
* When every run of the configuration still undecided in this session has
  reached the rung (or ended before it), the rung is decided: all rung scores
  known for the configuration -- this session's and those of runs stored by
  earlier sessions -- are ranked, the best `k` are kept and every waiting run
  outside them is stopped (`decide`). k = ceil(keep x n) for a fraction
  keep < 1, or min(keep, n) for a count keep >= 1.
* If waiting would deadlock (every slot holds a waiting run while other runs
  are queued: fewer slots than seeds), the scheduler decides the waiting runs
  now (`resolve(...)`) under a quota that keeps exactly the declared share
  whatever the slot count. With N runs expected at the rung (scores known +
  runs still to arrive) the configuration keeps K = keep_count(N, keep) in
  all. A partial cohort keeps its runs that rank within the best
  ceil(K * known / N) of the known scores (the declared share of what is
  known so far), clamped so that the quota stays reachable: at most the keeps
  left, at least the keeps left minus the runs still to arrive. The last
  cohort fills the quota exactly with its best runs. With slots >= seeds per
  configuration there is one cohort and the rule is exactly Dodge et al.'s.
* Decisions are sticky per run id: a retry of a kept run is kept again
  without waiting; a retry of a stopped run is stopped again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def keep_count(n: int, keep: float) -> int:
    """How many of n seeds survive: ceil(keep*n) (at least 1) for a fraction, min(keep, n) for a count."""
    if n <= 0:
        return 0
    if keep >= 1:
        return min(n, int(keep))
    return max(1, min(n, math.ceil(keep * n - 1e-9)))


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Run ids best first: higher score first, NaN last, ties by run id (deterministic)."""

    def order(item: tuple[str, float]) -> tuple[bool, float, str]:
        run_id, score = item
        bad = score is None or math.isnan(score)
        return (bad, 0.0 if bad else -score, run_id)

    return [run_id for run_id, _ in sorted(scores.items(), key=order)]


def decide(rung_scores: Mapping[str, float], keep: float) -> set[str]:
    """The runs to stop at a rung: every run outside the best keep_count(n, keep)."""
    ranked = ranking(rung_scores)
    return set(ranked[keep_count(len(ranked), keep) :])


@dataclass
class Decision:
    run_id: str
    config_key: str
    keep: bool
    score: float
    rank: int  # 1-based among all known rung scores of the configuration
    n: int
    k: int


@dataclass
class RungTracker:
    """Rung bookkeeping for one session: who is expected, who waits, what was decided."""

    at: float
    keep: float
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # config -> run -> rung score
    cohort: dict[str, set[str]] = field(default_factory=dict)  # config -> undecided runs of this session
    waiting: dict[str, set[str]] = field(default_factory=dict)  # config -> runs waiting at the rung
    decided: dict[str, bool] = field(default_factory=dict)  # run -> keep?

    def add_prior(self, config_key: str, run_id: str, score: float, kept: bool = True) -> None:
        """A rung score of a run stored by an earlier session (kept: trained past the rung): ranked against and
        counted in the quota, never decided again."""
        self.scores.setdefault(config_key, {})[run_id] = score
        self.decided[run_id] = kept

    def expect(self, runs: Iterable[tuple[str, str]]) -> None:
        """(config_key, run_id) pairs this session will run."""
        for config_key, run_id in runs:
            if run_id not in self.decided:
                self.cohort.setdefault(config_key, set()).add(run_id)

    def arrive(self, config_key: str, run_id: str, score: float) -> bool | None:
        """A run reached the rung: its sticky decision, or None (it waits)."""
        if run_id in self.decided:
            return self.decided[run_id]
        self.scores.setdefault(config_key, {})[run_id] = score
        self.waiting.setdefault(config_key, set()).add(run_id)
        self.cohort.setdefault(config_key, set()).add(run_id)
        return None

    def withdraw(self, config_key: str, run_id: str) -> None:
        """A waiting run's worker died: it will arrive again on retry."""
        self.waiting.get(config_key, set()).discard(run_id)

    def leave(self, config_key: str, run_id: str) -> None:
        """A run ended without a decision (finished before the rung, diverged, failed)."""
        self.cohort.get(config_key, set()).discard(run_id)
        self.waiting.get(config_key, set()).discard(run_id)

    def ready(self) -> list[str]:
        """Configurations whose whole cohort waits at the rung."""
        return sorted(c for c, w in self.waiting.items() if w and self.cohort.get(c, set()) <= w)

    def waiting_configs(self) -> list[str]:
        return sorted(c for c, w in self.waiting.items() if w)

    def resolve(self, config_key: str) -> list[Decision]:
        """Decide every waiting run of a configuration under the quota rule (module docstring)."""
        scores = self.scores.get(config_key, {})
        waiting = self.waiting.get(config_key, set())
        ranked = ranking(scores)
        pending = len(self.cohort.get(config_key, set()) - waiting)  # runs of this session still to arrive
        n_total = len(ranked) + pending
        k = keep_count(n_total, self.keep)
        kept = sum(1 for r in scores if r not in waiting and self.decided.get(r, False))
        left = max(0, k - kept)
        mine = sorted(waiting, key=ranked.index)
        if pending:
            share = math.ceil(k * len(ranked) / n_total - 1e-9)
            wanted = sum(1 for r in mine if ranked.index(r) < share)
            n_keep = min(max(wanted, left - pending, 0), left, len(mine))
        else:
            n_keep = min(left, len(mine))
        out = []
        for i, run_id in enumerate(mine):
            keep = i < n_keep
            self.decided[run_id] = keep
            out.append(Decision(run_id, config_key, keep, scores[run_id], ranked.index(run_id) + 1, n_total, k))
            self.cohort[config_key].discard(run_id)
        self.waiting[config_key] = set()
        return out


def compute_saved(stop_fraction: float, in_group: bool, dropped_at: float | None) -> float:
    """The share of one run's training that stopping it at `stop_fraction` saved.

    A run trained alone ends its process at the stop: 1 - stop_fraction. Inside a seed group only what the
    engine reports having removed from the batch counts (1 - dropped_at): a stopped run frozen in the batch
    costs every step its group takes, so it saved nothing.
    """
    if in_group:
        return 0.0 if dropped_at is None else 1.0 - min(max(dropped_at, 0.0), 1.0)
    return 1.0 - min(max(stop_fraction, 0.0), 1.0)


def rung_score_of_curve(curve: Iterable[tuple[float, float]], at: float) -> float | None:
    """The rung score of a stored curve [(fraction, val_metric), ...]: val at the first eval in [at, 1)."""
    for fraction, val in sorted(curve):
        if at <= fraction < 1.0:
            return val
    return None
