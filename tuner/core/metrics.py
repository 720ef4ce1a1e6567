"""Scores of point forecasts on a window batch, and the naive no-change baseline.

``pct_return_mae`` is the primary metric: mean over windows of
``|forecast/prev_close - actual_close/prev_close|`` (returns as fractions, so 0.01 = 1 %).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.core.errors import TunerError
from tuner.core.windows import WindowBatch


@dataclass(frozen=True)
class Scores:
    """How point forecasts did on one period.

    Attributes:
        pct_return_mae: mean |predicted return - actual return|, returns as fractions.
        price_mae: mean |forecast - actual close|, in the data's price units.
        latency_s: wall seconds to produce all the period's forecasts (0 for the baseline).
        latency_per_forecast_s: ``latency_s / windows``.
        windows: number of forecasts scored.
        errors: per-window ``|predicted return - actual return|`` in window order (length
            ``windows``), rounded to float32 precision (:func:`compact_errors`), so significance
            tests can be recomputed from stored results; () when not recorded (older files).
    """

    pct_return_mae: float
    price_mae: float
    latency_s: float
    latency_per_forecast_s: float
    windows: int
    errors: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, float | int | list[float]]:
        # Not asdict(): it deep-copies each error float one call at a time (collation does this
        # for every section of every winner, default and pooled result).
        return {"pct_return_mae": self.pct_return_mae, "price_mae": self.price_mae, "latency_s": self.latency_s,
                "latency_per_forecast_s": self.latency_per_forecast_s, "windows": self.windows,
                "errors": list(self.errors)}

    @classmethod
    def from_dict(cls, data: dict) -> Scores:
        """Inverse of :meth:`to_dict`; ``errors`` may be missing (files written before it was kept)."""
        kept = {k: data[k] for k in cls.__dataclass_fields__ if k != "errors"}
        return cls(**kept, errors=tuple(float(e) for e in data.get("errors") or ()))

    def packed(self) -> array:
        """Every field in one array of doubles (the errors last), for sending many at once: a
        10,000-symbol universe's winners take ~2.6 MB so, ~7 MB as dicts (:meth:`unpacked`)."""
        return array("d", (self.pct_return_mae, self.price_mae, self.latency_s, self.latency_per_forecast_s,
                           self.windows, *self.errors))

    @classmethod
    def unpacked(cls, values: Sequence[float]) -> Scores:
        """Inverse of :meth:`packed` (the same floats: doubles hold them exactly)."""
        return cls(values[0], values[1], values[2], values[3], int(values[4]), tuple(values[5:]))


def score(forecast: np.ndarray, batch: WindowBatch, latency_s: float = 0.0) -> Scores:
    """Score point forecasts ``(W,)`` of the target close against ``batch``.

    Raises:
        TunerError: the forecast has the wrong shape or holds NaN/inf (naming the window).
    """
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.shape != (len(batch),):
        raise TunerError(
            f"{batch.symbol} {batch.period}: forecast shape {forecast.shape}, expected ({len(batch)},)"
        )
    bad = np.flatnonzero(~np.isfinite(forecast))
    if bad.size:
        i = int(bad[0])
        raise TunerError(
            f"{batch.symbol} {batch.period}: forecast for bar {batch.target_index[i]} is {forecast[i]}"
        )
    errors = pct_return_errors(forecast, batch)
    return Scores(
        pct_return_mae=float(np.mean(errors)),
        price_mae=float(np.mean(np.abs(forecast - batch.actual_close))),
        latency_s=float(latency_s),
        latency_per_forecast_s=float(latency_s) / len(batch),
        windows=len(batch),
        errors=compact_errors(errors),
    )


def compact_errors(errors: np.ndarray) -> tuple[float, ...]:
    """Per-window errors as the shortest decimals that round-trip through float32.

    About 7 significant digits: far below any difference a test on 20 windows can detect, and
    a JSON list of them stays short (the float64 repr of a float32 value takes ~17 digits).
    """
    return tuple(float(str(e)) for e in np.asarray(errors, dtype=np.float32))


def pct_return_errors(forecast: np.ndarray, batch: WindowBatch) -> np.ndarray:
    """(W,) per-window ``|forecast/prev_close - actual_close/prev_close|``: pct_return_mae before
    its mean (for rules that are fitted on some windows and scored on others)."""
    return np.abs(forecast / batch.prev_close - 1.0 - batch.actual_return)


def naive_forecast(batch: WindowBatch) -> np.ndarray:
    """The no-change forecast: the next close equals the last close seen (predicted return 0)."""
    return batch.prev_close.copy()


def baseline(batch: WindowBatch) -> Scores:
    """Scores of the naive no-change forecast on the same windows.

    Kept on the batch after the first call (Scores are immutable and a batch is never modified
    after it is cut): every trial and re-scoring of a symbol scores the baseline on the same
    batch objects, and it was 2-3 % of a weights-free trial's cost."""
    return batch.kept("_baseline", lambda b: score(naive_forecast(b), b, latency_s=0.0))


SKILL_UNDEFINED = "baseline pct_return_mae is 0 (flat prices), so skill is undefined"
"""Why a skill is None; result files write it beside the skill as ``skill_reason``."""


def skill(model: Scores, reference: Scores) -> float | None:
    """``1 - model/reference`` pct_return_mae: > 0 beats the reference, 0 ties, < 0 loses.

    None (:data:`SKILL_UNDEFINED`) when the reference is exact and the model is not: the ratio
    is infinite, which JSON cannot hold and no comparison needs.
    """
    if reference.pct_return_mae == 0:
        return 0.0 if model.pct_return_mae == 0 else None
    return 1.0 - model.pct_return_mae / reference.pct_return_mae


def skill_fields(value: float | None) -> dict[str, float | str | None]:
    """``{"skill": value}``, plus ``skill_reason`` when it is None: a result file's skill fields."""
    return {"skill": value} if value is not None else {"skill": None, "skill_reason": SKILL_UNDEFINED}
