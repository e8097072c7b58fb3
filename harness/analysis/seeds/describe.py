"""Per-configuration description: location, spread, bootstrap CIs and degenerate-run rate.

Counting: `n` is every run that trained to the end or diverged (status done or diverged). Early-stopped
runs (status stopped) are left out of every statistic of finished runs by default: their "score" is
their checkpoint at the rung, not a finished run's; they are counted in `n_stopped` and shown apart.
Failed runs (crashed, no result) are excluded from `n` and counted in `n_failed`. The location and
spread statistics use the `n_scored` runs with a finite score; diverged runs (NaN score) count as
degenerate, so `degenerate_rate = degenerate_n / n`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis.seeds.degenerate import degenerate_rule, is_degenerate, majority_baseline, wilson_interval
from harness.analysis.stats.bootstrap import bootstrap_ci, mean, std

COUNTED_STATUSES = ("done", "diverged")  # the runs behind the statistics of finished runs
STOPPED_STATUS = "stopped"


def used_note(runs: pd.DataFrame, what: str = "") -> str:
    """What a table used, for its `used` column: counts of done / diverged runs and the stopped ones left out."""
    status = runs["status"].astype(str)
    parts = [f"{int((status == s).sum())} {s}" for s in COUNTED_STATUSES]
    stopped = int((status == STOPPED_STATUS).sum())
    text = ", ".join(parts) + (f"; {stopped} stopped excluded" if stopped else "")
    return f"{what}: {text}" if what else text


@dataclass(frozen=True)
class Description:
    """Location and spread of one sample of scores (NaNs dropped beforehand)."""

    n: int
    mean: float
    std: float  # ddof=1, NaN for n < 2
    median: float
    iqr: float  # Q3 - Q1, linear interpolation (numpy default)
    min: float
    max: float
    iqm: float  # interquartile mean: mean of the middle 50% (scipy.stats.trim_mean(x, 0.25))


def iqm(x: np.ndarray) -> float:
    """Interquartile mean (as in rliable): the 25%-trimmed mean."""
    x = np.asarray(x, dtype=float)
    return float(stats.trim_mean(x, 0.25)) if x.size else float("nan")


def describe(x: np.ndarray) -> Description:
    """Description of a 1-D array of scores; NaNs must be removed by the caller (they raise)."""
    x = np.asarray(x, dtype=float)
    if np.isnan(x).any():
        raise ValueError("describe() got NaN scores; drop diverged runs first and count them separately")
    if x.size == 0:
        nan = float("nan")
        return Description(0, nan, nan, nan, nan, nan, nan, nan)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return Description(
        n=int(x.size),
        mean=float(np.mean(x)),
        std=float(np.std(x, ddof=1)) if x.size > 1 else float("nan"),
        median=float(med),
        iqr=float(q3 - q1),
        min=float(np.min(x)),
        max=float(np.max(x)),
        iqm=iqm(x),
    )


def config_groups(runs: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(task, recipe, rows) per configuration, in order of first appearance."""
    keys = runs["task"].astype(str) + "\x00" + runs["recipe"].astype(str)
    groups = []
    for key, rows in runs.groupby(keys, sort=False):
        task, recipe = str(key).split("\x00", 1)
        groups.append((task, recipe, rows))
    return groups


def summarize_config(
    rows: pd.DataFrame, degenerate: pd.Series, rule_text: str, n_boot: int = 2000, seed: int = 0
) -> dict[str, object]:
    """Summary row of one configuration (rows of one task x recipe; `degenerate` aligned to rows)."""
    status = rows["status"].astype(str)
    counted = status.isin(COUNTED_STATUSES).to_numpy()
    score = pd.to_numeric(rows["score"], errors="coerce").astype(float).to_numpy()[counted]
    deg = degenerate.to_numpy()[counted]
    finite = ~np.isnan(score)
    x = score[finite]
    d = describe(x)
    nd = describe(x[~deg[finite]])
    mean_ci = bootstrap_ci((x,), mean, n_boot=n_boot, seed=seed)
    std_ci = bootstrap_ci((x,), std, n_boot=n_boot, seed=seed + 1)
    n, k = int(counted.sum()), int(deg.sum())
    lo, hi = wilson_interval(k, n)
    majority = majority_baseline(rows)
    row: dict[str, object] = {
        "metric": str(rows["metric"].iloc[0]),
        "n": n,
        "n_scored": d.n,
        "n_diverged": int((status == "diverged").sum()),
        "n_failed": int((status == "failed").sum()),
        "n_stopped": int((status == "stopped").sum()),
        "n_nan_score": int((~finite).sum()),
    }
    row.update({k_: v for k_, v in asdict(d).items() if k_ != "n"})
    row.update(
        mean_ci_lo=mean_ci.lo,
        mean_ci_hi=mean_ci.hi,
        mean_ci_method=mean_ci.method,
        std_ci_lo=std_ci.lo,
        std_ci_hi=std_ci.hi,
        std_ci_method=std_ci.method,
        degenerate_n=k,
        degenerate_rate=k / n if n else float("nan"),
        degenerate_lo=lo,
        degenerate_hi=hi,
        n_nondeg=nd.n,
    )
    row.update({f"{k_}_nondeg": v for k_, v in asdict(nd).items() if k_ != "n"})
    row["majority"] = float(majority.median()) if majority.notna().any() else float("nan")
    row["degenerate_rule"] = rule_text
    return row


def summarize(
    runs: pd.DataFrame, thresholds: Mapping[str, float] | None = None, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per (task, recipe) in order of first appearance: counts, location/spread, BCa CIs of the
    mean and std (percentile where BCa is undefined), Wilson interval of the degenerate rate, the same
    statistics over non-degenerate runs (`*_nondeg`) and the majority baseline."""
    degenerate = is_degenerate(runs, thresholds)
    out = []
    for i, (task, recipe, rows) in enumerate(config_groups(runs)):
        rule = degenerate_rule(task, str(rows["metric"].iloc[0]), thresholds)
        row = {"task": task, "recipe": recipe, "config_key": f"{task}/{recipe}"}
        row.update(summarize_config(rows, degenerate.loc[rows.index], rule.describe(), n_boot, seed + 7919 * i))
        out.append(row)
    return pd.DataFrame(out)
