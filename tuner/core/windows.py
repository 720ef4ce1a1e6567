"""Leak-free rolling-origin windows: the validation period tuning optimises and the held-out test.

With ``N`` bars (indices ``0..N-1``), ``T = test_windows``, ``V = val_windows`` and horizon ``h``:

* test targets are the last ``T`` bars, ``t ∈ [N-T, N-1]``;
* validation targets are the ``V`` bars before them, ``t ∈ [N-T-V, N-T-1]``;
* the forecast for target ``t`` is made at origin ``o = t-h+1``: the model sees bars ``< o`` only
  (at most ``context_length`` of them) and forecasts ``h`` bars ahead, the last being ``t``.

Every window of a symbol has the same context length, ``min(context_length, first origin)``, so a
period is one rectangular batch.

**Auto periods** (``windows: auto``, the experiment default): a period given as ``None`` is sized
from the symbol's history (:meth:`WindowSpec.resolve`): after :data:`AUTO_CONTEXT` bars of context
(the longest context a shipped family carries), the remaining bars are split evenly between the
auto periods (validation counted once per stability fold too), capped at :data:`AUTO_CAP` windows
a period; a short history keeps :data:`AUTO_MIN` windows a period by giving up context (down to
``MIN_CONTEXT``), and a history too short even for that is refused. The split depends only on the
number of bars and the spec, so every family of a symbol is scored on the same windows. Returns are measured from the last close the model saw
(``close[o-1]``; for ``h = 1`` that is ``close[t-1]``, as SPEC.md defines them).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from tuner.core.data import Bars
from tuner.core.errors import ConfigError, DataError

T = TypeVar("T")

Period = str
"""``"validation"``, ``"test"``, or ``"fold1"``, ``"fold2"``... for stability folds."""

MIN_CONTEXT = 32
"""Fewest context bars any family is asked to forecast from."""

AUTO_CONTEXT = 512
"""Context bars auto periods leave before the first validation origin (Toto's ``context_length``,
the longest of the shipped families), when the history is long enough."""
AUTO_CAP = 250
"""Most windows an auto period takes: about one year of daily bars. A 6-year daily series
(~1,510 bars) gets 250 validation and 250 test windows; the cost of a trial grows with it."""
AUTO_MIN = 20
"""Fewest windows an auto period takes: below this a symbol is refused (with the bars it needs)."""


@dataclass(frozen=True)
class WindowSpec:
    """Where the validation and test periods sit and how far ahead is forecast.

    Attributes:
        val_windows: validation targets (bars), the period tuning optimises. Default 20;
            None = auto (sized from each symbol's history, see the module doc).
        test_windows: held-out test targets at the end of the data. Default 20; None = auto.
        horizon: bars ahead; the target of an origin ``o`` is bar ``o + horizon - 1``. Default 1.
        stability_folds: extra earlier folds of ``val_windows`` bars each, just before the
            validation period, on which winners are re-scored to show how stable their score is
            across periods (tuning never optimises them). Default 0.
    """

    val_windows: int | None = 20
    test_windows: int | None = 20
    horizon: int = 1
    stability_folds: int = 0

    def __post_init__(self) -> None:
        for name in ("val_windows", "test_windows", "horizon", "stability_folds"):
            value = getattr(self, name)
            if value is None and name in ("val_windows", "test_windows"):
                continue  # auto
            low = 0 if name == "stability_folds" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"windows.{name}: {value!r} must be an integer >= {low}")

    @classmethod
    def auto(cls, horizon: int = 1, stability_folds: int = 0) -> WindowSpec:
        """Both periods sized from each symbol's history."""
        return cls(None, None, horizon, stability_folds)

    @property
    def is_auto(self) -> bool:
        return self.val_windows is None or self.test_windows is None

    def resolve(self, n_bars: int) -> WindowSpec:
        """The concrete spec for a symbol of ``n_bars`` bars (itself when nothing is auto).

        Auto periods share what is left after :data:`AUTO_CONTEXT` context bars, the explicit
        periods and ``horizon - 1`` evenly (validation once per stability fold too), at most
        :data:`AUTO_CAP` and at least :data:`AUTO_MIN` each; whether the symbol then has enough
        bars is :func:`make_periods`'s check.
        """
        if not self.is_auto:
            return self
        val_share = 1 + self.stability_folds
        shares = (val_share if self.val_windows is None else 0) + (self.test_windows is None)
        explicit = (0 if self.val_windows is None else val_share * self.val_windows) + (self.test_windows or 0)
        free = n_bars - AUTO_CONTEXT - explicit - (self.horizon - 1)
        per = max(AUTO_MIN, min(AUTO_CAP, free // shares))
        return WindowSpec(per if self.val_windows is None else self.val_windows,
                          per if self.test_windows is None else self.test_windows,
                          self.horizon, self.stability_folds)

    def bars_needed(self, min_context: int = MIN_CONTEXT) -> int:
        """Fewest bars a symbol needs: ``min_context`` before the first (fold or) validation origin
        (an auto period counts its minimum, :data:`AUTO_MIN`)."""
        val, test = self.val_windows or AUTO_MIN, self.test_windows or AUTO_MIN
        return min_context + (1 + self.stability_folds) * val + test + self.horizon - 1

    def need(self, min_context: int = MIN_CONTEXT) -> str:
        val, test = self.val_windows or AUTO_MIN, self.test_windows or AUTO_MIN
        folds = f" + {self.stability_folds}×{val} stability" if self.stability_folds else ""
        auto = " (auto periods at their minimum)" if self.is_auto else ""
        return (f"context {min_context} + {val} validation{folds} + {test} test"
                + (f" + horizon {self.horizon} - 1" if self.horizon > 1 else "") + auto)

    def to_dict(self) -> dict[str, int | str]:
        """As the experiment config writes it: ``"auto"`` for an auto period."""
        return {"val_windows": "auto" if self.val_windows is None else self.val_windows,
                "test_windows": "auto" if self.test_windows is None else self.test_windows,
                "horizon": self.horizon, "stability_folds": self.stability_folds}


@dataclass(frozen=True, eq=False)
class WindowBatch:
    """All windows of one symbol in one period (W windows of L context bars each).

    The contexts are not stored window by window: W rolling windows of L bars overlap almost
    entirely, and a copy per window made a symbol's periods ~40 L times its bars, in the driver
    and again in the object store (1,000 symbols: 0.6 GB each; issue 22). A batch refers to the
    symbol's series, shared read-only by its periods and families (so the object store holds it
    once per symbol), and every accessor cuts it at ``end``, the last origin: what a window may
    see. :attr:`context` gathers each window's bars on every access, as a fresh array.

    Attributes:
        symbol: the symbol.
        period: ``"validation"``, ``"test"`` or ``"fold<k>"``.
        horizon: bars ahead; the forecast is for the last of ``horizon`` future bars.
        target_index: (W,) bar index of each target ``t``.
        future_times: (W, horizon) ``datetime64[ns]`` timestamps of bars ``o..t``. Bar times are
            calendar facts known in advance (Kronos uses them as features); their prices are not
            part of the batch except ``actual_close``, which only the metrics read.
        prev_close: (W,) the last close the model saw, ``close[o-1]``.
        actual_close: (W,) the close of the target bar ``t``.
        series: (N, 6) float64 read-only bars in ``data.BAR_COLUMNS`` order (open, high, low,
            close, volume, amount), prices in the data's units; only ``series[:end]`` is read.
        series_times: (N,) read-only ``datetime64[ns]`` timestamps of ``series``.
        end: bars from ``end`` on are after every window's origin and never read.
        starts: (W,) bar where each window's context begins: window ``i`` sees
            ``series[starts[i] : starts[i] + length]``.
        length: L, context bars per window.
    """

    symbol: str
    period: Period
    horizon: int
    target_index: np.ndarray
    future_times: np.ndarray
    prev_close: np.ndarray
    actual_close: np.ndarray
    series: np.ndarray
    series_times: np.ndarray
    end: int
    starts: np.ndarray
    length: int

    def __post_init__(self) -> None:
        if len(self.starts) and (int(self.starts.min()) < 0 or int(self.starts.max()) + self.length > self.end):
            raise ValueError(f"{self.symbol} {self.period}: windows reach outside bars [0, {self.end})")

    def __len__(self) -> int:
        return len(self.target_index)

    def kept(self, name: str, make: Callable[[WindowBatch], T]) -> T:
        """``make(self)``, made on the first call and kept on the batch under ``name`` (a private
        memo on a frozen dataclass): what is derived from the batch alone never changes, since
        its arrays are never modified after it is cut. A batch made from it by ``replace``
        (:meth:`rows`, :meth:`truncated`) starts without it."""
        value = self.__dict__.get(name)
        if value is None:
            value = make(self)
            object.__setattr__(self, name, value)
        return value

    @property
    def context_length(self) -> int:
        return self.length

    def _rows(self) -> np.ndarray:
        return self.starts[:, None] + np.arange(self.length)[None, :]

    @property
    def context(self) -> np.ndarray:
        """(W, L, 6) float64 context bars ``[o-L, o)``: a new array on every access, so a
        forecaster that scribbles on its input cannot touch the data."""
        return self.series[self._rows()]

    @property
    def context_times(self) -> np.ndarray:
        """(W, L) ``datetime64[ns]`` timestamps of the context bars (a new array each access)."""
        return self.series_times[self._rows()]

    @property
    def close_context(self) -> np.ndarray:
        """(W, L) context closes."""
        return self.series[self._rows(), 3]

    @property
    def actual_return(self) -> np.ndarray:
        """(W,) ``actual_close / prev_close - 1`` as a fraction."""
        return self.actual_close / self.prev_close - 1.0

    def truncated(self, context_length: int) -> WindowBatch:
        """The same windows seeing only their last ``context_length`` bars (e.g. Kronos max_context)."""
        if context_length >= self.length:
            return self
        return replace(self, starts=self.starts + (self.length - context_length), length=context_length)

    def rows(self, index: np.ndarray | slice) -> WindowBatch:
        """The windows ``index`` of this batch, as a batch of their own (sharing its series)."""
        return replace(self, target_index=self.target_index[index], future_times=self.future_times[index],
                       prev_close=self.prev_close[index], actual_close=self.actual_close[index],
                       starts=self.starts[index])


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Periods:
    """The validation and test batches of one symbol for one family's context length, and the
    stability folds (``folds[0]`` just before validation, then further back)."""

    validation: WindowBatch
    test: WindowBatch
    folds: tuple[WindowBatch, ...] = ()


def make_periods(bars: Bars, spec: WindowSpec, context_length: int,
                 min_context: int = MIN_CONTEXT, series: tuple[np.ndarray, np.ndarray] | None = None) -> Periods:
    """Cut ``bars`` into the validation and test batches of ``spec``.

    An auto ``spec`` is first resolved for this symbol's number of bars (:meth:`WindowSpec.resolve`).
    ``series``: ``series_arrays(bars)``, when the caller cuts the same bars for several families
    (their batches then share one copy of the series).

    Raises:
        DataError: fewer bars than ``spec.bars_needed(min_context)``; the message says how many.
    """
    if context_length < min_context:
        raise ConfigError(f"context_length {context_length} is below the minimum {min_context}")
    n = len(bars)
    given, spec = spec, spec.resolve(n)
    needed = spec.bars_needed(min_context)
    if n < needed:
        raise DataError(
            f"{bars.source}: symbol {bars.symbol} has {n} bars, needs at least {needed} "
            f"({given.need(min_context)})"
        )
    first_val_target = n - spec.test_windows - spec.val_windows
    first_origin = first_val_target - spec.horizon + 1
    length = min(context_length, first_origin)
    values, times = series or series_arrays(bars)
    val_targets = np.arange(first_val_target, n - spec.test_windows)
    test_targets = np.arange(n - spec.test_windows, n)
    folds = []
    for k in range(1, spec.stability_folds + 1):
        start = first_val_target - k * spec.val_windows
        # Folds get their own (possibly shorter) context so validation never depends on them.
        fold_length = min(context_length, start - spec.horizon + 1)
        targets = np.arange(start, start + spec.val_windows)
        folds.append(cut_batch(bars.symbol, f"fold{k}", targets, spec.horizon, fold_length, values, times))
    return Periods(
        validation=cut_batch(bars.symbol, "validation", val_targets, spec.horizon, length, values, times),
        test=cut_batch(bars.symbol, "test", test_targets, spec.horizon, length, values, times),
        folds=tuple(folds),
    )


def series_arrays(bars: Bars) -> tuple[np.ndarray, np.ndarray]:
    """``bars``' values and timestamps as read-only arrays: cut them once per symbol and hand
    them to :func:`make_periods` for every family, so all its windows share one series."""
    return _read_only(bars.values), _read_only(bars.timestamps)


def cut_batch(symbol: str, period: Period, targets: np.ndarray, horizon: int, length: int,
              values: np.ndarray, times: np.ndarray) -> WindowBatch:
    """The windows forecasting bars ``targets`` ``horizon`` bars ahead, each seeing the ``length``
    bars before its origin, over ``series_arrays`` ``values`` and ``times`` (shared, not copied)."""
    origins = targets - horizon + 1
    fut_idx = origins[:, None] + np.arange(horizon)[None, :]
    return WindowBatch(
        symbol=symbol,
        period=period,
        horizon=horizon,
        target_index=targets.copy(),
        future_times=times[fut_idx].copy(),
        prev_close=values[origins - 1, 3].copy(),
        actual_close=values[targets, 3].copy(),
        series=values,
        series_times=times,
        end=int(origins.max()) if len(origins) else 0,
        starts=origins - length,
        length=length,
    )


def window_seeds(seed: int, batch: WindowBatch) -> list[int]:
    """One seed per window, from the trial seed, the symbol and the target's timestamp.

    A window's random numbers then depend on nothing else in the batch: the same window gets the
    same draws whichever other windows are evaluated with it, and other symbols get other draws.
    The seeds of the last trial seed used are kept on the batch (every trial of an experiment
    runs with the experiment's seed, on the same batch objects in a model actor).
    """
    cached = batch.__dict__.get("_window_seeds")
    if cached is not None and cached[0] == seed:
        return list(cached[1])
    symbol_key = zlib.crc32(batch.symbol.encode())
    out = []
    for stamp in batch.future_times[:, -1].astype(np.int64):
        entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, symbol_key,
                   int(stamp) & 0xFFFFFFFF, (int(stamp) >> 32) & 0xFFFFFFFF]
        state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
        out.append((int(state[0]) << 31) ^ int(state[1]))  # < 2**63: valid for torch generators
    object.__setattr__(batch, "_window_seeds", (seed, tuple(out)))  # frozen dataclass: a private memo
    return out


def window_counts(periods: Periods) -> dict[str, int]:
    """How many windows each period of ``periods`` holds (what result files state per symbol)."""
    counts = {"validation": len(periods.validation), "test": len(periods.test)}
    if periods.folds:
        counts["stability_folds"] = len(periods.folds)
        counts["fold_windows"] = len(periods.folds[0])
    counts["context_length"] = periods.validation.context_length
    return counts


def target_dates(batch: WindowBatch) -> list[str]:
    """ISO timestamp (seconds) of each window's target bar, in window order."""
    return [str(t) for t in np.datetime_as_string(batch.future_times[:, -1], unit="s")]
