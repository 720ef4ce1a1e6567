"""What an experiment decided per symbol, and where its test period sits in the data today.

The decided config of a symbol is its entry's ``decision`` (``symbols.parquet``, read through
:class:`~tuner.core.summary_tables.ExperimentSummary`; ``family``, ``config``, ``choice``:
own / pooled / default) when the universe-level decision wrote one, else
the symbol's best family and its config (``choice`` ``winner``). Backtest, forward scoring and
patterns all read it through :func:`decided_configs`.

The data may have grown since the run (a daily append), so the test period is found again in
today's bars: by the summary's window dates when present, else by matching the naive
baseline's stored per-window test errors (``|close[t]/close[t-1] − 1|``, float32 precision) to
today's bars, which needs no model and is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.core.data import Bars
from tuner.core.errors import DataError, TunerError
from tuner.core.storage import SUMMARY_FILE, Storage
from tuner.core.summary_tables import ExperimentSummary

log = logging.getLogger(__name__)

DERIVED_FAMILIES = ("blend", "regime")
"""Candidates combined from family winners; they are not forecast in-process here."""


class ExperimentNotReady(TunerError):
    """The experiment has no summary.json (not run, or still running)."""


@dataclass(frozen=True)
class Decided:
    """The config an experiment decided for one symbol.

    Attributes:
        symbol: the symbol.
        family: the family to forecast with.
        config: its config (defaults filled in).
        choice: ``own`` / ``pooled`` / ``default`` (the universe-level decision) or ``winner``
            (no decision recorded: the symbol's best family).
        best_family: the symbol's best family by validation pct_return_mae (may differ).
    """

    symbol: str
    family: str
    config: Mapping[str, Any]
    choice: str
    best_family: str


def read_summary(storage: Storage) -> ExperimentSummary:
    """The experiment's ``summary.json`` with its tables (``.document`` is the summary itself).

    Raises:
        ExperimentNotReady: there is none yet.
    """
    if not storage.exists(SUMMARY_FILE):
        raise ExperimentNotReady(f"{storage.path(SUMMARY_FILE)}: no summary yet; run or resume "
                                 f"experiment {storage.name!r} to the end first")
    return ExperimentSummary.read(storage)


def decided_config(symbol: str, entry: Mapping[str, Any]) -> Decided:
    """The decided config of one symbol's summary entry (see the module docstring)."""
    best = entry.get("best_family")
    decision = entry.get("decision")
    if isinstance(decision, Mapping) and decision.get("family") and decision.get("config") is not None:
        return Decided(symbol, str(decision["family"]), dict(decision["config"]),
                       str(decision.get("choice", "own")), str(best))
    if not best:
        raise TunerError(f"summary.json symbols.{symbol}: no best_family and no decision")
    return Decided(symbol, str(best), dict(entry.get("config") or {}), "winner", str(best))


def decided_configs(summary: ExperimentSummary | Mapping[str, Any], symbols: list[str] | None = None
                    ) -> dict[str, Decided]:
    """The decided config of every symbol of ``summary`` (or of ``symbols``); ``summary`` is the
    experiment's, or a summary document of the old shape (its ``symbols`` dict).

    Raises:
        TunerError: a symbol asked for is not in the summary (naming the known ones).
    """
    results = summary if isinstance(summary, ExperimentSummary) else ExperimentSummary(None, summary)
    known = results.symbol_names()
    wanted = symbols if symbols is not None else known
    known_set = set(known)
    missing = [s for s in wanted if s not in known_set]
    if missing:
        raise TunerError(f"symbol {missing[0]!r} has no result in this experiment "
                         f"(symbols: {', '.join(known) or 'none'})")
    entries = results.entries_dict(None if symbols is None else wanted)
    return {s: decided_config(s, entries[s]) for s in wanted}


def _window_dates(summary: Mapping[str, Any], symbol: str) -> list[str] | None:
    dates = (summary.get("window_dates") or {}).get(symbol) \
        or (summary.get("symbols", {}).get(symbol) or {}).get("window_dates")
    test = (dates or {}).get("test") if isinstance(dates, Mapping) else None
    return list(test) if test else None


def locate_test_end(bars: Bars, summary: Mapping[str, Any], baseline_test_errors: list[float] | None,
                    test_windows: int) -> int:
    """Index in ``bars`` of the last test-period target bar of the experiment.

    Raises:
        DataError: the test period cannot be found in these bars (data rewritten, not appended).
    """
    times = bars.timestamps
    dates = _window_dates(summary, bars.symbol)
    if dates:
        last = np.datetime64(dates[-1], "ns")
        hit = np.flatnonzero(times == last)
        if hit.size:
            return int(hit[0])
        raise DataError(f"{bars.source}: the experiment's last test bar {dates[-1]} is not in the data")
    if not baseline_test_errors or len(baseline_test_errors) != test_windows:
        raise DataError(f"{bars.symbol}: the result file holds no per-window baseline test errors, "
                        "so the test period cannot be found in the data (re-run the experiment)")
    closes = bars.close
    moves = np.abs(closes[1:] / closes[:-1] - 1.0).astype(np.float32).astype(np.float64)
    want = np.asarray(baseline_test_errors, dtype=np.float64)
    if moves.size < want.size:
        raise DataError(f"{bars.source}: {len(bars)} bars, fewer than the test period's {want.size}")
    windows = np.lib.stride_tricks.sliding_window_view(moves, want.size)
    match = np.flatnonzero(np.all(np.isclose(windows, want[None, :], rtol=2e-6, atol=1e-9), axis=1))
    if not match.size:
        raise DataError(f"{bars.source}: the experiment's test period is not in these bars (were the "
                        "bars rewritten rather than appended?)")
    # moves[j] is the move into bar j + 1, so a window starting at j ends at bar j + size.
    return int(match[-1] + want.size)
