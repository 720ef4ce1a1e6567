"""The Probabilistic and Deflated Sharpe Ratios (Bailey & López de Prado 2012, 2014).

A Sharpe ratio picked as the best of ``N`` tries is optimistic: even with no skill at all, the
best of ``N`` noisy Sharpe ratios is expected to be about ``sqrt(V) * E[max of N normals]``.
The Deflated Sharpe Ratio (DSR) is the probability that the true Sharpe ratio exceeds that
expected maximum, given the observed one, the number of observations and the returns' skewness
and kurtosis. Everything here is per observation (per bar), never annualised: an annualised
Sharpe ratio must be divided by ``sqrt(bars per year)`` first.

Checked against the paper's worked example (Bailey & López de Prado 2014, "The Deflated Sharpe
Ratio", J. Portfolio Management 40(5), section "A numerical example"): annualised SR 2.5 over
T = 1,250 daily bars, N = 100 trials whose annualised Sharpe ratios vary by V = 1/2, skewness −3,
kurtosis 10 give SR₀ ≈ 0.1132 per day and DSR ≈ 0.9004 (``tests/test_deflated_sharpe.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(trials: int, variance: float) -> float:
    """SR₀: the expected maximum of ``trials`` Sharpe ratios with true value 0 and variance
    ``variance`` across trials (per-bar units), by the paper's extreme-value approximation.

    0 for a single trial (nothing was picked).
    """
    if trials < 1:
        raise ValueError(f"trials {trials} must be >= 1")
    if trials == 1 or variance <= 0:
        return 0.0
    n = float(trials)
    z = ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n)
         + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e)))
    return float(math.sqrt(variance) * z)


def probabilistic_sharpe(sharpe: float, observations: int, skewness: float, kurtosis: float,
                         benchmark: float = 0.0) -> float:
    """PSR: P(true Sharpe > ``benchmark``) given the observed per-bar ``sharpe`` over
    ``observations`` bars with the returns' ``skewness`` and (non-excess) ``kurtosis``
    (3 for normal returns)."""
    if observations < 2:
        raise ValueError(f"observations {observations} must be >= 2")
    spread = 1 - skewness * sharpe + (kurtosis - 1) / 4 * sharpe ** 2
    if spread <= 0:
        raise ValueError(f"1 - skew*SR + (kurt-1)/4*SR^2 = {spread} <= 0: moments inconsistent")
    z = (sharpe - benchmark) * math.sqrt(observations - 1) / math.sqrt(spread)
    return float(stats.norm.cdf(z))


@dataclass(frozen=True)
class DeflatedSharpe:
    """The Deflated Sharpe Ratio of one picked strategy.

    Attributes:
        sharpe: the observed per-bar Sharpe ratio (mean / std of the bar returns).
        observations: bars it was measured on.
        trials: how many configs were tried to pick it.
        trial_sharpe_variance: variance of the per-bar Sharpe ratios across those trials.
        expected_max_sharpe: SR₀, the best Sharpe of ``trials`` skill-less tries (per bar).
        skewness, kurtosis: of the strategy's bar returns (kurtosis non-excess, 3 = normal).
        dsr: P(true Sharpe > SR₀); ≥ 0.95 is the paper's bar for "not explained by the tries".
    """

    sharpe: float
    observations: int
    trials: int
    trial_sharpe_variance: float
    expected_max_sharpe: float
    skewness: float
    kurtosis: float
    dsr: float

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def deflated_sharpe(returns: np.ndarray, trials: int, trial_sharpe_variance: float) -> DeflatedSharpe:
    """The DSR of a strategy's per-bar ``returns`` (1-D), picked among ``trials`` configs whose
    per-bar Sharpe ratios had variance ``trial_sharpe_variance``.

    Raises:
        ValueError: fewer than 3 returns, or returns with zero variance (no Sharpe ratio).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3:
        raise ValueError(f"{r.size} returns: need at least 3 for a Sharpe ratio with its moments")
    sd = r.std(ddof=1)
    if not sd > 0:
        raise ValueError("returns have zero variance: no Sharpe ratio")
    sharpe = float(r.mean() / sd)
    skew = float(stats.skew(r))
    kurt = float(stats.kurtosis(r, fisher=False))
    sr0 = expected_max_sharpe(trials, trial_sharpe_variance)
    dsr = probabilistic_sharpe(sharpe, r.size, skew, kurt, benchmark=sr0)
    return DeflatedSharpe(sharpe, int(r.size), int(trials), float(trial_sharpe_variance), sr0,
                          skew, kurt, dsr)
