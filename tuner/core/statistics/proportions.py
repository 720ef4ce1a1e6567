"""Confidence intervals for shares and means of small samples (pattern tables)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95


def wilson_interval(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes / trials`` (scipy); None for 0 trials."""
    if trials <= 0:
        return None
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def exact_interval(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float] | None:
    """The Clopper-Pearson (exact) interval; None for 0 trials."""
    if trials <= 0:
        return None
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def mean_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """Student-t interval of the mean; None with fewer than 2 values or no spread."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or not v.std() > 0:
        return None
    half = stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)
