"""Bootstrap intervals: one wrapper around `scipy.stats.bootstrap` (BCa, falling back to percentile).

Statistics passed in must be vectorised numpy functions taking an `axis` keyword, as scipy expects.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval and the method that produced it ("BCa", "percentile" or "undefined")."""

    lo: float
    hi: float
    method: str

    @property
    def width(self) -> float:
        return self.hi - self.lo


NAN_INTERVAL = Interval(float("nan"), float("nan"), "undefined")


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def std(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sample standard deviation (ddof=1)."""
    return np.std(x, axis=axis, ddof=1)


def mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def std_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.std(a, axis=axis, ddof=1) / np.std(b, axis=axis, ddof=1)


def bootstrap_ci(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "BCa",
) -> Interval:
    """CI of `statistic(*samples)` by independent resampling of each sample.

    BCa is tried first; where it is undefined (all values equal, a jackknife without spread, a
    non-finite bound) the percentile interval of the same resamples is returned. Samples with fewer
    than two values give an undefined interval.
    """
    samples = tuple(np.asarray(s, dtype=float) for s in samples)
    if any(len(s) < 2 for s in samples):
        return NAN_INTERVAL
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = stats.bootstrap(
                samples,
                statistic,
                n_resamples=n_boot,
                confidence_level=confidence,
                method=method,
                vectorized=True,
                rng=rng,
            )
        except ValueError:
            return NAN_INTERVAL
    lo, hi = (float(v) for v in result.confidence_interval)
    if np.isfinite(lo) and np.isfinite(hi):
        return Interval(lo, hi, method)
    dist = np.asarray(result.bootstrap_distribution, dtype=float)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return NAN_INTERVAL
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return Interval(float(lo), float(hi), "percentile")


def resample_indices(rng: np.random.Generator, n: int, n_boot: int, size: int | None = None) -> np.ndarray:
    """(n_boot, size) indices drawn with replacement from range(n); size defaults to n."""
    return rng.integers(0, n, size=(n_boot, n if size is None else size))
