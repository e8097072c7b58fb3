"""What one claim's data say before Holm and labelling (harness/analysis/verdicts/claims.py labels them).

Two-recipe claims (mean, std, degenerate rate): the counted runs of each arm (early-stopped ones counted apart),
the learnability gates, the claim's one-sided test (or, after a sequential adaptive budget, the replay of its
group-sequential test and the stage-wise p-value), the effect with its 95% CI (from the comparison table when
it has the pair), the caveats, and what the seeds-needed calculation needs. One-recipe claims (Dodge et al.):
the gate and the statistic of harness/analysis/verdicts/dodge_claims.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.seeds.compare import compare
from harness.analysis.seeds.degenerate import newcombe_interval
from harness.analysis.seeds.describe import COUNTED_STATUSES, STOPPED_STATUS
from harness.analysis.stats.sequential import sequential_replay
from harness.analysis.verdicts import dodge_claims
from harness.analysis.verdicts.learnability import arm_check, gate_two_arms, selection_confound
from harness.analysis.verdicts.protocol import claim_test
from harness.experiment.paper import Claim, PaperReference
from harness.experiment.spec import AdaptiveSeeds

NAN = float("nan")


@dataclass(frozen=True)
class Measured:
    """What one claim's data say before Holm and labelling."""

    effect: float = NAN
    ci_lo: float = NAN
    ci_hi: float = NAN
    p: float = NAN
    n_a: int = 0
    n_b: int = 0
    n_stopped: int = 0
    gate: str = ""
    detail: str = ""
    caveats: tuple[str, ...] = ()
    power_input: tuple[Any, ...] = ()  # what seeds_needed needs: (kind, *data)


@dataclass(frozen=True)
class PerRun:
    """Per-run facts aligned on the runs' index: degenerate flag, the constant predictor's score on the scored
    split, and whether a NaN metric of a finished run was scored as that constant."""

    degenerate: pd.Series
    bars: pd.Series
    filled: pd.Series


def _counted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"].astype(str).isin(COUNTED_STATUSES)]


def _scores(rows: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(rows["score"], errors="coerce").astype(float).to_numpy()


def finished_nan(runs: pd.DataFrame) -> pd.Series:
    """Runs that finished with an undefined (NaN) metric: fill_finished_nan scores them as the constant."""
    status = runs["status"].astype(str)
    return status.isin(("done", "stopped")) & pd.to_numeric(runs["score"], errors="coerce").isna()


def _missing_note(rows: pd.DataFrame) -> str:
    """How the imported runs without a score were treated (harness import --missing), "" when none were."""
    counts: dict[str, int] = {}
    for text in rows.get("provenance", pd.Series(dtype=str)).dropna().astype(str):
        try:
            rule = json.loads(text).get("missing_score")
        except (ValueError, AttributeError):
            continue
        if rule:
            counts[rule] = counts.get(rule, 0) + 1
    meaning = {
        "constant": "scored as the constant predictor and counted degenerate",
        "diverged": "counted as diverged (degenerate, no score)",
        "failed": "left out as failed",
    }
    return "; ".join(
        f"{k} run(s) without a score in the imported log {meaning.get(rule, rule)} (harness import --missing {rule})"
        for rule, k in counts.items()
    )


def _pair_effect(
    statistic: str, a: np.ndarray, b: np.ndarray, deg_a: np.ndarray, deg_b: np.ndarray,
    comparisons: pd.DataFrame | None, claim: Claim, n_boot: int, n_perm: int, seed: int,
) -> tuple[float, float, float]:  # fmt: skip
    """(effect, ci_lo, ci_hi) of a two-recipe claim: from the comparison table when it has the pair (so the
    verdict and the table show the same interval), else computed with the same methods."""
    if statistic == "degenerate_rate":
        ka, kb = int(deg_a.sum()), int(deg_b.sum())
        lo, hi = newcombe_interval(ka, deg_a.size, kb, deg_b.size)
        return ka / deg_a.size - kb / deg_b.size, lo, hi
    method = "bootstrap_mean_diff" if statistic == "mean" else "bootstrap_std_ratio"
    rows = claim_rows(comparisons, claim.task, claim.a, claim.b) if comparisons is not None else None
    if rows is None or method not in rows:
        res = compare(a, b, degenerate_a=deg_a, degenerate_b=deg_b, n_boot=n_boot, n_perm=min(n_perm, 999), seed=seed)
        rows = {c.method: dataclasses.asdict(c) for c in res}
    row = rows[method]
    return float(row["effect"]), float(row["ci_lo"]), float(row["ci_hi"])


def claim_rows(comparisons: pd.DataFrame, task: str, a: str, b: str) -> dict[str, dict[str, Any]] | None:
    """Method -> comparison row (compare_table) for the pair a vs b, read from the reversed pair if needed."""
    c = comparisons
    if c.empty:
        return None
    key = c["task"].astype(str) == task
    direct = c[key & (c["a"].astype(str) == a) & (c["b"].astype(str) == b)]
    if len(direct):
        return {r["method"]: r for r in direct.to_dict("records")}
    reverse = c[key & (c["a"].astype(str) == b) & (c["b"].astype(str) == a)]
    if len(reverse):
        return {r["method"]: _flip(r) for r in reverse.to_dict("records")}
    return None


def _flip(row: dict[str, Any]) -> dict[str, Any]:
    """The same comparison read from b's side: differences negate, ratios invert, p-values stay."""
    row = dict(row)
    name, lo, hi = row["effect_name"], row["ci_lo"], row["ci_hi"]
    if name in ("mean_diff", "rank_biserial"):
        row["effect"], row["ci_lo"], row["ci_hi"] = -row["effect"], -hi, -lo
    elif name in ("std_ratio", "odds_ratio"):
        with np.errstate(divide="ignore"):
            inv = [1 / np.float64(v) for v in (row["effect"], hi, lo)]
        row["effect"], row["ci_lo"], row["ci_hi"] = inv
    return row


def _by_seed(rows: pd.DataFrame, size: int) -> np.ndarray:
    """Scores of counted runs indexed by init seed (column s - 1), NaN where a seed has none."""
    out = np.full(size, np.nan)
    for seed, score in zip(rows["init_seed"].astype(int), _scores(rows), strict=True):
        if 1 <= seed <= size:
            out[seed - 1] = score
    return out


def _sequential(
    claim: Claim, all_a: pd.DataFrame, all_b: pd.DataFrame, policy: AdaptiveSeeds, level: float
) -> tuple[float, int, str]:
    """Replay the budget's group-sequential test of a mean claim: (stage-wise p, seeds per arm at the stop, caveat)."""
    looks = policy.looks
    granted = min(int(all_a["init_seed"].max()), int(all_b["init_seed"].max()))
    reached = max(1, sum(n <= granted for n in looks))
    a, b = _by_seed(_counted(all_a), looks[-1]), _by_seed(_counted(all_b), looks[-1])
    rep = sequential_replay(a, b, looks, level, policy.spending, claim.direction, reached)
    look, n, crossed = int(rep.look[0]), int(rep.n[0]), bool(rep.crossed[0])
    caveat = (
        f"group-sequential verdict ({policy.spending} spending at α/m = {level:.3g}, looks at "
        f"{', '.join(map(str, looks))} seeds): stopped at look {look} ({n} seeds per arm), z {rep.z[0]:.2f} "
        f"{'crossed' if crossed else 'below'} the boundary {rep.boundary[0]:.2f}; p is the stage-wise p-value"
    )
    return float(rep.p[0]), n, caveat


def measure_pair(
    ref: PaperReference, claim: Claim, runs: pd.DataFrame, per_run: PerRun, comparisons: pd.DataFrame | None,
    adaptive: AdaptiveSeeds | None, level: float, n_boot: int, n_perm: int, seed: int,
) -> Measured:  # fmt: skip
    task = runs[runs["task"].astype(str) == claim.task]
    all_a, all_b = (task[task["recipe"].astype(str) == r] for r in (claim.a, claim.b))
    stopped = int(
        (all_a["status"].astype(str) == STOPPED_STATUS).sum() + (all_b["status"].astype(str) == STOPPED_STATUS).sum()
    )
    ra, rb = _counted(all_a), _counted(all_b)
    missing = [r for r, rows in ((claim.a, ra), (claim.b, rb)) if rows.empty]
    if missing:
        return Measured(n_a=len(ra), n_b=len(rb), n_stopped=stopped, gate=f"not run here ({', '.join(missing)})")
    caveats = []
    sequential = adaptive is not None and adaptive.ci_width is None and claim.statistic == "mean"
    p_seq = NAN
    if sequential:
        p_seq, n_stop, text = _sequential(claim, all_a, all_b, adaptive, level)
        ra, rb = ra[ra["init_seed"].astype(int) <= n_stop], rb[rb["init_seed"].astype(int) <= n_stop]
        caveats.append(text)
    elif adaptive is not None:
        caveats.append(
            "the adaptive budget did not consider this claim when it stopped adding seeds: a fixed-sample test read "
            "after data-dependent stopping" if adaptive.ci_width is None else
            "seeds were added until each configuration's 95% CI of the mean was narrow enough (not a test)"
        )  # fmt: skip
    a, b = _scores(ra), _scores(rb)
    deg_a, deg_b = (per_run.degenerate.loc[r.index].to_numpy(bool) for r in (ra, rb))
    check_a = arm_check(claim.a, a, deg_a, per_run.bars.loc[ra.index].to_numpy(float))
    check_b = arm_check(claim.b, b, deg_b, per_run.bars.loc[rb.index].to_numpy(float))
    gate = gate_two_arms(claim.statistic, check_a, check_b) or selection_confound(ra, rb, claim.a, claim.b)
    test = claim_test(claim.statistic, claim.direction, a, b, test=claim.test, degenerate_a=deg_a,
                      degenerate_b=deg_b, seed=seed)  # fmt: skip
    if not gate and not math.isfinite(test.pvalue):
        gate = f"fewer than two scored runs a side ({test.n_a} vs {test.n_b})"
    effect, lo, hi = _pair_effect(claim.statistic, a[np.isfinite(a)], b[np.isfinite(b)], deg_a, deg_b,
                                  None if sequential else comparisons, claim, n_boot, n_perm, seed)  # fmt: skip
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    detail = {
        "mean": f"mean {np.mean(fa):.1f} vs {np.mean(fb):.1f}" if fa.size and fb.size else "",
        "std": f"std {np.std(fa, ddof=1):.2f} vs {np.std(fb, ddof=1):.2f}" if fa.size > 1 and fb.size > 1 else "",
        "degenerate_rate": f"{int(deg_a.sum())}/{deg_a.size} vs {int(deg_b.sum())}/{deg_b.size} degenerate",
    }[claim.statistic]
    if stopped:
        caveats.append(
            f"{stopped} early-stopped run(s) left out: the runs compared survived the stopping rule (survivorship), "
            "so their mean and spread are not those of every seed"
        )
    note = _missing_note(pd.concat([ra, rb]))
    if note:
        caveats.append(note)
    filled = int(per_run.filled.loc[ra.index].sum() + per_run.filled.loc[rb.index].sum())
    if filled:
        caveats.append(
            f"{filled} finished run(s) with an undefined metric (constant predictions) scored as the constant "
            "predictor (0) and counted degenerate"
        )
    paper_n = min((c.n for c in (ref.cell(claim.task, claim.a), ref.cell(claim.task, claim.b)) if c and c.n),
                  default=ref.seeds)  # fmt: skip
    if paper_n and min(len(ra), len(rb)) < paper_n:
        caveats.append(f"fewer seeds than the paper ({len(ra)}/{len(rb)} vs {paper_n})")
    power_input = {
        "mean": ("mean", fa, fb),
        "std": ("std", fa, fb),
        "degenerate_rate": ("rate", int(deg_a.sum()), deg_a.size, int(deg_b.sum()), deg_b.size),
    }[claim.statistic]
    p = p_seq if sequential else test.pvalue
    return Measured(effect, lo, hi, p, len(ra), len(rb), stopped, gate, detail, tuple(caveats), power_input)


def measure_one(
    claim: Claim, runs: pd.DataFrame, per_run: PerRun, curves: pd.DataFrame | None,
    n_boot: int, seed: int,
) -> Measured:  # fmt: skip
    task = runs[runs["task"].astype(str) == claim.task]
    rows_all = task[task["recipe"].astype(str) == claim.a]
    rows = _counted(rows_all)
    stopped = int((rows_all["status"].astype(str) == STOPPED_STATUS).sum())
    if rows.empty:
        return Measured(n_stopped=stopped, gate=f"not run here ({claim.a})")
    deg = per_run.degenerate.loc[rows.index].to_numpy(bool)
    gate = arm_check(claim.a, _scores(rows), deg, per_run.bars.loc[rows.index].to_numpy(float)).failure()
    if claim.statistic == "variance_share":
        res = dodge_claims.variance_share(rows, deg, claim.direction, claim.margin, n_boot, seed)
    elif claim.statistic == "expected_max_gain":
        res = dodge_claims.expected_max_gain(rows, claim.n, claim.direction, claim.margin, n_boot, seed)
    else:
        res = dodge_claims.early_stopping_gain(
            curves if curves is not None else pd.DataFrame(columns=["run_id", "eval_index", "val_metric", "fraction"]),
            rows_all, claim.n_start, claim.fraction, claim.keep, claim.direction, claim.margin,
            n_boot=min(n_boot, 200), seed=seed,
        )  # fmt: skip
    caveats = []
    if stopped and claim.statistic != "early_stopping_gain":
        caveats.append(f"{stopped} early-stopped run(s) left out: the runs used survived the stopping rule")
    if claim.margin and claim.direction != "comparable":
        caveats.append(f"tested against a pre-declared smallest effect of {claim.margin:g}")
    return Measured(res.effect, res.ci_lo, res.ci_hi, res.p, res.n_used, 0, stopped, gate or res.missing,
                     res.detail, tuple(caveats))  # fmt: skip
