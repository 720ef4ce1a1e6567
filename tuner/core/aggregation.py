"""Aggregation specs: reduce sample paths of shape ``(..., S)`` to one value each.

Grammar (``X``, ``Q`` and ``W`` are read as percent when > 1, else as a fraction; ``K`` is a
number of standard deviations, population std):

================================  ==========================================================
``mean``, ``median``              the mean / median of the S samples
``pN``                            the N-th percentile, ``0 <= N <= 100`` (``p50`` = median)
``quantile_Q``                    the Q quantile, ``0 <= Q <= 1`` (linear interpolation)
``trimmed_mean_X``                drop the lowest and the highest ``floor(S·X)`` samples, mean
                                  of the rest; ``0 <= X < 0.5``
``lower_trimmed_mean_X``          drop the highest ``floor(S·X)`` samples; ``0 <= X < 1``
``upper_trimmed_mean_X``          drop the lowest ``floor(S·X)`` samples; ``0 <= X < 1``
``mean_minus_std_K``              ``mean - K·std``; ``K >= 0``
``mean_plus_std_K``               ``mean + K·std``; ``K >= 0``
``mean_quantile_mix_Q_W``         ``W·mean + (1-W)·quantile(Q)``; ``0 <= W <= 1``
``quantile_plus_std_Q_K``         ``quantile(Q) + K·std``; K may be negative
================================  ==========================================================

An unknown or out-of-range spec raises :class:`~tuner.core.errors.AggregationError` naming the spec;
there is no fallback.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tuner.core.errors import AggregationError

GRAMMAR = (
    "mean, median, pN, quantile_Q, trimmed_mean_X, lower_trimmed_mean_X, upper_trimmed_mean_X, "
    "mean_minus_std_K, mean_plus_std_K, mean_quantile_mix_Q_W, quantile_plus_std_Q_K"
)
_NUMBER = r"(-?\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class Aggregation:
    """A parsed spec. Call it on an array ``(..., S)`` to get ``(...)``.

    Attributes:
        spec: the text it was parsed from.
        kind: the grammar rule (``"trimmed_mean"``, ``"quantile"``...).
        q: quantile level in [0, 1] (quantile kinds), or the trimmed share (trimmed kinds).
        k: std multiplier (std kinds) or the mean weight W (``mean_quantile_mix``).
    """

    spec: str
    kind: str
    q: float = 0.0
    k: float = 0.0

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim == 0 or samples.shape[-1] == 0:
            raise AggregationError(f"aggregation {self.spec!r}: needs at least one sample")
        s = samples.shape[-1]
        kind = self.kind
        if kind == "mean":
            return samples.mean(axis=-1)
        if kind == "median":
            return np.median(samples, axis=-1)
        if kind == "quantile":
            return np.quantile(samples, self.q, axis=-1)
        if kind.endswith("trimmed_mean"):
            cut = math.floor(s * self.q + 1e-9)  # 1e-9: 0.1·20 must count as 2, not 1.999...
            lo = cut if kind in ("trimmed_mean", "upper_trimmed_mean") else 0
            hi = s - cut if kind in ("trimmed_mean", "lower_trimmed_mean") else s
            # parse() bounds the share (< 0.5 both sides, < 1 one side), so lo < hi always.
            return np.sort(samples, axis=-1)[..., lo:hi].mean(axis=-1)
        mean, std = samples.mean(axis=-1), samples.std(axis=-1)
        if kind == "mean_minus_std":
            return mean - self.k * std
        if kind == "mean_plus_std":
            return mean + self.k * std
        if kind == "mean_quantile_mix":
            return self.k * mean + (1 - self.k) * np.quantile(samples, self.q, axis=-1)
        if kind == "quantile_plus_std":
            return np.quantile(samples, self.q, axis=-1) + self.k * std
        raise AssertionError(kind)  # parse() only builds the kinds above


def _share(text: str) -> float:
    value = float(text)
    return value / 100.0 if value > 1 else value


@lru_cache(maxsize=256)
def parse(spec: str) -> Aggregation:
    """Parse an aggregation spec, e.g. ``parse("trimmed_mean_10")``.

    Raises:
        AggregationError: the spec is unknown or a number is out of range; the message names the
            spec and the allowed values.
    """
    if not isinstance(spec, str):
        raise AggregationError(f"aggregation {spec!r}: must be a string; grammar: {GRAMMAR}")
    text = spec.strip().lower()
    if text in ("mean", "median"):
        return Aggregation(spec, text)
    rules = [
        (rf"p{_NUMBER}", "percentile"),
        (rf"quantile_{_NUMBER}", "quantile"),
        (rf"(lower_|upper_)?trimmed_mean_{_NUMBER}", "trimmed"),
        (rf"mean_(minus|plus)_std_{_NUMBER}", "std"),
        (rf"mean_quantile_mix_{_NUMBER}_{_NUMBER}", "mix"),
        (rf"quantile_plus_std_{_NUMBER}_{_NUMBER}", "quantile_plus_std"),
    ]
    for pattern, rule in rules:
        m = re.fullmatch(pattern, text)
        if m:
            return _build(spec, rule, m.groups())
    raise AggregationError(f"unknown aggregation {spec!r}; grammar: {GRAMMAR}")


def _build(spec: str, rule: str, groups: tuple) -> Aggregation:
    def bad(why: str) -> AggregationError:
        return AggregationError(f"aggregation {spec!r}: {why}")

    if rule == "percentile":
        n = float(groups[0])
        if not 0 <= n <= 100:
            raise bad(f"percentile {n:g} must be in [0, 100]")
        return Aggregation(spec, "quantile", q=n / 100.0)
    if rule == "quantile":
        q = _share(groups[0])
        if not 0 <= q <= 1:
            raise bad(f"quantile {q:g} must be in [0, 1] (or 0-100 as percent)")
        return Aggregation(spec, "quantile", q=q)
    if rule == "trimmed":
        side, x = groups[0] or "", _share(groups[1])
        limit = 0.5 if not side else 1.0
        if not 0 <= x < limit:
            raise bad(f"trimmed share {x:g} must be in [0, {limit:g})")
        return Aggregation(spec, f"{side}trimmed_mean", q=x)
    if rule == "std":
        k = float(groups[1])
        if k < 0:
            raise bad(f"K {k:g} must be >= 0")
        return Aggregation(spec, f"mean_{groups[0]}_std", k=k)
    q = _share(groups[0])
    if not 0 <= q <= 1:
        raise bad(f"quantile {q:g} must be in [0, 1] (or 0-100 as percent)")
    if rule == "mix":
        w = _share(groups[1])
        if not 0 <= w <= 1:
            raise bad(f"mean weight W {w:g} must be in [0, 1] (or 0-100 as percent)")
        return Aggregation(spec, "mean_quantile_mix", q=q, k=w)
    return Aggregation(spec, "quantile_plus_std", q=q, k=float(groups[1]))


def aggregate(samples: np.ndarray, spec: str) -> np.ndarray:
    """``parse(spec)(samples)``: reduce ``(..., S)`` samples to ``(...)``."""
    return parse(spec)(samples)
