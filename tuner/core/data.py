"""Per-symbol OHLCV bars: loading, validation and the data check report.

Accepted inputs:

* a folder of ``.csv``, ``.csv.gz`` or ``.parquet`` files, one per symbol (symbol = file stem);
* one CSV/Parquet file with a ``symbol`` (or ``ticker``) column holding many symbols;
* one CSV/Parquet file without such a column (symbol = file stem).

Column names are matched case-insensitively with the usual aliases (``Date``/``Datetime``/
``timestamp``, ``Close``, ``Adj Close``, ``Volume``...). When an adjusted close is present it becomes
the close and open/high/low are scaled by the same factor, so splits and dividends do not show up
as returns. Bad input raises :class:`~tuner.core.errors.DataError` naming the file, the line (CSV) or row
(Parquet) and the problem; one bad symbol never stops the others. Files that are not bar data (no
close column, e.g. ``data_summary.csv``) are skipped with a warning, never tuned.

Rules for what is refused and what is only warned about:

* a symbol found in two sources (``KO.csv`` and ``KO.parquet``, or a file and a ``symbol`` column
  of another file) is an error naming both: neither silently wins;
* every folder entry named like a data file appears in the report: a directory, a dangling
  symbolic link or a link loop is an error saying so (keyed by the entry's name);
* ``high < low`` is an error naming the line (the bar is impossible); an open or close outside
  ``[low, high]`` is a warning naming the first such line and the count (a feed artefact that is
  common in real data; the bar is kept as is, and the models read the close);
* prices must be positive and, like volumes and amounts, finite and within float32 range
  (the models compute in float32); anything else is an error naming the line or row;
* timestamps are converted to naive UTC; a file whose timestamps carry more than one UTC offset
  (or mix offsets with none) gets a warning naming the lines of the first two;
* ``dd/mm/yyyy`` dates are read day-first when some first field is above 12 (month-first when
  some second field is); a file holding both kinds is an error naming a line of each;
* UTF-16 without a byte-order mark is refused with a message saying so, not misread;
* a symbol (a file's stem, or a value of the ``symbol`` column) must follow
  :data:`~tuner.core.symbols.SYMBOL_RULE` (no path separators, ``..``, leading dot, control
  characters or spaces): it becomes a file name. A bad one is an error naming the file and line
  (or the file, for a stem), keyed by its ``repr`` so it cannot stand for a real symbol;
* timestamps outside pandas' range (1677-09-21 .. 2262-04-11) are an error naming the line and
  the value as written, never read as some other date;
* two columns that name the same field (``close`` and ``Close``) are an error naming both;
* a literal ``NaN`` price is an error saying NaN, an empty cell one saying empty;
* warnings: a flat series (one close throughout), bars of more than one frequency in one file
  (daily and hourly), UTC offsets that change other than by a daylight-saving rule (offsets that
  follow a time zone's DST, ``+01:00`` in winter and ``+02:00`` in summer, are simply converted);
* hidden files (names starting with ``.``, e.g. ``.BAD.csv``) are not read, and reported as skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.core.errors import DataError
from tuner.core.names import did_you_mean
from tuner.core.symbols import SYMBOL_RULE, suggest, symbol_problem

log = logging.getLogger(__name__)

BAR_COLUMNS = ("open", "high", "low", "close", "volume", "amount")
"""Feature order of every bar array in the package (Kronos's input order)."""

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")

_ALIASES = {
    "timestamp": ("timestamp", "date", "datetime", "time", "ts", "date_time", "timestamp_utc"),
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price", "last"),
    "adj_close": ("adj_close", "adjclose", "adjusted_close", "adj_close_price"),
    "volume": ("volume", "vol", "v"),
    "amount": ("amount", "turnover", "quote_volume"),
    "symbol": ("symbol", "ticker", "instrument"),
}

JUMP_RATIO = 1.8
"""A one-bar close ratio above this (or below its inverse) is reported as implausible: a 2:1 split
gives 0.5. Also reported: moves beyond ``JUMP_SIGMAS`` robust standard deviations."""
JUMP_SIGMAS = 15.0

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
"""Prices, volumes and amounts must lie within float32's range: the models compute in float32,
where larger values become infinite and smaller positive ones zero."""


class NotBarData(DataError):
    """The file is not bar data (e.g. a summary table); it is skipped, not tuned."""


@dataclass(frozen=True, eq=False)
class Locations:
    """Where each bar sits in its file (``line 12``, ``row 3``), kept as numbers: a string per
    bar took as much memory as the bars themselves (10,000 symbols are loaded at once)."""

    unit: str
    numbers: np.ndarray

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index: int) -> str:
        return f"{self.unit} {int(self.numbers[index])}"

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (Locations, tuple)) else NotImplemented


@dataclass(frozen=True)
class Bars:
    """One symbol's bars, sorted by time with unique timestamps.

    Attributes:
        symbol: the symbol (file stem, or the value of the symbol column).
        source: the file the bars came from.
        frame: columns ``timestamp`` (naive UTC ``datetime64[ns]``) and :data:`BAR_COLUMNS`
            (prices in the file's currency units, volume in shares/contracts; ``amount`` is the
            traded value, filled as ``volume × mean(OHLC)`` when absent, as Kronos expects).
        notes: what was assumed or repaired while loading (adjusted close used, volume missing...).
        locations: for each bar, where it sits in ``source`` (e.g. ``line 12``), for messages.
    """

    symbol: str
    source: Path
    frame: pd.DataFrame
    notes: tuple[str, ...] = ()
    locations: Locations | tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def timestamps(self) -> np.ndarray:
        """``datetime64[ns]`` array of shape (N,)."""
        return self.frame["timestamp"].to_numpy(dtype="datetime64[ns]")

    @property
    def values(self) -> np.ndarray:
        """float64 array of shape (N, 6) in :data:`BAR_COLUMNS` order."""
        return self.frame.loc[:, list(BAR_COLUMNS)].to_numpy(dtype=np.float64)

    @property
    def close(self) -> np.ndarray:
        return self.frame["close"].to_numpy(dtype=np.float64)

    def where(self, index: int) -> str:
        """``'data/SPY.csv line 1043'`` for bar ``index``."""
        loc = self.locations[index] if self.locations else f"bar {index}"
        return f"{self.source} {loc}"


@dataclass
class Dataset:
    """What a data source yielded: usable symbols, symbols with errors, skipped files."""

    bars: dict[str, Bars] = field(default_factory=dict)
    errors: dict[str, DataError] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.bars)

    def get(self, symbol: str) -> Bars:
        """The bars of ``symbol``; raises DataError with the reason if it failed or is unknown."""
        if symbol in self.bars:
            return self.bars[symbol]
        if symbol in self.errors:
            raise self.errors[symbol]
        known = ", ".join(self.symbols) or "none"
        raise DataError(f"symbol {symbol!r} not in the data (symbols: {known})")


def bundled_data_path() -> Path:
    """The sample data shipped inside the package (see ``tuner/sample_data/README.md``)."""
    return Path(__file__).resolve().parents[1] / "sample_data"


def load_dataset(path: str | Path, symbols: Iterable[str] | None = None) -> Dataset:
    """Load every symbol under ``path`` (a folder or one file), collecting per-symbol errors.

    ``symbols`` restricts which symbols are loaded (case-sensitive, as in the data); asking for
    a symbol that is not there is recorded as an error for that symbol.

    The three steps (:func:`list_sources`, :func:`read_source` per file, :func:`settle_sources`)
    are public so that an engine can read the files elsewhere, in parallel, and settle here.
    """
    listing = list_sources(path, symbols)
    reads, bars = [], {}
    for file in listing.files:
        read, found = read_source(file)
        reads.append(read)
        bars.update((b.symbol, b) for b in found if listing.wants(b.symbol))
    settled = settle_sources(listing, reads)
    return Dataset({s: bars[s] for s in settled.symbols}, settled.errors, settled.skipped)


@dataclass
class SourceListing:
    """A data source's files, before any is read (:func:`list_sources`).

    Attributes:
        path: the folder or file given.
        files: the files to read, in name order (files that cannot hold a wanted symbol are left out).
        wanted: the symbols asked for; None for all.
        names: the files' symbols by name (what a missing symbol's error suggests from).
        errors, skipped: what listing the folder found (unreadable entries, hidden files).
    """

    path: Path
    files: list[Path]
    wanted: frozenset[str] | None
    names: set[str]
    errors: dict[str, DataError] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def wants(self, symbol: str) -> bool:
        return self.wanted is None or symbol in self.wanted


@dataclass
class SourceRead:
    """What reading one file gave, less its bars (:func:`read_source`): small enough to send
    back from wherever the file was read.

    Attributes:
        file: the file.
        found: every symbol read without error (wanted or not), in the file's order.
        failed: symbol → its error.
        not_bar_data: why the file is not bar data (it is skipped), or None.
        error: the file's own error (unreadable, no close column), or None.
    """

    file: Path
    found: list[str] = field(default_factory=list)
    failed: dict[str, DataError] = field(default_factory=dict)
    not_bar_data: str | None = None
    error: DataError | None = None


@dataclass
class SettledSources:
    """The usable symbols of a source once every file is read, and what was not usable."""

    symbols: list[str]
    errors: dict[str, DataError]
    skipped: list[tuple[Path, str]]


def list_sources(path: str | Path, symbols: Iterable[str] | None = None) -> SourceListing:
    """The files of ``path`` to read for ``symbols`` (None: all), and the folder's own errors."""
    path = Path(path).expanduser()
    wanted = frozenset(symbols) if symbols is not None else None
    listing = SourceListing(path, [], wanted, set())
    if path.is_dir():
        named = sorted(p for p in path.iterdir() if _is_data_file(p))
        entries = [p for p in named if not p.name.startswith(".")]
        for hidden in (p for p in named if p.name.startswith(".")):
            why = "hidden file (its name starts with '.'), not read; rename it to use it"
            log.warning("skipped %s: %s", hidden, why)
            listing.skipped.append((hidden, why))
        if not entries:
            raise DataError(f"{path}: no {', '.join(SUFFIXES)} files in this folder"
                            + (f" (only hidden ones: {', '.join(p.name for p in named)})" if named else ""))
        files = []
        for entry in entries:
            if any(ord(c) < 32 or ord(c) == 127 for c in entry.name):  # shown escaped, never read
                listing.errors[repr(entry.name)] = DataError(
                    f"{path}/{entry.name!r}: the file name holds a control character (newline, tab...); "
                    "rename the file")
                continue
            why = _unreadable(entry)
            if why is None:
                files.append(entry)
            elif wanted is None or _stem(entry) in wanted:
                # keyed by the entry's name: it is not a symbol and must not hide one
                listing.errors[entry.name] = DataError(f"{entry}: unreadable: {why}")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or folder")
    listing.names = {_stem(f) for f in files}
    listing.files = [f for f in files if len(files) == 1 or wanted is None or _may_hold(f, wanted)]
    return listing


def read_source(file: Path) -> tuple[SourceRead, list[Bars]]:
    """Read one data file: what it gave, and the bars of the symbols read without error."""
    try:
        found, failed = _load_file(file)
    except NotBarData as e:
        return SourceRead(file, not_bar_data=str(e)), []
    except DataError as e:
        return SourceRead(file, error=e), []
    return SourceRead(file, [b.symbol for b in found], failed), found


def settle_sources(listing: SourceListing, reads: Iterable[SourceRead]) -> SettledSources:
    """Which symbols are usable once every file of ``listing`` is read (``reads``, in its file
    order): a symbol in two sources, two symbols that differ only in letter case, and a wanted
    symbol found nowhere are errors."""
    path, wanted = listing.path, listing.wanted
    errors, skipped, names = dict(listing.errors), list(listing.skipped), set(listing.names)
    usable: dict[str, None] = {}  # in the order first read
    sources: dict[str, list[Path]] = {}
    for read in reads:
        file = read.file
        if read.not_bar_data is not None:
            log.warning("skipped %s: not bar data: %s", file, read.not_bar_data)
            skipped.append((file, f"not bar data: {read.not_bar_data}"))
            continue
        if read.error is not None:
            key = _symbol_key(_stem(file))
            errors[key] = read.error
            sources.setdefault(key, []).append(file)
            continue
        names.update(read.found)
        for symbol in read.found:
            if wanted is None or symbol in wanted:
                usable[symbol] = None
                sources.setdefault(symbol, []).append(file)
        for symbol, error in read.failed.items():
            if wanted is None or symbol in wanted:
                errors[symbol] = error
                if not symbol.endswith(_NO_SYMBOL):
                    sources.setdefault(symbol, []).append(file)
    for symbol, files_of in sources.items():
        if len(files_of) > 1:  # whichever came last would silently win
            usable.pop(symbol, None)
            errors[symbol] = DataError(
                f"symbol {symbol!r} is in {len(files_of)} sources: {', '.join(map(str, files_of))}; "
                "keep it in one")
    by_case: dict[str, list[str]] = {}
    for symbol in usable:
        by_case.setdefault(symbol.casefold(), []).append(symbol)
    for clash in (sorted(c) for c in by_case.values() if len(c) > 1):
        # Result files are named by symbol: on a case-insensitive file system (macOS, Windows)
        # one symbol's files would overwrite the other's.
        for symbol in clash:
            usable.pop(symbol)
            errors[symbol] = DataError(
                f"symbols {' and '.join(map(repr, clash))} differ only in letter case "
                f"({', '.join(str(f) for c in clash for f in sources.get(c, []))}): their result files "
                "would overwrite each other on a case-insensitive file system; rename one")
    for missing in sorted((wanted or set()) - set(usable) - set(errors)):
        errors[missing] = DataError(f"symbol {missing!r} not found in {path}{did_you_mean(missing, names)}")
    if errors:
        log.warning("%d symbol(s) not usable: %s", len(errors), ", ".join(sorted(errors)))
    return SettledSources(list(usable), errors, skipped)


def load_bars(file: str | Path, symbol: str | None = None) -> Bars:
    """Load one single-symbol file. Raises :class:`DataError` (or :class:`NotBarData`)."""
    found, failed = _load_file(Path(file))
    if symbol is not None and symbol in failed:
        raise failed[symbol]
    if failed and symbol is None:
        raise next(iter(failed.values()))
    if symbol is not None:
        found = [b for b in found if b.symbol == symbol]
    if len(found) != 1:
        names = ", ".join(b.symbol for b in found)
        raise DataError(f"{file}: expected one symbol, found {len(found)} ({names})")
    return found[0]


def _is_data_file(path: Path) -> bool:
    """Named like a data file (hidden ones too: they are reported as skipped, not ignored)."""
    return path.name.lower().endswith(SUFFIXES)


def _symbol_key(symbol: str) -> str:
    """The key of a symbol's entry in :class:`Dataset`: the symbol itself when it is valid, else
    its ``repr`` (quoted, escapes shown), which no valid symbol can equal."""
    return symbol if symbol_problem(symbol) is None else repr(symbol)


def _bad_symbol(symbol: str, place: str, how: str) -> DataError:
    """The error for a symbol that breaks :data:`SYMBOL_RULE`, at ``place`` (file and line)."""
    hint = suggest(symbol)
    return DataError(f"{place}: {how} {symbol!r} is not a valid symbol: it {symbol_problem(symbol)} "
                     f"({SYMBOL_RULE}); it would become a file name"
                     + (f"; rename it, e.g. {hint!r}" if hint else "; rename it"))


def _unreadable(entry: Path) -> str | None:
    """Why a folder entry named like a data file is not a file that can be read, or None."""
    if entry.is_symlink():
        try:
            entry.resolve(strict=True)
        except FileNotFoundError:
            return f"dangling symbolic link to {os.readlink(entry)}"
        except (RuntimeError, OSError) as e:  # RuntimeError: Python < 3.13 on a loop
            return "symbolic link loop" if "loop" in str(e).lower() else str(e)
    if entry.is_dir():
        return "a directory, not a file"
    if not entry.is_file():
        return "not a regular file"
    return None


def _may_hold(file: Path, wanted: set[str]) -> bool:
    """Whether ``file`` may hold a wanted symbol: its stem is one, or it has a symbol column
    (read from the header alone), so duplicates in other files are still found."""
    if _stem(file) in wanted:
        return True
    try:
        if file.name.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            names = pq.read_schema(file).names
        else:
            text = _read_text(file)
            names = text.lstrip().splitlines()[0].split(_sniff_delimiter(file, text)) if text.strip() else []
    except Exception:  # an unreadable file that is not asked for is not this call's concern
        return False
    return any(_normalise(n) in _ALIASES["symbol"] for n in names)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


# --------------------------------------------------------------------------------------- reading


_NO_SYMBOL = " (rows without a symbol)"


def _load_file(file: Path) -> tuple[list[Bars], dict[str, DataError]]:
    """The symbols of one file, and the errors of those that failed. A file-level problem
    (unreadable, no close column) raises; in a file of many symbols, one bad symbol loses only
    itself (rows with an empty symbol are reported under "<file name> (rows without a symbol)")."""
    raw, locate = _read_table(file)
    columns = _map_columns(file, raw)
    if "symbol" not in columns:
        if symbol_problem(_stem(file)) is not None:
            raise _bad_symbol(_stem(file), str(file), "the file name gives the symbol")
        return [_to_bars(_stem(file), file, raw, columns, locate)], {}
    out, failed = [], {}
    symbols = raw[columns["symbol"]].astype("string")
    for symbol, part in raw.groupby(symbols, sort=True, dropna=False):
        if pd.isna(symbol) or not str(symbol).strip():
            # keyed so it cannot clash with a real symbol of the same name as the file
            failed[f"{_stem(file)}{_NO_SYMBOL}"] = DataError(
                f"{file} {locate(int(part.index[0]))}: empty symbol")
            continue
        symbol = str(symbol).strip()
        if symbol_problem(symbol) is not None:
            failed[repr(symbol)] = _bad_symbol(symbol, f"{file} {locate(int(part.index[0]))}",
                                               f"column {columns['symbol']!r} holds")
            continue
        try:
            out.append(_to_bars(symbol, file, part, columns, locate))
        except DataError as e:
            failed[symbol] = e
    if not out and not failed:
        raise DataError(f"{file}: the file has a header but no rows")
    return out, failed


def _read_table(file: Path):
    """Read a file into strings/values; also return a :class:`_Locator` naming a row's location."""
    name = file.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            frame = pd.read_parquet(file)
        except Exception as e:  # pyarrow raises many types for a corrupt file
            raise DataError(f"{file}: not a readable Parquet file: {e}") from e
        frame = frame.reset_index(drop=not _has_time_index(frame))
        return frame, _Locator("row", lambda i: i + 1)
    text = _read_text(file)
    if not text.strip():
        raise DataError(f"{file}: empty file")
    delimiter = _sniff_delimiter(file, text)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip())
    try:
        # Blank lines are kept as rows and dropped below, so each row's index stays its line.
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                            skipinitialspace=True, skip_blank_lines=False, header=header)
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{file}: cannot parse as CSV: {e}") from e
    # A row is blank when every field is empty; only a line of nothing but spaces, delimiters
    # and quotes can make one (a field's other characters survive strip()), so a file without
    # such a line skips the per-column check (a third of reading a clean file).
    blank_ish = re.compile(rf'[\s{re.escape(delimiter)}"]*')
    if any(blank_ish.fullmatch(line) for line in lines[header + 1:]):
        blank = frame.apply(lambda column: column.fillna("").str.strip() == "").all(axis=1)
        frame = frame[~blank.to_numpy()]
    else:
        blank = np.zeros(len(frame), dtype=bool)
    starts = _record_lines(text, delimiter) if '"' in text else None
    if starts is not None and len(starts) == header + 1 + len(blank):
        # A quoted field held a newline: count lines as an editor shows them, record by record.
        return frame, _Locator("line", lambda i: starts[header + 1 + i])
    # CSV line numbers as an editor shows them: the header's line, then one per row.
    return frame, _Locator("line", lambda i: i + header + 2)


def _record_lines(text: str, delimiter: str) -> list[int] | None:
    """The line (1-based) each CSV record starts on, blank lines included as records; None
    when the csv module cannot read the text (pandas's error is the one reported)."""
    starts, line = [], 1
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    try:
        for _ in reader:
            starts.append(line)
            line = reader.line_num + 1
    except csv.Error:
        return None
    return starts


def _has_time_index(frame: pd.DataFrame) -> bool:
    return isinstance(frame.index, pd.DatetimeIndex)


def _read_text(file: Path) -> str:
    try:
        data = file.read_bytes()
    except OSError as e:
        raise DataError(f"{file}: cannot read: {e}") from e
    if file.name.lower().endswith(".gz"):
        import gzip

        try:
            data = gzip.decompress(data)
        except OSError as e:
            raise DataError(f"{file}: not a valid gzip file: {e}") from e
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    head = data[:4096]
    if b"\x00" in head:  # valid UTF-8, so it would be misread as text with NULs in it
        odd, even = head[1::2].count(0) / max(1, len(head[1::2])), head[0::2].count(0) / max(1, len(head[0::2]))
        if max(odd, even) > 0.9:
            order = "little-endian" if odd > even else "big-endian"
            raise DataError(f"{file}: looks like UTF-16 ({order}) text without a byte-order mark; "
                            "save it as UTF-8 (or UTF-16 with a byte-order mark)")
        raise DataError(f"{file}: binary data (NUL bytes), not CSV text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{file} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from e


def _sniff_delimiter(file: Path, text: str) -> str:
    header = text.lstrip().splitlines()[0]
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        if len(header.split()) > 1:
            raise DataError(
                f"{file} line 1: header {header[:60]!r} is not comma-separated "
                "(looks whitespace-delimited); use ',' ';' tab or '|' between columns"
            )
        return ","
    if best != ",":
        log.info("%s: columns separated by %r", file, best)
    return best


def _normalise(name: object) -> str:
    return re.sub(r"[\s\-\.]+", "_", str(name).strip().lower()).strip("_")


@dataclass(frozen=True)
class _Again:
    """A header name given a second time (pandas read it as ``name.1``)."""

    name: str


def _map_columns(file: Path, frame: pd.DataFrame) -> dict[str, str]:
    """Canonical name → the file's column name. Two columns that give the same field (``close``
    and ``Close``, or a header naming ``Close`` twice, which pandas reads as ``Close`` and
    ``Close.1``) are an error naming both: whichever came first would silently win."""
    by_norm: dict[str, list] = {}
    for col in frame.columns:
        by_norm.setdefault(_normalise(col), []).append(col)
    for col in frame.columns:  # pandas renames a repeated header name "X" to "X.1", "X.2"...
        base = re.fullmatch(r"(.+)\.\d+", str(col))
        if base and base.group(1) in frame.columns and _normalise(base.group(1)) != _normalise(col):
            by_norm[_normalise(base.group(1))].append(_Again(base.group(1)))
    found = {}
    for canonical, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in by_norm:
                same = by_norm[alias]
                if len(same) > 1:
                    shown = " and ".join(f"{c.name!r} again" if isinstance(c, _Again) else repr(str(c))
                                         for c in same)
                    raise DataError(f"{file}: columns {shown} both give the {canonical.replace('_', ' ')} "
                                    "(column names are matched case-insensitively); keep one")
                found[canonical] = same[0]
                break
    if "close" not in found and "adj_close" not in found:
        shown = ", ".join(map(str, list(frame.columns)[:8]))
        raise NotBarData(f"no close column (columns: {shown})")
    if "timestamp" not in found:
        raise DataError(
            f"{file}: no timestamp column; expected one of {', '.join(_ALIASES['timestamp'])}"
        )
    return found


# ------------------------------------------------------------------------------------ validation


def _to_bars(symbol: str, file: Path, part: pd.DataFrame, columns: dict[str, str], locate) -> Bars:
    if part.empty:
        raise DataError(f"{file}: the file has a header but no rows")
    rows = part.index.to_numpy()
    notes: list[str] = []

    where = _Where(file, rows, locate)

    times = _parse_times(part[columns["timestamp"]], where, notes)
    order = _check_order(times, where)
    if order == "descending":
        notes.append("rows were newest-first; reversed")
        part, times, rows = part.iloc[::-1], times[::-1], rows[::-1]
        where = _Where(file, rows, locate)

    close_col = columns.get("adj_close", columns.get("close"))
    close = _parse_prices(part[close_col], "close", where)
    prices = {"close": close}
    for name in ("open", "high", "low"):
        if name in columns:
            prices[name] = _parse_prices(part[columns[name]], name, where)
        else:
            prices[name] = close.copy()
            notes.append(f"no {name} column; filled with close")
    factor = None
    if "adj_close" in columns and "close" in columns:
        raw_close = _parse_prices(part[columns["close"]], "close", where)
        factor = close / raw_close
        for name in ("open", "high", "low"):
            if name in columns:
                prices[name] = prices[name] * factor
        notes.append(f"used {columns['adj_close']!r} as close; open/high/low scaled to match"
                     + (", volume scaled inversely (traded value unchanged)" if "volume" in columns else ""))
    if factor is not None:
        for name in ("open", "high", "low"):
            _check_range(prices[name], name, where, "after scaling by the adjusted close")
    bad = np.flatnonzero(prices["high"] < prices["low"] * (1 - 1e-9))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where(i)}: high {prices['high'][i]:g} < low {prices['low'][i]:g}")
    outside = _outside_bar(prices, columns, where)
    if outside:
        _warn(notes, outside)
    if close.size > 1 and (prices["close"] == prices["close"][0]).all():
        _warn(notes, f"{file}: the close is {prices['close'][0]:g} on all {close.size} bars: a flat series "
                     "(every return is 0, so the naive baseline is exact and no forecast can beat it)")
    mixed = _mixed_frequencies(times, where)
    if mixed:
        _warn(notes, mixed)

    volume = _parse_optional(part, columns, "volume", where, notes)
    if factor is not None:
        volume = volume / factor  # a 2:1 split halves past prices and doubles past share counts
        _check_range(volume, "volume", where, "after scaling by the adjusted close")
    amount = _parse_optional(part, columns, "amount", where, notes)
    if "amount" not in columns:
        amount = volume * (prices["open"] + prices["high"] + prices["low"] + prices["close"]) / 4
        _check_range(amount, "amount", where, "(volume × mean price)")
    frame = pd.DataFrame(
        {"timestamp": times, **{k: prices[k] for k in ("open", "high", "low", "close")},
         "volume": volume, "amount": amount}
    )
    locations = Locations(locate.unit, np.array([locate.number(int(r)) for r in rows], dtype=np.int64))
    return Bars(symbol=symbol, source=file, frame=frame, notes=tuple(notes), locations=locations)


def _outside_bar(prices: dict[str, np.ndarray], columns: dict[str, str], where) -> str | None:
    """A warning naming the first bar whose open or close lies outside its [low, high], and how
    many do (only against columns the file has; filled ones equal the close)."""
    tolerance = 1e-9  # relative, for prices rescaled by an adjusted close
    found: list[tuple[int, str]] = []
    for name in ("open", "close"):
        if name not in columns and not (name == "close" and "adj_close" in columns):
            continue
        value = prices[name]
        if "high" in columns:
            for i in np.flatnonzero(value > prices["high"] * (1 + tolerance))[:1]:
                found.append((int(i), f"{name} {value[i]:g} above high {prices['high'][i]:g}"))
        if "low" in columns:
            for i in np.flatnonzero(value < prices["low"] * (1 - tolerance))[:1]:
                found.append((int(i), f"{name} {value[i]:g} below low {prices['low'][i]:g}"))
    if not found:
        return None
    count = 0
    for name in ("open", "close"):
        if name in columns or (name == "close" and "adj_close" in columns):
            high = prices["high"] if "high" in columns else np.inf
            low = prices["low"] if "low" in columns else 0.0
            count += int(((prices[name] > high * (1 + tolerance)) | (prices[name] < low * (1 - tolerance))).sum())
    i, what = min(found)
    return (f"{where(i)}: {what}; {count} open/close value(s) outside their bar's [low, high] "
            "in this file, kept as is")


MIXED_STEP_RATIO = 4.0
"""Bars are called of mixed frequencies when the bar step in one part of a file is this many
times the step in another (daily and hourly: 24)."""
_STEP_WINDOW = 9
"""Steps per rolling minimum, the bar step around a bar: gaps (weekends, nights, holidays) only
add long steps, so they never move it; nine steps in a row are never all gaps."""


def _mixed_frequencies(times: np.ndarray, where) -> str | None:
    """A warning when one file holds bars of two frequencies (e.g. daily, then hourly), naming a
    line of each; None otherwise. The bar step around each bar is the shortest of the
    ``_STEP_WINDOW`` steps around it; files too short for that compare each step with the median."""
    steps = np.diff(times.astype("datetime64[ns]").astype(np.int64)).astype(np.float64)
    if steps.size < 2:
        return None
    median = float(np.median(steps))
    if steps.size >= _STEP_WINDOW:
        rolling = pd.Series(steps).rolling(_STEP_WINDOW, center=True).min().to_numpy()
        low, high = int(np.nanargmin(rolling)), int(np.nanargmax(rolling))
        if rolling[high] >= MIXED_STEP_RATIO * rolling[low]:
            # a bar amid the coarse ones (its window holds no shorter step), and the first bar that
            # follows a step of the fine size
            fine = int(np.flatnonzero(steps <= rolling[low])[0])
            (a, fa), (b, fb) = sorted([(high + 1, rolling[high]), (fine + 1, rolling[low])])
            return (f"{where(a)}: bars come every {_human(np.timedelta64(int(fa), 'ns'))} here but every "
                    f"{_human(np.timedelta64(int(fb), 'ns'))} at {where.row(b)}: the file mixes bar "
                    "frequencies (daily and hourly?); keep one frequency per file")
        return None
    short = np.flatnonzero(steps < median / MIXED_STEP_RATIO)
    if short.size:
        i = int(short[0])
        return (f"{where(i + 1)}: {_human(np.timedelta64(int(steps[i]), 'ns'))} after the bar before it, "
                f"though bars come every {_human(np.timedelta64(int(median), 'ns'))}; {short.size} bar(s) "
                "that close: the file mixes bar frequencies (daily and hourly?); keep one frequency per file")
    return None


def _warn(notes: list[str], message: str) -> None:
    """A finding about the data worth a warning: logged now (``tuner run`` shows it) and kept in
    the bars' notes (``tuner data check`` shows it)."""
    log.warning("%s", message)
    notes.append(message)


@dataclass(frozen=True)
class _Locator:
    """Where a row of a file's table sits: ``unit`` (``line``, ``row``) and its number."""

    unit: str
    number: Callable[[int], int]

    def __call__(self, row: int) -> str:
        return f"{self.unit} {self.number(row)}"


class _Where:
    """Names the place of the bar at a position of the (possibly reordered) part of a file."""

    def __init__(self, file: Path, rows: np.ndarray, locate) -> None:
        self.file, self.rows, self.locate = file, rows, locate

    def row(self, pos: int) -> str:
        return self.locate(int(self.rows[pos]))

    def __call__(self, pos: int) -> str:
        return f"{self.file} {self.row(pos)}"


_SLASH_DATE = r"(\d{1,2})[/.](\d{1,2})[/.](\d{2}|\d{4})(?:[ T].*)?"
_AN_OFFSET = r"\d(Z|[+-]\d{2}:?\d{2})"
_OFFSET = r".*" + _AN_OFFSET  # the last one in a timestamp


def _parse_times(column: pd.Series, where, notes: list[str]) -> np.ndarray:
    text = column.astype("string").str.strip()
    empty = np.flatnonzero((text.isna() | (text == "")).to_numpy())
    if empty.size:
        raise DataError(f"{where(int(empty[0]))}: missing timestamp")
    # The first row decides most files at once: all() fails at it, and it costs no pass over the rows.
    epoch = r"\d{9,19}(\.\d*)?"
    if pd.api.types.is_numeric_dtype(column) or (
            re.fullmatch(epoch, str(text.iloc[0])) and text.str.fullmatch(epoch).all()):
        numbers = pd.to_numeric(text).to_numpy(dtype=np.float64)  # unix epoch, unit by magnitude
        parsed = pd.to_datetime(pd.Series(numbers), unit=_epoch_unit(numbers), utc=True, errors="coerce")
    else:
        dayfirst = _day_first(text, where, notes)
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed", dayfirst=dayfirst)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where(i)}: cannot parse timestamp {str(column.iloc[i])!r}")
    # pandas parses to microseconds (years 1..9999); nanoseconds, what the package computes in,
    # reach 1677..2262 only, and the conversion would wrap a year 2300 round to 1715 silently.
    outside = np.flatnonzero(((parsed < _EARLIEST) | (parsed > _LATEST)).to_numpy())
    if outside.size:
        i = int(outside[0])
        raise DataError(f"{where(i)}: timestamp {str(column.iloc[i])!r} is outside the supported range "
                        f"{_EARLIEST.date()} .. {_LATEST.date()} (pandas' nanosecond timestamps)")
    if not pd.api.types.is_numeric_dtype(column):
        _check_offsets(text, parsed, where, notes)
    return parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")


_EARLIEST = pd.Timestamp.min.tz_localize("UTC").ceil("D")
_LATEST = pd.Timestamp.max.tz_localize("UTC").floor("D")


def _day_first(text: pd.Series, where, notes: list[str]) -> bool:
    """Whether ``nn/nn/yyyy`` dates are day-first: some first field above 12 says so (pandas
    would read each date by itself, mixing the two orders); both kinds in one file is an error."""
    if re.search(_SLASH_DATE, str(text.iloc[0])) is None:  # not all rows match: the answer below, at once
        return False
    parts = text.str.extract(_SLASH_DATE)
    if parts[0].isna().any():
        return False
    first, second = parts[0].astype(int).to_numpy(), parts[1].astype(int).to_numpy()
    day_first, month_first = np.flatnonzero(first > 12), np.flatnonzero(second > 12)
    if day_first.size and month_first.size:
        i, j = int(day_first[0]), int(month_first[0])
        raise DataError(f"{where(i)}: date {text.iloc[i]!r} is day/month but {where.row(j)} has "
                        f"{text.iloc[j]!r}, month/day; use one date order (ISO yyyy-mm-dd is unambiguous)")
    if day_first.size:
        i = int(day_first[0])
        _warn(notes, f"{where(i)}: date {text.iloc[i]!r} is day/month/year; the file's dates read that way")
    return bool(day_first.size)


def _check_offsets(text: pd.Series, parsed: pd.Series, where, notes: list[str]) -> None:
    """Note a file whose timestamps carry more than one UTC offset, or offsets and none: they are
    all converted to UTC, which is right for a daylight-saving change but hides a file stitched
    together. Offsets that some time zone's rules give at every one of the file's instants
    (``+01:00`` in winter, ``+02:00`` in summer) are a DST change and get no warning."""
    # One search over all the text finds whether any row has an offset (the pattern cannot span
    # the newlines); most files have none, and need no pass row by row.
    if re.search(_AN_OFFSET, "\n".join(text.astype(str))) is None:
        return
    shown = text.str.extract(_OFFSET)[0].fillna("no offset")
    offsets = shown.str.replace(":", "")  # +01:00 and +0100 are the same offset
    kinds = pd.unique(offsets)
    if len(kinds) > 1 and "no offset" not in kinds and _follows_a_time_zone(offsets, parsed):
        return
    if len(kinds) > 1:
        first = int(np.flatnonzero((offsets == kinds[1]).to_numpy())[0])
        naive = ", those without one taken as UTC" if "no offset" in kinds else ""
        _warn(notes, f"{where(0)}: timestamps mix UTC offsets ({shown.iloc[0]} here, {shown.iloc[first]} "
                     f"from {where.row(first)}; {len(kinds)} different); all converted to UTC{naive}")


def _offset_minutes(offset: str) -> int:
    """``"Z"`` → 0, ``"-0430"`` → -270."""
    if offset == "Z":
        return 0
    sign = -1 if offset[0] == "-" else 1
    return sign * (int(offset[1:3]) * 60 + int(offset[3:5]))


def _follows_a_time_zone(offsets: pd.Series, parsed: pd.Series) -> bool:
    """Whether one IANA time zone gives, at every instant of ``parsed``, the offset written there.

    Zones are first matched at the two ends of each run of one offset (a few instants per DST
    change), then the survivors on every row until one fits."""
    import zoneinfo

    minutes = offsets.map(_offset_minutes).to_numpy()
    utc = pd.DatetimeIndex(parsed)
    edges = np.unique(np.concatenate([[0, len(minutes) - 1], np.flatnonzero(np.diff(minutes)),
                                      np.flatnonzero(np.diff(minutes)) + 1]))
    instants = [utc[i].to_pydatetime() for i in edges]
    wanted = [int(minutes[i]) for i in edges]
    for name in sorted(zoneinfo.available_timezones()):
        zone = zoneinfo.ZoneInfo(name)
        if any(t.astimezone(zone).utcoffset().total_seconds() != 60 * m for t, m in zip(instants, wanted, strict=True)):
            continue
        local = utc.tz_convert(zone)
        given = (local.tz_localize(None) - utc.tz_localize(None)) / pd.Timedelta(minutes=1)
        if (np.asarray(given) == minutes).all():
            return True
    return False


def _epoch_unit(values: np.ndarray) -> str:
    biggest = np.nanmax(np.abs(values)) if values.size else 0
    return "ns" if biggest > 1e17 else "us" if biggest > 1e14 else "ms" if biggest > 1e11 else "s"


def _check_order(times: np.ndarray, where) -> str:
    steps = np.diff(times.astype(np.int64))
    dup = np.flatnonzero(steps == 0)
    if dup.size:
        i = int(dup[0]) + 1
        raise DataError(f"{where(i)}: timestamp {pd.Timestamp(times[i])} repeats {where.row(i - 1)}")
    if steps.size and (steps < 0).all() and steps.size > 1:
        return "descending"
    back = np.flatnonzero(steps < 0)
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{where(i)}: timestamp {pd.Timestamp(times[i])} is earlier than the row before it "
            f"({pd.Timestamp(times[i - 1])}); rows must be sorted by time"
        )
    return "ascending"


def _parse_prices(column: pd.Series, name: str, where) -> np.ndarray:
    values = _numbers(column, name, where)
    nan = np.flatnonzero(np.isnan(values))
    if nan.size:
        i = int(nan[0])
        raw = column.iloc[i]
        if isinstance(raw, str) and raw.strip():  # a literal NaN, null, n/a... is not an empty cell
            raise DataError(f"{where(i)}: {name} {raw.strip()!r} is NaN (not a number), not a price")
        if pd.api.types.is_float_dtype(column):  # Parquet: a null and a NaN both read as NaN
            raise DataError(f"{where(i)}: {name} is NaN or missing, not a price")
        raise DataError(f"{where(i)}: empty {name}")
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where(i)}: {name} {values[i]:g} is not a positive price")
    if not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"{where(i)}: {name} {values[i]} is not finite")
    _check_range(values, name, where)
    tiny = np.flatnonzero(values < FLOAT32_TINY)
    if tiny.size:
        i = int(tiny[0])
        raise DataError(f"{where(i)}: {name} {values[i]:g} is below float32's smallest normal "
                        f"{FLOAT32_TINY:.3g} (the models compute in float32); rescale the prices")
    return values


def _check_range(values: np.ndarray, name: str, where, how: str = "") -> None:
    big = np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))
    if big.size:
        i = int(big[0])
        raise DataError(f"{where(i)}: {name} {values[i]:g}{' ' + how if how else ''} is beyond float32's "
                        f"range (max {FLOAT32_MAX:.3g}; the models compute in float32); rescale the values")


def _numbers(column: pd.Series, name: str, where) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    try:  # a clean column (every cell a number) needs none of the checks below
        values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isnan(values).any():
            return values
    except (ValueError, TypeError, OverflowError):
        pass
    text = column.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    junk = np.flatnonzero(np.isnan(values) & (text.fillna("") != "").to_numpy()
                          & ~text.str.lower().isin(["nan", "null", "none", "na", "n/a"]).fillna(False).to_numpy())
    if junk.size:
        i = int(junk[0])
        raise DataError(f"{where(i)}: {name} {str(column.iloc[i])!r} is not a number")
    return values


def _parse_optional(part, columns, name, where, notes) -> np.ndarray:
    if name not in columns:
        if name == "volume":
            notes.append("no volume column; volume set to 0")
        return np.zeros(len(part)) if name == "volume" else None
    values = _numbers(part[columns[name]], name, where)
    missing = np.isnan(values)
    if missing.any():
        notes.append(f"{int(missing.sum())} empty {name} value(s) set to 0")
        values = np.where(missing, 0.0, values)
    neg = np.flatnonzero(values < 0)
    if neg.size:
        i = int(neg[0])
        raise DataError(f"{where(i)}: negative {name} {values[i]:g}")
    _check_range(values, name, where)
    return values


# ------------------------------------------------------------------------------------ the report


@dataclass(frozen=True)
class SymbolReport:
    """``tuner data check`` findings for one symbol (or one file that failed)."""

    symbol: str
    source: str
    rows: int = 0
    start: str | None = None
    end: str | None = None
    frequency: str | None = None
    gaps: int = 0
    largest_gap: str | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**self.__dict__, "problems": list(self.problems), "warnings": list(self.warnings),
                "usable": self.usable}


def describe(bars: Bars, min_bars: int | None = None, need: str = "") -> SymbolReport:
    """Rows, range, frequency, gaps and problems of one symbol's bars."""
    times = bars.timestamps
    step = _median_step(times)
    steps = np.diff(times).astype("timedelta64[ns]")
    gap_mask = steps > 5 * step if step is not None else np.zeros(0, bool)
    problems = []
    if min_bars is not None and len(bars) < min_bars:
        problems.append(f"too few bars: has {len(bars)}, needs {min_bars} ({need})")
    return SymbolReport(
        symbol=bars.symbol,
        source=str(bars.source),
        rows=len(bars),
        start=str(pd.Timestamp(times[0])),
        end=str(pd.Timestamp(times[-1])),
        frequency=_human(step) if step is not None else None,
        gaps=int(gap_mask.sum()),
        largest_gap=_human(steps[gap_mask].max()) if gap_mask.any() else None,
        problems=tuple(problems),
        warnings=tuple(bars.notes) + tuple(find_jumps(bars)),
    )


def find_jumps(bars: Bars, limit: int = 5) -> list[str]:
    """Implausible one-bar close moves (e.g. an unadjusted split), as messages naming the bar."""
    close = bars.close
    if close.size < 3:
        return []
    ratio = close[1:] / close[:-1]
    logret = np.log(ratio)
    mad = np.median(np.abs(logret - np.median(logret)))
    sigma = 1.4826 * mad if mad > 0 else np.inf
    flagged = np.flatnonzero((ratio > JUMP_RATIO) | (ratio < 1 / JUMP_RATIO)
                             | (np.abs(logret) > JUMP_SIGMAS * sigma))
    out = []
    for i in flagged[:limit]:
        t0, t1 = pd.Timestamp(bars.timestamps[i]), pd.Timestamp(bars.timestamps[i + 1])
        out.append(
            f"{bars.where(int(i) + 1)}: close jumps {100 * (ratio[i] - 1):+.1f}% from {t0} to {t1} "
            f"({abs(logret[i]) / sigma:.0f} typical moves; unadjusted split or bad tick?)"
        )
    if flagged.size > limit:
        out.append(f"... and {flagged.size - limit} more implausible jumps")
    return out


def check_data(path: str | Path, min_bars: int | None = None, need: str = "") -> list[SymbolReport]:
    """The ``tuner data check`` report: one entry per symbol, failed file and skipped file."""
    dataset = load_dataset(path)
    reports = [describe(dataset.bars[s], min_bars, need) for s in dataset.symbols]
    for name, error in sorted(dataset.errors.items()):
        reports.append(SymbolReport(symbol=name, source=str(path), problems=(str(error),)))
    for file, why in dataset.skipped:
        reports.append(SymbolReport(symbol=file.name if file.name.startswith(".") else _stem(file),
                                    source=str(file),
                                    problems=(f"skipped, {why}",)))
    return reports


def _median_step(times: np.ndarray):
    if times.size < 2:
        return None
    return np.median(np.diff(times).astype(np.int64)).astype("timedelta64[ns]")


def _human(delta) -> str:
    return str(pd.Timedelta(delta)).replace(" 00:00:00", "").replace("0 days ", "")
