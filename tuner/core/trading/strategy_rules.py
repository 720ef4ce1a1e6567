"""Rules that turn next-bar forecasts into positions, and positions into returns after costs.

A position ``p[t]`` is held over bar ``t`` (from ``close[t-1]`` to ``close[t]``) and is decided
at ``close[t-1]``, from the forecast of bar ``t`` (made from bars ``< t``) and volatility measured
on bars ``< t`` only: nothing here reads bar ``t`` or later. Positions are fractions of capital:
+1 fully long, −1 fully short, 0 flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGN, SCALED = "sign", "scaled"
RULES = (SIGN, SCALED)
VOL_BARS = 20
"""Bars of past returns whose standard deviation scales the ``scaled`` rule."""
SCALED_CAP = 1.0
"""Largest |position| the ``scaled`` rule takes."""
DEFAULT_COSTS_BPS = 5.0
"""Default cost per unit of position traded, in basis points of the traded value (one way):
a flip from +1 to −1 trades 2 units and pays 10 bps."""


def positions(rule: str, predicted_return: np.ndarray, volatility: np.ndarray | None = None,
              cap: float = SCALED_CAP) -> np.ndarray:
    """(W,) positions from (W,) predicted next-bar returns (fractions).

    ``sign``: +1 / −1 / 0 by the sign of the predicted return. ``scaled``: the predicted return
    divided by ``volatility`` (W,), the standard deviation of the last :data:`VOL_BARS` bar
    returns before each bar, clipped to ``±cap`` (0 where the volatility is 0).

    Raises:
        ValueError: an unknown rule, or ``scaled`` without volatility.
    """
    pred = np.asarray(predicted_return, dtype=np.float64)
    if rule == SIGN:
        return np.sign(pred)
    if rule == SCALED:
        if volatility is None:
            raise ValueError("rule 'scaled' needs the past volatility of every bar")
        vol = np.asarray(volatility, dtype=np.float64)
        ratio = np.divide(pred, vol, out=np.zeros_like(pred), where=vol > 0)
        return np.clip(ratio, -cap, cap)
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


def past_volatility(closes: np.ndarray, targets: np.ndarray, bars: int = VOL_BARS) -> np.ndarray:
    """(W,) standard deviation (ddof 1) of the ``bars`` one-bar returns ending at ``close[t-1]``
    for each target index ``t`` in ``targets``: only bars ``< t`` are read. Fewer than 2
    returns available → 0 (the ``scaled`` rule then stays flat)."""
    closes = np.asarray(closes, dtype=np.float64)
    rets = closes[1:] / closes[:-1] - 1.0  # rets[i] is the return of bar i + 1
    out = np.zeros(len(targets))
    for k, t in enumerate(np.asarray(targets)):
        window = rets[max(0, t - 1 - bars):max(0, t - 1)]
        out[k] = window.std(ddof=1) if window.size >= 2 else 0.0
    return out


@dataclass(frozen=True)
class StrategyReturns:
    """Per-bar outcome of holding ``positions`` (all (W,) arrays, bars in time order).

    Attributes:
        positions: position held over each bar.
        bar_returns: the asset's return over each bar, ``close[t]/close[t-1] - 1``.
        gross: ``positions * bar_returns``.
        costs: ``costs_bps / 1e4 * |positions[t] - positions[t-1]|`` (starting flat).
        net: ``gross - costs``.
        traded: ``|positions[t] - positions[t-1]|``, units of capital traded before each bar.
    """

    positions: np.ndarray
    bar_returns: np.ndarray
    gross: np.ndarray
    costs: np.ndarray
    net: np.ndarray
    traded: np.ndarray


def strategy_returns(position: np.ndarray, bar_returns: np.ndarray, costs_bps: float,
                     start_position: float = 0.0) -> StrategyReturns:
    """Returns of holding ``position[t]`` over each bar, after proportional costs.

    ``start_position`` is what was held before the first bar (0: the first trade pays costs).
    """
    p = np.asarray(position, dtype=np.float64)
    r = np.asarray(bar_returns, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"positions {p.shape} and bar returns {r.shape} differ in shape")
    if costs_bps < 0:
        raise ValueError(f"costs_bps {costs_bps} must be >= 0")
    traded = np.abs(np.diff(p, prepend=start_position))
    gross = p * r
    costs = costs_bps / 1e4 * traded
    return StrategyReturns(p, r, gross, costs, gross - costs, traded)
