"""Performance of a strategy's per-bar returns: total return, hit rate, annualised Sharpe ratio,
maximum drawdown and turnover.

The standard statistics come from ``empyrical`` (empyrical-reloaded, the maintained fork of
Quantopian's library): Sharpe ratio, maximum drawdown, compounded total and annual returns.
Hit rate and turnover depend on positions, which empyrical does not see, so they are here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tuner.core.trading.strategy_rules import StrategyReturns


@dataclass(frozen=True)
class Performance:
    """How a strategy did over its bars (returns as fractions: 0.01 = 1 %).

    Attributes:
        bars: bars held (including flat ones).
        total_return: compounded net return over all bars, ``prod(1 + net) - 1``.
        annual_return: compound annual growth rate of the net returns.
        sharpe: annualised Sharpe ratio of the net bar returns (risk-free 0):
            ``mean / std * sqrt(bars_per_year)``; None when the returns do not vary.
        hit_rate: share of bars with a non-zero position whose sign matched the bar's return;
            None when the strategy was never in the market.
        max_drawdown: the largest fall from a peak of the compounded net value (≤ 0).
        turnover: mean units of capital traded per bar (a flip from +1 to −1 is 2).
        costs: total costs paid, as a fraction of capital (sum over bars).
        bars_per_year: the annualisation factor used.
    """

    bars: int
    total_return: float
    annual_return: float | None
    sharpe: float | None
    hit_rate: float | None
    max_drawdown: float
    turnover: float
    costs: float
    bars_per_year: float

    def to_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def sharpe_ratio(net: np.ndarray, bars_per_year: float) -> float | None:
    """Annualised Sharpe ratio of per-bar returns (empyrical); None for constant returns."""
    import empyrical

    r = np.asarray(net, dtype=np.float64)
    if r.size < 2 or not np.std(r) > 0:
        return None
    return _finite(empyrical.sharpe_ratio(r, annualization=bars_per_year))


def performance(result: StrategyReturns, bars_per_year: float) -> Performance:
    """The :class:`Performance` of one strategy's bars."""
    import empyrical

    net = result.net
    active = result.positions != 0
    hits = np.sign(result.positions[active]) == np.sign(result.bar_returns[active])
    return Performance(
        bars=int(net.size),
        total_return=float(empyrical.cum_returns_final(net)) if net.size else 0.0,
        annual_return=_finite(empyrical.annual_return(net, annualization=bars_per_year)) if net.size else None,
        sharpe=sharpe_ratio(net, bars_per_year),
        hit_rate=float(hits.mean()) if hits.size else None,
        max_drawdown=float(empyrical.max_drawdown(net)) if net.size else 0.0,
        turnover=float(result.traded.mean()) if net.size else 0.0,
        costs=float(result.costs.sum()),
        bars_per_year=float(bars_per_year),
    )
