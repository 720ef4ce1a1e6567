"""The difference of two strategies' Sharpe ratios on the same bars, with a block-bootstrap
interval.

The two return series are resampled together (paired), in circular blocks of
``significance.block_length(n)`` bars, because bar returns are autocorrelated in volatility and
the two strategies' returns move together: resampling them apart would make the interval too
wide. This is the bootstrap alternative to Ledoit & Wolf's (2008) HAC interval for a Sharpe
difference; the percentile interval is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tuner.core.statistics.significance import block_length

REPS = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class SharpeDifference:
    """Annualised Sharpe ratio of strategy ``a`` minus that of ``b`` on the same bars.

    Attributes:
        difference: ``SR_a − SR_b``, annualised; None when either does not vary.
        ci: the 95 % percentile interval of the difference (paired circular block bootstrap),
            None when it cannot be computed.
        bars: bars compared.
        block: bootstrap block length (bars).
        reason: why ``difference`` or ``ci`` is None.
    """

    difference: float | None
    ci: tuple[float, float] | None
    bars: int
    block: int
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"difference": self.difference, "ci": list(self.ci) if self.ci else None,
                "bars": self.bars, "block": self.block, "method": "paired circular block bootstrap",
                **({"reason": self.reason} if self.reason else {})}


def _sharpe(r: np.ndarray, bars_per_year: float) -> np.ndarray:
    sd = r.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return r.mean(axis=-1) / sd * math.sqrt(bars_per_year)


def sharpe_difference(a: np.ndarray, b: np.ndarray, bars_per_year: float, *, reps: int = REPS,
                      level: float = LEVEL, seed: int = 0) -> SharpeDifference:
    """``SR(a) − SR(b)`` of two (n,) per-bar return series with its bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"return series of shapes {a.shape} and {b.shape}: need equal 1-D")
    n = a.size
    block = min(block_length(n), max(n, 1))
    if n < 3:
        return SharpeDifference(None, None, n, block, f"{n} bars: need at least 3")
    if not (a.std() > 0 and b.std() > 0):
        flat = "first" if not a.std() > 0 else "second"
        return SharpeDifference(None, None, n, block, f"the {flat} strategy's returns do not vary "
                                "(e.g. never in the market): no Sharpe ratio")
    diff = float(_sharpe(a, bars_per_year) - _sharpe(b, bars_per_year))
    rng = np.random.default_rng(seed)
    blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(reps, blocks))
    idx = ((starts[:, :, None] + np.arange(block)[None, None, :]) % n).reshape(reps, -1)[:, :n]
    draws = _sharpe(a[idx], bars_per_year) - _sharpe(b[idx], bars_per_year)
    draws = draws[np.isfinite(draws)]
    if draws.size < reps // 2:
        return SharpeDifference(diff, None, n, block, "most resamples had a strategy with no spread")
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return SharpeDifference(diff, (float(low), float(high)), n, block)
