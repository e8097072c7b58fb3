"""Almost stochastic order (ASO; Dror, Shlomov & Reichart 2019, del Barrio et al. 2018), vectorised.

Follows the reference implementation in `deepsig.aso` (Ulmer et al. 2022) step for step so that the
violation ratio agrees exactly: empirical quantile functions F^-1(t) = x_(ceil(n t)) on the grid
t = dt, 2dt, ..., < 1; eps_W2 = sum_{F^-1 < G^-1} (G^-1 - F^-1)^2 dt / W2^2, where (like deepsig and
Dror's DeepComparison code) the first grid point is left out of the numerator; eps_W2 = 0.5 when
W2 = 0. eps_min = eps_W2 + z_conf * sigma_hat / sqrt(n m / (n + m)), sigma_hat from bootstrap
resamples of both score sets. A (`scores_a`) is deemed better than B when eps_min < 0.5 (0.2 strict).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class AsoResult:
    eps_min: float  # upper confidence bound of the violation ratio: A better than B when < 0.5
    violation_ratio: float  # eps_W2 of the observed samples
    sigma_hat: float  # bootstrap std of sqrt(nm/(n+m)) (eps_W2* - eps_W2)
    confidence: float
    n_boot: int


def _grid(dt: float) -> np.ndarray:
    return np.arange(dt, 1, dt)


def _quantiles(sorted_scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Empirical quantile function of each row of `sorted_scores` (..., n) at t: x_(ceil(n t)) (1-based)."""
    n = sorted_scores.shape[-1]
    idx = np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)
    return sorted_scores[..., idx]


def _violation_ratio_sorted(sa: np.ndarray, sb: np.ndarray, dt: float) -> np.ndarray:
    t = _grid(dt)
    f = _quantiles(sa, t)
    g = _quantiles(sb, t)
    diff = g - f
    w2 = np.sum(diff**2 * dt, axis=-1)
    viol = np.where(f < g, diff, 0.0)
    num = np.sum(viol[..., 1:] ** 2 * dt, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w2 == 0, 0.5, num / np.where(w2 == 0, 1.0, w2))


def violation_ratio(scores_a: np.ndarray, scores_b: np.ndarray, dt: float = 0.005) -> float:
    """eps_W2(F_A, F_B): the share of the squared Wasserstein-2 distance where A's quantiles lie below B's."""
    sa = np.sort(np.asarray(scores_a, dtype=float))
    sb = np.sort(np.asarray(scores_b, dtype=float))
    return float(_violation_ratio_sorted(sa, sb, dt))


def aso(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 1000,
    dt: float = 0.005,
    num_comparisons: int = 1,
    seed: int = 0,
) -> AsoResult:
    """ASO test that A is stochastically better than B (higher = better); Bonferroni via num_comparisons."""
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        nan = float("nan")
        return AsoResult(nan, nan, nan, confidence, n_boot)
    if num_comparisons > 1:
        confidence += (1 - confidence) / num_comparisons
    vr = violation_ratio(a, b, dt)
    rng = np.random.default_rng(seed)
    boot_a = np.sort(a[rng.integers(0, a.size, size=(n_boot, a.size))], axis=1)
    boot_b = np.sort(b[rng.integers(0, b.size, size=(n_boot, b.size))], axis=1)
    samples = _violation_ratio_sorted(boot_a, boot_b, dt)
    const = np.sqrt(a.size * b.size / (a.size + b.size))
    sigma = float(np.std(const * (samples - vr)))
    eps_min = float(np.clip(vr - sigma / const * stats.norm.ppf(1 - confidence), 0.0, 1.0))
    return AsoResult(eps_min, vr, sigma, confidence, n_boot)
