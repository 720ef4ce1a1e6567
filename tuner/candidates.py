"""Derived candidates built from the family winners of a symbol; they compete with them.

* **blend** ("ensemble of ensembles"): the best Toto and the best Kronos-ensemble point
  forecasts, weighted by inverse validation pct_return_mae (``w_i ∝ 1 / mae_i``), fitted on
  validation only and scored on the same validation windows and on test.
* **regime**: per window, the *fast* winner (lowest latency per forecast) in calm markets and
  the *conservative* winner (lowest validation error among the others) in volatile ones. A
  window's volatility is the standard deviation of its context's last ``VOL_BARS`` one-bar log
  returns (its own context: leak-free); the threshold is the one that minimises validation
  pct_return_mae over the validation windows' volatilities, then scored unchanged on test.

Both are point-forecast rules: they need each winner's forecasts on both periods, which the
driver asks the model actors for (the draws are the winners' own, same seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.metrics import baseline, score, skill
from tuner.windows import Periods, WindowBatch

VOL_BARS = 20


@dataclass(frozen=True)
class WinnerForecasts:
    """One family winner's point forecasts on a symbol's periods.

    Attributes:
        family: the family.
        validation, test: (W,) point forecasts, price units.
        latency_per_forecast_s: the winner's validation latency per forecast.
    """

    family: str
    validation: np.ndarray
    test: np.ndarray
    latency_per_forecast_s: float


def realised_volatility(batch: WindowBatch, bars: int = VOL_BARS) -> np.ndarray:
    """(W,) std of the last ``bars`` one-bar log returns of each window's context."""
    closes = batch.close_context[:, -(bars + 1):]
    return np.log(closes[:, 1:] / closes[:, :-1]).std(axis=1)


def _document(kind: str, symbol: str, config: dict[str, Any], periods: Periods, val: np.ndarray,
              test: np.ndarray, latency: float, seed: int) -> dict[str, Any]:
    def period(point: np.ndarray, batch: WindowBatch) -> tuple[dict, dict]:
        s = score(point, batch, latency * len(batch))
        ref = baseline(batch)
        return {**s.to_dict(), "skill": skill(s, ref)}, ref.to_dict()

    v, v_ref = period(val, periods.validation)
    t, t_ref = period(test, periods.test)
    return {"symbol": symbol, "model_type": kind, "config": config, "validation": v, "test": t,
            "baseline": {"validation": v_ref, "test": t_ref}, "seed": seed}


def blend(symbol: str, periods: Periods, a: WinnerForecasts, b: WinnerForecasts, seed: int) -> dict[str, Any]:
    """The inverse-MAE blend of two winners (weights fitted on validation)."""
    maes = np.array([score(a.validation, periods.validation).pct_return_mae,
                     score(b.validation, periods.validation).pct_return_mae])
    inverse = 1.0 / np.maximum(maes, 1e-12)
    w = inverse / inverse.sum()
    config = {"members": [a.family, b.family], "weights": [float(w[0]), float(w[1])],
              "rule": "inverse validation pct_return_mae"}
    return _document("blend", symbol, config, periods,
                     w[0] * a.validation + w[1] * b.validation, w[0] * a.test + w[1] * b.test,
                     a.latency_per_forecast_s + b.latency_per_forecast_s, seed)


def regime(symbol: str, periods: Periods, winners: list[WinnerForecasts], seed: int) -> dict[str, Any] | None:
    """Switch by realised volatility between the fast and the conservative winner; None when
    fewer than two winners exist or when no split beats always using one of them (the rule
    would just be that winner again)."""
    if len(winners) < 2:
        return None
    fast = min(winners, key=lambda w: w.latency_per_forecast_s)
    others = [w for w in winners if w is not fast]
    conservative = min(others, key=lambda w: score(w.validation, periods.validation).pct_return_mae)
    vol_val = realised_volatility(periods.validation)
    best: tuple[float, float] | None = None
    for threshold in np.concatenate([[-np.inf], np.unique(vol_val), [np.inf]]):
        point = np.where(vol_val >= threshold, conservative.validation, fast.validation)
        mae = score(point, periods.validation).pct_return_mae
        if best is None or mae < best[0]:
            best = (mae, float(threshold))
    threshold = best[1]
    if not np.isfinite(threshold) or threshold <= vol_val.min():
        return None  # every validation window on one side: no regime, just one winner
    vol_test = realised_volatility(periods.test)
    use_val = vol_val >= threshold
    use_test = vol_test >= threshold
    config = {"fast": fast.family, "conservative": conservative.family,
              "volatility_threshold": threshold, "volatility_bars": VOL_BARS,
              "rule": "conservative when realised volatility >= threshold"}
    latency = float(np.mean(np.where(use_val, conservative.latency_per_forecast_s, fast.latency_per_forecast_s)))
    return _document("regime", symbol, config, periods,
                     np.where(use_val, conservative.validation, fast.validation),
                     np.where(use_test, conservative.test, fast.test), latency, seed)
