"""A symbol's bar frequency, measured from its timestamps, and the bars per year that annualise
Sharpe ratios and returns.

Daily bars of exchange-traded assets count 252 a year; daily bars that include weekends (crypto)
365; weekly 52; monthly 12. Intraday bars count 252 (or 365) trading days times the median number
of bars per day seen in the data, so a 6.5-hour session of hourly bars gives 252 × 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRADING_DAYS = 252
CALENDAR_DAYS = 365
WEEKEND_SHARE = 0.05
"""Share of bars on Saturdays/Sundays above which daily data counts calendar days."""


@dataclass(frozen=True)
class BarFrequency:
    """How often a symbol has bars.

    Attributes:
        label: ``monthly``, ``weekly``, ``daily``, ``daily-7`` (weekends too) or ``intraday``.
        step_s: median seconds between consecutive bars.
        bars_per_year: the annualisation factor (bars in a year).
    """

    label: str
    step_s: float
    bars_per_year: float


def bar_frequency(timestamps: np.ndarray) -> BarFrequency:
    """The frequency of (N,) sorted ``datetime64`` timestamps (N ≥ 2).

    Raises:
        ValueError: fewer than 2 timestamps.
    """
    times = np.asarray(timestamps, dtype="datetime64[ns]")
    if times.size < 2:
        raise ValueError(f"{times.size} timestamps: need at least 2 to measure a bar frequency")
    step = float(np.median(np.diff(times).astype(np.int64))) / 1e9
    day = 86_400.0
    if step >= 25 * day:
        return BarFrequency("monthly", step, 12.0)
    if step >= 6 * day:
        return BarFrequency("weekly", step, 52.0)
    weekday = (times.astype("datetime64[D]").astype(np.int64) + 3) % 7  # Monday 0; 1970-01-01 was a Thursday
    weekends = float(np.mean(weekday >= 5))
    days = CALENDAR_DAYS if weekends > WEEKEND_SHARE else TRADING_DAYS
    if step >= 0.8 * day:
        return BarFrequency("daily-7" if days == CALENDAR_DAYS else "daily", step, float(days))
    _, per_day = np.unique(times.astype("datetime64[D]"), return_counts=True)
    return BarFrequency("intraday", step, float(days * np.median(per_day)))
