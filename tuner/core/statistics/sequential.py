"""An always-valid sequential test of champion vs challenger on per-bar error differences.

Each new bar gives ``d = champion_error - challenger_error`` (> 0: the challenger missed the bar's
return by less). The question, asked again after every bar: is the mean of ``d`` different from
0? A fixed-sample test asked daily would reject a true null far more often than its level says;
this one stays valid however often it is looked at.

The evidence is the scale-invariant normal-mixture Bayes factor (Lai 1976; Rouder et al. 2009
with a fixed prior scale): the standardised effect ``δ = mean/sd`` gets a normal prior
``N(0, τ²)`` under the alternative and the unknown ``sd`` the right-Haar prior ``1/σ`` under both,
which gives, with ``n`` bars, ``ν = n − 1`` and the one-sample t statistic ``t``::

    BF_n = (1 + nτ²)^(-1/2) · [(1 + t²/ν) / (1 + t²/(ν(1 + nτ²)))]^((ν+1)/2)

Under the null (Gaussian differences of any variance) ``BF_n`` is a test martingale in the
scale-invariant filtration (Pérez-Ortiz, Lardy, de Heide & Grünwald 2024, "E-statistics, group
invariance and anytime-valid testing"), so by Ville's inequality
``P(sup_n BF_n ≥ 1/α) ≤ α``: the always-valid p-value ``p_n = min(1, 1 / max_{k≤n} BF_k)`` can
be read after every bar. For heavy-tailed differences this is approximate;
``tests/test_sequential.py`` measures the size over seeds for Gaussian and Student-t(3) errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAU = 0.25
"""Prior scale of the standardised effect under the alternative: a challenger whose mean edge
is about a quarter of the differences' spread. Smaller values find smaller edges, later."""
ALPHA = 0.05
BETTER, WORSE, UNDECIDED = "better", "worse", "undecided"
MIN_BARS = 3
"""Bars before the first Bayes factor (the t statistic needs a spread)."""


@dataclass(frozen=True)
class SequentialResult:
    """Where the champion/challenger test stands after ``bars`` bars.

    Attributes:
        bars: differences seen.
        mean_difference: mean of ``champion_error − challenger_error`` (> 0: challenger better),
            as a fraction (returns).
        bayes_factor: the current ``BF_n`` (evidence against "no difference").
        p_value: the always-valid p-value ``min(1, 1/max BF_k)``, valid at any stopping time.
        verdict: ``better`` (challenger proven better at ``alpha``), ``worse`` (proven worse)
            or ``undecided``.
        alpha: the level of the verdict.
        reason: why it is undecided when it cannot be anything else (too few bars, no spread).
    """

    bars: int
    mean_difference: float | None
    bayes_factor: float
    p_value: float
    verdict: str
    alpha: float
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def bayes_factors(differences: np.ndarray, tau: float = TAU) -> np.ndarray:
    """(n,) ``BF_k`` after each of the first k differences (1 where k < :data:`MIN_BARS` or the
    differences so far have no spread)."""
    d = np.asarray(differences, dtype=np.float64)
    n = np.arange(1, d.size + 1, dtype=np.float64)
    mean = np.cumsum(d) / n
    # Running variance from sums centred on the first difference (numerically stable enough
    # here, and the k-th value reads only the first k differences).
    c = d[0] if d.size else 0.0
    sq = np.cumsum((d - c) ** 2) / n - (mean - c) ** 2
    var = np.where(n > 1, sq * n / np.maximum(n - 1, 1), 0.0)
    out = np.ones(d.size)
    ok = (n >= MIN_BARS) & (var > 1e-300)
    if not ok.any():
        return out
    nu = n[ok] - 1
    t2 = mean[ok] ** 2 / (var[ok] / n[ok])
    g = 1 + n[ok] * tau ** 2
    log_bf = -0.5 * np.log(g) + (nu + 1) / 2 * (np.log1p(t2 / nu) - np.log1p(t2 / (nu * g)))
    out[ok] = np.exp(np.minimum(log_bf, 700.0))
    return out


def always_valid_p(differences: np.ndarray, tau: float = TAU) -> np.ndarray:
    """(n,) always-valid p-values after each difference: ``min(1, 1/max_{k≤n} BF_k)``."""
    bf = bayes_factors(differences, tau)
    return np.minimum(1.0, 1.0 / np.maximum.accumulate(bf)) if bf.size else bf


def sequential_test(differences: np.ndarray, alpha: float = ALPHA, tau: float = TAU) -> SequentialResult:
    """The test after all of ``differences`` (champion error − challenger error, bars in time
    order)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < MIN_BARS:
        return SequentialResult(int(d.size), float(d.mean()) if d.size else None, 1.0, 1.0, UNDECIDED,
                                alpha, f"{d.size} bars scored, the test needs at least {MIN_BARS}")
    bf = bayes_factors(d, tau)
    p = float(np.minimum(1.0, 1.0 / bf.max()))
    mean = float(d.mean())
    if not d.std() > 0:
        return SequentialResult(int(d.size), mean, 1.0, 1.0, UNDECIDED, alpha,
                                "the two configs' errors never differ (same forecasts?)")
    verdict = UNDECIDED if p > alpha else (BETTER if mean > 0 else WORSE)
    return SequentialResult(int(d.size), mean, float(bf[-1]), p, verdict, alpha)
