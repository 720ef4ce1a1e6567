"""An experiment's finished results as ``summary.json`` and two tables beside it, written and read.

``summary.json`` stays short whatever the universe: experiment-level facts, ``complete``, the
``trials`` totals, the decisions' tallies, ``panel``, a ``windows_used`` summary, ``counts`` and
``tables`` (pointers to the tables). What grows with the universe is in Parquet:

* ``symbols.parquet``: one row per symbol with a winner: key columns (:data:`SYMBOL_COLUMNS`)
  and ``entry``, the symbol's whole entry (families, config, scores, significance,
  ``decision``) as strict JSON;
* ``studies.parquet``: one row per study (:data:`STUDY_COLUMNS`): trial counts against the
  budget, why it has no winner (null when it has one), the symbol's window counts (JSON).

Every consumer (status, report, promote, backtest, forward, patterns, the CLI, the engine's
resume check) reads through :class:`ExperimentSummary`, which projects columns, so a status at
10,000 symbols never parses an entry's JSON. Experiments collated before the tables (their
``summary.json`` holds ``symbols``/``studies``/``studies_without_winner`` dicts) read the same.

Both tables carry the summary's ``created_at`` in their schema metadata: tables and a summary
of different collations (a run killed between writing them) are refused as damaged, with the
way back (``tuner resume`` rebuilds all three).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tuner.core import strict_json
from tuner.core.errors import DamagedFile
from tuner.core.storage import STUDIES_FILE, SUMMARY_FILE, SYMBOLS_FILE, Storage

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SYMBOL_COLUMNS = ("symbol", "best_family", "decision_choice", "decision_family",
                  "validation_pct_return_mae", "test_pct_return_mae",
                  "baseline_validation_pct_return_mae", "baseline_test_pct_return_mae",
                  "validation_skill", "test_skill", "beats_baseline", "stability_spread",
                  "latency_per_forecast_s", "families")
"""``symbols.parquet``'s key columns (``families``: the families and candidates it has a winner of)."""
ENTRY = "entry"
"""The column holding a symbol's whole summary entry as strict JSON."""
STUDY_COLUMNS = ("study", "symbol", "family", "completed", "failed", "never_ran", "budget",
                 "without_winner", "windows")
"""``studies.parquet``'s columns."""
LEGACY_KEYS = ("symbols", "studies", "studies_without_winner")
"""The per-symbol and per-study dicts a summary.json held before the tables."""
STAMP = b"tuner.created_at"
"""Schema metadata key: the ``created_at`` of the summary the table was written with."""
ROW_GROUP = 1024
"""Rows per Parquet row group: a lookup of one symbol reads one group (rows sorted by symbol)."""

_FLOATS = ("validation_pct_return_mae", "test_pct_return_mae", "baseline_validation_pct_return_mae",
           "baseline_test_pct_return_mae", "validation_skill", "test_skill", "stability_spread",
           "latency_per_forecast_s")
_COUNTS = ("completed", "failed", "never_ran", "budget")


# ------------------------------------------------------------------------------------- writing


def _symbol_row(symbol: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    decision = entry.get("decision") if isinstance(entry.get("decision"), Mapping) else {}
    best = (entry.get("families") or {}).get(entry.get("best_family")) or {}
    row = {"symbol": symbol, "best_family": entry.get("best_family"),
           "decision_choice": decision.get("choice"), "decision_family": decision.get("family"),
           "beats_baseline": entry.get("beats_baseline"), "families": sorted(entry.get("families") or {})}
    for key in _FLOATS:
        value = entry.get(key, best.get(key) if key == "latency_per_forecast_s" else None)
        row[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return row


def symbols_table(symbols: Mapping[str, Mapping[str, Any]], created_at: str | None = None,
                  with_entries: bool = True) -> pa.Table:
    """``symbols.parquet`` from ``{symbol: entry}`` (the former ``summary["symbols"]``), sorted by
    symbol; without ``with_entries`` the ``entry`` column is empty (null), its JSON never built."""
    import pyarrow as pa

    rows, entries = [], []
    for symbol in sorted(symbols):
        entry = strict_json.strict(dict(symbols[symbol])) if with_entries else symbols[symbol]
        rows.append(_symbol_row(symbol, entry))  # strict: what summary.json held, NaN as null + reason
        entries.append(json.dumps(entry, allow_nan=False, sort_keys=False) if with_entries else None)
    columns = {name: [r[name] for r in rows] for name in SYMBOL_COLUMNS}
    columns[ENTRY] = entries
    return pa.table(columns, schema=symbols_schema(created_at))


def symbols_schema(created_at: str | None = None) -> pa.Schema:
    """``symbols.parquet``'s columns, stamped with the collation's ``created_at``."""
    import pyarrow as pa

    return pa.schema([("symbol", pa.string()), ("best_family", pa.string()), ("decision_choice", pa.string()),
                      ("decision_family", pa.string()), *((k, pa.float64()) for k in _FLOATS[:6]),
                      ("beats_baseline", pa.bool_()), ("stability_spread", pa.float64()),
                      ("latency_per_forecast_s", pa.float64()), ("families", pa.list_(pa.string())),
                      (ENTRY, pa.string())], metadata=_stamp(created_at))


def symbols_table_parts(symbols: Mapping[str, Mapping[str, Any]], created_at: str | None = None,
                        size: int | None = None) -> Iterator[pa.Table]:
    """:func:`symbols_table` made ``size`` (:data:`ROW_GROUP`) symbols at a time, one row group
    each, so writing it never holds every entry's JSON at once (~5-10 KB a symbol: 100 MB at
    10,000 symbols)."""
    names, size = sorted(symbols), size or ROW_GROUP
    for start in range(0, len(names), size):
        yield symbols_table({s: symbols[s] for s in names[start:start + size]}, created_at)


def studies_table(counts: Mapping[str, Mapping[str, int]], without_winner: Mapping[str, str],
                  windows_used: Mapping[str, Mapping[str, int]] | None = None,
                  created_at: str | None = None) -> pa.Table:
    """``studies.parquet`` from ``{"SYMBOL/family": counts}``, ``{"SYMBOL/family": why}`` for the
    studies without a winner and ``{symbol: window counts}``, sorted by study."""
    import pyarrow as pa

    keys = sorted(set(counts) | set(without_winner))
    split = [k.rpartition("/") for k in keys]
    windows = windows_used or {}
    columns: dict[str, list] = {
        "study": keys, "symbol": [s for s, _, _ in split], "family": [f for _, _, f in split],
        **{c: [(counts.get(k) or {}).get(c) for k in keys] for c in _COUNTS},
        "without_winner": [without_winner.get(k) for k in keys],
        "windows": [json.dumps(dict(windows[s])) if s in windows else None for s, _, _ in split],
    }
    schema = pa.schema([("study", pa.string()), ("symbol", pa.string()), ("family", pa.string()),
                        *((c, pa.int64()) for c in _COUNTS), ("without_winner", pa.string()),
                        ("windows", pa.string())], metadata=_stamp(created_at))
    return pa.table(columns, schema=schema)


def _stamp(created_at: str | None) -> dict[bytes, bytes]:
    return {STAMP: str(created_at or "").encode()}


def windows_summary(windows_used: Mapping[str, Mapping[str, int]] | None) -> dict[str, Any]:
    """summary.json's ``windows_used``: over the symbols, each count's smallest and largest."""
    out: dict[str, Any] = {"symbols": len(windows_used or {})}
    for counts in (windows_used or {}).values():
        for key, value in counts.items():
            low, high = out.get(key, {}).get("min", value), out.get(key, {}).get("max", value)
            out[key] = {"min": min(low, value), "max": max(high, value)}
    return out


def short_summary(summary: Mapping[str, Any], symbol_count: int | None = None) -> dict[str, Any]:
    """``summary.json`` as written: ``summary`` (the collation's in-memory document, with
    ``studies``, ``studies_without_winner``, per-symbol ``windows_used`` and maybe ``symbols``)
    less everything that grows with the universe, plus ``counts`` and ``tables``
    (``symbol_count``: the rows of ``symbols.parquet``; default: ``summary``'s ``symbols``)."""
    short = {k: v for k, v in summary.items() if k not in LEGACY_KEYS}
    if isinstance(summary.get("windows_used"), Mapping):
        short["windows_used"] = windows_summary(summary["windows_used"])
    symbols = len(summary.get("symbols") or {}) if symbol_count is None else symbol_count
    short["counts"] = {"symbols": symbols, "studies": len(summary.get("studies") or {}),
                       "studies_without_winner": len(summary.get("studies_without_winner") or {})}
    short["tables"] = {"symbols": SYMBOLS_FILE, "studies": STUDIES_FILE}
    return short


def row_groups(parts: Iterable[pa.Table], size: int | None = None) -> Iterator[pa.Table]:
    """``parts`` (tables of one schema, in order) regrouped into tables of ``size``
    (:data:`ROW_GROUP`) rows, the last one shorter, holding about one group's rows at a time."""
    import pyarrow as pa

    size = size or ROW_GROUP
    held: list[pa.Table] = []
    rows = 0
    for part in parts:
        held.append(part)
        rows += part.num_rows
        while rows >= size:
            table = pa.concat_tables(held)
            yield table.slice(0, size)
            rest = table.slice(size)
            held, rows = ([rest] if rest.num_rows else []), rest.num_rows
    if rows:
        yield pa.concat_tables(held)


def write_summary(storage: Storage, summary: Mapping[str, Any], symbols: Mapping[str, Mapping[str, Any]] | None = None,
                  *, symbols_written: int | None = None) -> dict[str, Any]:
    """Write ``symbols.parquet``, ``studies.parquet`` and then ``summary.json`` (each atomic; the
    summary last, so a summary never points at tables not yet written); return the short summary.

    ``symbols``: every symbol's entry (default: ``summary["symbols"]``). ``symbols_written``:
    instead, the row count of a ``symbols.parquet`` already written with this summary's
    ``created_at`` (the collation tasks write it from their rows: a universe's entries are
    never all in one process)."""
    stamp = summary.get("created_at")
    if symbols_written is None:
        symbols = (summary.get("symbols") or {}) if symbols is None else symbols
        storage.write_parquet_parts(SYMBOLS_FILE, symbols_schema(stamp), symbols_table_parts(symbols, stamp))
        symbols_written = len(symbols)
    storage.write_parquet(STUDIES_FILE, studies_table(summary.get("studies") or {},
                                                      summary.get("studies_without_winner") or {},
                                                      summary.get("windows_used"), stamp), ROW_GROUP)
    short = short_summary(summary, symbols_written)
    storage.write_json(SUMMARY_FILE, short)
    return short


# ------------------------------------------------------------------------------------- reading


class ExperimentSummary:
    """A finished experiment's ``summary.json`` and its tables (or, for an experiment collated
    before them, the dicts its summary holds), read on demand.

    Attributes:
        storage: the experiment (None for an old-shape document read elsewhere: a test's, a
            caller's; a short one needs its storage to read the tables).
        document: ``summary.json`` as read (an old one keeps its per-symbol dicts: read them
            through the methods, never from here).
        legacy: True when the summary holds the dicts instead of pointing at tables.
    """

    def __init__(self, storage: Storage | None, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping):
            raise DamagedFile(self._where(storage, SUMMARY_FILE, f"not a JSON object but a {type(document).__name__}"))
        self.storage, self.document = storage, dict(document)
        self.legacy = "tables" not in self.document
        self._checked: set[str] = set()

    @classmethod
    def read(cls, storage: Storage) -> ExperimentSummary:
        """Read ``summary.json`` (the tables only when asked for).

        Raises:
            FileNotFoundError: there is no summary.json.
            DamagedFile: it is not valid JSON, or not an object.
        """
        return cls(storage, storage.read_json(SUMMARY_FILE))

    # --- symbols

    def symbols(self, columns: Iterable[str] | None = None, symbols: Iterable[str] | None = None) -> pd.DataFrame:
        """The symbols' key columns (``columns``, default all of :data:`SYMBOL_COLUMNS`; ``entry``
        may be asked for too), one row per symbol sorted by symbol, only ``symbols`` when given."""
        return self._symbol_rows(columns or SYMBOL_COLUMNS, symbols).to_pandas()

    def _symbol_rows(self, columns: Iterable[str], symbols: Iterable[str] | None = None) -> pa.Table:
        """:meth:`symbols` as a pyarrow Table (what needs no pandas: promote, the CLI's exit)."""
        wanted = list(dict.fromkeys(["symbol", *columns]))
        if self.legacy:  # the same table, built from the dict in memory
            legacy = self._legacy_symbols()
            chosen = legacy if symbols is None else {s: legacy[s] for s in set(symbols) & set(legacy)}
            return symbols_table(chosen, with_entries=ENTRY in wanted).select(wanted)
        filters = None if symbols is None else [("symbol", "in", sorted(set(symbols)))]
        if filters is not None and not filters[0][2]:
            return self._table(SYMBOLS_FILE, wanted).slice(0, 0)
        return self._table(SYMBOLS_FILE, wanted, filters)

    def symbol_names(self) -> list[str]:
        """Every symbol with a winner, sorted."""
        if self.legacy:
            return sorted(self._legacy_symbols())
        return self._table(SYMBOLS_FILE, ["symbol"]).column(0).to_pylist()

    def symbol_count(self) -> int:
        if self.legacy:
            return len(self._legacy_symbols())
        counts = self.document.get("counts") or {}
        return int(counts["symbols"]) if isinstance(counts.get("symbols"), int) else len(self.symbol_names())

    def entries(self, symbols: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(symbol, entry)`` sorted by symbol (only ``symbols`` when given), each entry the
        dict the former ``summary["symbols"][symbol]`` held, parsed one batch at a time."""
        if self.legacy:
            legacy = self._legacy_symbols()
            for s in sorted(legacy) if symbols is None else sorted(set(symbols) & set(legacy)):
                yield s, dict(legacy[s])
            return
        if symbols is None:  # one row group at a time: never every entry's text at once
            self._check(SYMBOLS_FILE)
            batches = self.storage.iter_batches(SYMBOLS_FILE, ["symbol", ENTRY], ROW_GROUP)
        else:
            batches = self._symbol_rows([ENTRY], symbols).to_batches(max_chunksize=ROW_GROUP)
        for batch in batches:
            for s, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                yield s, self._parse(s, text)

    def entries_dict(self, symbols: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """:meth:`entries` as a dict (what needs them all at once: promote, backtest, patterns)."""
        return dict(self.entries(symbols))

    def entry(self, symbol: str) -> dict[str, Any] | None:
        """One symbol's entry; None when it has no winner."""
        found = dict(self.entries([symbol]))
        return found.get(symbol)

    # --- studies

    def studies(self, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per study (``columns`` of :data:`STUDY_COLUMNS`, default all), sorted by study."""
        wanted = list(dict.fromkeys(["study", *(columns or STUDY_COLUMNS)]))
        if self.legacy:
            return studies_table(self.document.get("studies") or {}, self._legacy_without_winner(),
                                 self.windows_used()).select(wanted).to_pandas()
        return self._table(STUDIES_FILE, wanted).to_pandas()

    def study_counts(self) -> dict[str, dict[str, int]]:
        """``{"SYMBOL/family": {completed, failed, never_ran, budget}}`` (the former ``summary["studies"]``)."""
        if self.legacy:
            return {k: dict(v) for k, v in (self.document.get("studies") or {}).items()}
        table = self._table(STUDIES_FILE, ["study", *_COUNTS])
        return {row.pop("study"): row for row in table.to_pylist()}

    def without_winner(self) -> dict[str, str]:
        """``{"SYMBOL/family": why}`` for every study without a winner (sorted by study; an old
        summary's in its stored order)."""
        if self.legacy:
            return self._legacy_without_winner()
        if not (self.document.get("counts") or {}).get("studies_without_winner", 1):
            return {}  # the summary's tally says none: the table need not be read
        table = self._table(STUDIES_FILE, ["study", "without_winner"])
        return {s: w for s, w in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
                if w is not None}

    def without_winner_count(self) -> int:
        counts = self.document.get("counts") or {}
        if not self.legacy and isinstance(counts.get("studies_without_winner"), int):
            return counts["studies_without_winner"]
        return len(self.without_winner())

    def windows_used(self) -> dict[str, dict[str, int]]:
        """``{symbol: window counts}`` (validation, test, folds, context length)."""
        windows = self.document.get("windows_used")
        if self.legacy:
            return {s: dict(v) for s, v in (windows or {}).items() if isinstance(v, Mapping)}
        table = self._table(STUDIES_FILE, ["symbol", "windows"])
        return {s: json.loads(w) for s, w in zip(table.column(0).to_pylist(), table.column(1).to_pylist(),
                                                 strict=True) if w}

    # --- plumbing

    @staticmethod
    def _where(storage: Storage | None, relative: str, what: str) -> str:
        return storage._damaged(relative, what) if storage is not None else f"{relative}: {what}"

    def _legacy_symbols(self) -> Mapping[str, Mapping[str, Any]]:
        symbols = self.document.get("symbols") or {}
        if not isinstance(symbols, Mapping):
            raise DamagedFile(self._where(self.storage, SUMMARY_FILE, "its 'symbols' is not an object"))
        return symbols

    def _legacy_without_winner(self) -> dict[str, str]:
        missing = self.document.get("studies_without_winner") or {}
        if isinstance(missing, Mapping):
            return {str(k): str(v) if v else "" for k, v in missing.items()}
        return {str(k): "" for k in missing}  # oldest summaries: a list of keys

    def _table(self, relative: str, columns: list[str], filters=None) -> pa.Table:
        """A table of the summary, checked once to belong to it (same ``created_at``)."""
        self._check(relative)
        return self.storage.read_table(relative, columns, filters)

    def _check(self, relative: str) -> None:
        """Refuse a table of the summary that is missing, unreadable or of another collation."""
        if self.storage is None:
            raise ValueError(f"{relative}: a summary document without its storage cannot read its tables")
        if relative not in self._checked:
            try:
                stamp = (self.storage.read_schema(relative).metadata or {}).get(STAMP, b"").decode()
            except FileNotFoundError:
                raise DamagedFile(self._where(self.storage, relative, f"missing, though {SUMMARY_FILE} points at it")) from None
            if stamp != str(self.document.get("created_at") or ""):
                raise DamagedFile(self._where(self.storage, relative, (
                    f"written by another collation ({stamp or 'no date'}) than {SUMMARY_FILE} "
                    f"({self.document.get('created_at') or 'no date'}): a run stopped between writing them")))
            self._checked.add(relative)

    def _parse(self, symbol: str, text: str) -> dict[str, Any]:
        try:
            entry = json.loads(text)
        except (TypeError, ValueError) as e:
            raise DamagedFile(self._where(self.storage, SYMBOLS_FILE, f"the entry of {symbol!r} is not valid JSON ({e})")) from e
        if not isinstance(entry, dict):
            raise DamagedFile(self._where(self.storage, SYMBOLS_FILE, f"the entry of {symbol!r} is not an object"))
        return entry


def read_summary(storage: Storage) -> ExperimentSummary | None:
    """The experiment's :class:`ExperimentSummary`; None when it has no ``summary.json`` yet."""
    if not storage.exists(SUMMARY_FILE):
        return None
    return ExperimentSummary.read(storage)

