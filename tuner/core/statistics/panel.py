"""Panel Diebold–Mariano test: is one forecast better than another across a universe of symbols?

Per symbol and window there is a loss difference ``d = error_a - error_b`` (per-window absolute
return errors, lower is better). Symbols share market days, so their differences on the same
day are correlated (a market-wide shock hits every symbol's error at once): treating the
universe's ``N`` differences as independent would understate the variance by up to the number
of symbols. The variance of the mean is therefore **clustered by date** and, for forecasts
``h`` bars ahead (whose errors overlap ``h - 1`` windows), made robust to that serial
correlation across dates with Bartlett weights up to lag ``h - 1``: the Driscoll–Kraay
estimator. With per-date sums of centred differences ``S_t``::

    V = sum_t S_t^2 + 2 sum_{k=1}^{h-1} (1 - k/h) sum_t S_t S_{t-k};   se = sqrt(V) / N

``statistic = mean / se`` against Student t with ``G - 1`` degrees of freedom (``G`` dates), as
for a cluster-robust mean with few clusters. One-sided: small p says forecast ``a`` has the
lower mean error. Without dates the windows are clustered by their index (window ``i`` of every
symbol assumed to be the same day; true when the symbols share a calendar and end on the same
bar), and the result says so.

Pure numpy/scipy; no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.core.statistics.significance import ALPHA, POWER, minimum_detectable_edge

CLUSTER_DATE, CLUSTER_INDEX = "date", "window index"


@dataclass(frozen=True)
class PanelComparison:
    """Forecast ``a`` against forecast ``b`` pooled over symbols.

    Attributes:
        statistic: ``mean_difference / standard_error`` (negative: ``a``'s error is lower).
        p_value: one-sided p of "``a``'s mean absolute return error is lower" (Student t, ``clusters - 1`` df).
        mean_difference: mean of ``a - b`` over every (symbol, window) (a fraction of return).
        mean_difference_pct: the same as a percentage of ``b``'s mean error (-2.0 = ``a`` misses
            by 2 % less).
        standard_error: Driscoll–Kraay standard error of the mean (see the module docstring).
        min_detectable_edge_pct: the true error reduction, as % of ``b``'s mean error, this test
            finds with 80 % power at :data:`~tuner.core.statistics.significance.ALPHA`.
        symbols: symbols pooled; observations: (symbol, window) pairs; clusters: distinct dates
            (or window indices).
        clustered_by: ``"date"`` or ``"window index"`` (no dates given).
        reason: why statistic/p_value are None.
    """

    statistic: float | None
    p_value: float | None
    mean_difference: float | None
    mean_difference_pct: float | None
    standard_error: float | None
    min_detectable_edge_pct: float | None
    symbols: int
    observations: int
    clusters: int
    clustered_by: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: _finite(getattr(self, k)) for k in (
            "statistic", "p_value", "mean_difference", "mean_difference_pct", "standard_error",
            "min_detectable_edge_pct")}
        out.update(symbols=self.symbols, observations=self.observations, clusters=self.clusters,
                   clustered_by=self.clustered_by)
        if self.reason:
            out["reason"] = self.reason
        return out

    def better(self, alpha: float = ALPHA) -> bool:
        """Whether ``a`` is significantly better at ``alpha`` (one-sided)."""
        return self.p_value is not None and self.p_value < alpha


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def panel_dm(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
             dates: Mapping[str, Sequence[str]] | None = None, *, horizon: int = 1,
             alpha: float = ALPHA) -> PanelComparison:
    """The panel Diebold–Mariano test of ``a`` against ``b``.

    Args:
        a, b: symbol → per-window absolute errors on one period, in window order; only symbols
            in both (with equally many windows) are pooled.
        dates: symbol → each window's date (any hashable label, e.g. ISO timestamps of the
            target bar), same length as its errors; None to cluster by window index.
        horizon: forecast horizon (Bartlett lags ``horizon - 1`` across sorted dates).
        alpha: the level the minimum detectable edge is stated at.
    """
    clustered_by = CLUSTER_DATE if dates is not None else CLUSTER_INDEX
    diffs, labels, others = [], [], []
    for symbol in sorted(set(a) & set(b)):
        x, y = np.asarray(a[symbol], dtype=np.float64), np.asarray(b[symbol], dtype=np.float64)
        if len(x) != len(y) or len(x) == 0 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            continue
        if dates is not None:
            days = list(dates.get(symbol) or [])
            if len(days) != len(x):
                continue
        else:
            days = list(range(len(x)))
        diffs.append(x - y)
        others.append(y)
        labels += days
    symbols = len(diffs)
    if symbols == 0:
        return PanelComparison(None, None, None, None, None, None, 0, 0, 0, clustered_by,
                               "no symbol has errors of both forecasts on the same windows"
                               + (" with their dates" if dates is not None else ""))
    d = np.concatenate(diffs)
    other_mean = float(np.concatenate(others).mean())
    mean = float(d.mean())
    pct = 100.0 * mean / other_mean if other_mean > 0 else None
    order = sorted(set(labels))
    position = {label: i for i, label in enumerate(order)}
    sums = np.zeros(len(order))
    np.add.at(sums, np.array([position[x] for x in labels]), d - mean)
    g, n = len(order), len(d)
    if g < 3:
        return PanelComparison(None, None, mean, pct, None, None, symbols, n, g, clustered_by,
                               f"too few {clustered_by} clusters: {g} < 3")
    h = int(horizon)
    variance = float(sums @ sums) + sum(2.0 * (1.0 - k / h) * float(sums[k:] @ sums[:-k])
                                        for k in range(1, min(h, g)))
    if not variance > 1e-30 * max(float((d**2).sum()), 1e-300):
        return PanelComparison(None, None, mean, pct, None, None, symbols, n, g, clustered_by,
                               "the error difference does not vary: the test is undefined")
    from scipy import stats

    se = math.sqrt(variance) / n
    statistic = mean / se
    p_value = float(stats.t.cdf(statistic, df=g - 1))
    edge = minimum_detectable_edge(se, g, alpha=alpha, power=POWER)
    return PanelComparison(statistic, p_value, mean, pct, se,
                           100.0 * edge / other_mean if other_mean > 0 else None,
                           symbols, n, g, clustered_by)
