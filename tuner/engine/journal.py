"""The trial journal: every finished Optuna trial of an experiment, saved as it finishes.

This is the experiment's durable state, and the only one a resume reads. Why our own journal
rather than Ray Tune's experiment checkpoint:

* **incremental**: a save writes only the trials finished since the previous one (Tune rewrites
  every trial ever run, ~20 KB each, every period: ~1 GB per save at 45,000 trials);
* **no pickle**: plain JSON lines, so reading storage never runs code (Tune's checkpoint and our
  former searcher state were pickles);
* **strict**: a record that cannot be read stops the resume with the file and line; nothing is
  silently restarted from scratch.

Layout: ``<experiment>/journal/<session>-<seq>.jsonl``. Each flush writes one new chunk
atomically (temp file + rename, or one PUT on object stores), so a kill leaves whole chunks only;
chunks are never rewritten, except by :meth:`TrialJournal.compact`, which writes their union
first and deletes them after (a kill in between leaves duplicates, which reading drops).
One JSON object per line; see :class:`JournalRecord`. Every record carries its experiment's id
(:mod:`tuner.engine.provenance`), so a chunk copied from another experiment is refused, not merged.

**Flushing.** A timer thread (:meth:`TrialJournal.start`) writes pending records once the oldest
is half of :data:`FLUSH_INTERVAL_S` old, whatever the Tune loop does next: a flush that waited
for the next result would leave the last trials of a run unwritten until the run ended.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tuner.core.errors import TunerError
from tuner.core.storage import Storage

if TYPE_CHECKING:
    from tuner.engine.provenance import Provenance

log = logging.getLogger(__name__)
T = TypeVar("T")

JOURNAL_DIR = "journal"
FLUSH_INTERVAL_S = 1.0
"""At most this long between a trial finishing and its record reaching storage (a SIGKILL
loses at most the trials of the last interval, plus those still running)."""


class JournalError(TunerError):
    """A journal chunk that cannot be read: the experiment cannot be resumed as it is."""


class StorageFault(TunerError):
    """The experiment's storage refused a write (full, read-only, gone): the run stopped."""


@dataclass(frozen=True)
class JournalRecord:
    """One finished Optuna trial.

    Attributes:
        study: the study key, ``"<SYMBOL>/<family>"``.
        number: the trial's number in its Optuna study (0, 1, ...).
        trial_id: unique id: ``<Tune trial id>.<slot>`` (one Tune trial carries several).
        status: ``completed`` or ``failed``.
        params: the suggested parameters (what Optuna learns from).
        distributions: Optuna's distribution of each suggested parameter, as
            ``optuna.distributions.distribution_to_json`` writes it (to rebuild the study).
        config: the checked config the trial ran (suggested + fixed + defaults).
        value: validation ``pct_return_mae`` (None when failed).
        metrics: what the trial reported (scores, latency, timings, actor, node).
        error: why it failed.
        session: the run session (1 = first run, 2 = first resume, ...).
        finished_at: UNIX time the driver received it.
        experiment: the experiment's id (None in records written before experiments had ids).
    """

    study: str
    number: int
    trial_id: str
    status: str
    params: Mapping[str, Any]
    distributions: Mapping[str, str]
    config: Mapping[str, Any] = field(default_factory=dict)
    value: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    session: int = 1
    finished_at: float = 0.0
    experiment: str | None = None

    @property
    def symbol(self) -> str:
        return self.study.rsplit("/", 1)[0]

    @property
    def family(self) -> str:
        return self.study.rsplit("/", 1)[1]

    def to_json(self) -> str:
        return json.dumps(_finite(asdict(self)), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> JournalRecord:
        """Parse and check one line. Raises ValueError (not JSON) or :class:`BadField`."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise BadField("(record)", data, "must be a JSON object")
        known = {f.name for f in fields(cls)}
        for name in data:
            if name not in known:
                raise BadField(name, data[name], "is not a field of a trial record")
        for name in ("study", "number", "trial_id", "status", "params", "distributions"):
            if name not in data:
                raise BadField(name, None, "is missing")
        for name, value in data.items():
            _check_field(name, value)
        if data["status"] == "completed" and data.get("value") is None:
            raise BadField("value", None, "must be a number for a completed trial")
        _check_params(data["params"], data["distributions"])
        return cls(**_shared_strings(data))


class BadField(ValueError):
    """A record field whose value is not allowed (read_journal adds the file and line)."""

    def __init__(self, name: str, value: Any, rule: str) -> None:
        super().__init__(f"field {name!r} is {_short(value)}: {rule}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_RULES: dict[str, tuple[Any, str]] = {
    "study": (lambda v: isinstance(v, str) and v.count("/") >= 1 and all(v.rsplit("/", 1))
              and v.isprintable(), "must be \"SYMBOL/family\""),
    "number": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
               "must be a whole number >= 0"),
    "trial_id": (lambda v: isinstance(v, str) and bool(v), "must be a non-empty string"),
    "status": (lambda v: v in ("completed", "failed"), "must be \"completed\" or \"failed\""),
    "params": (lambda v: isinstance(v, dict), "must be an object of parameter values"),
    "distributions": (lambda v: isinstance(v, dict) and all(isinstance(d, str) for d in v.values()),
                      "must be an object of Optuna distribution JSON strings"),
    "config": (lambda v: isinstance(v, dict), "must be an object"),
    # pct_return_mae is a mean of absolute errors: never negative.
    "value": (lambda v: v is None or (_is_number(v) and v >= 0), "must be a finite number >= 0 or null"),
    "metrics": (lambda v: isinstance(v, dict), "must be an object"),
    "error": (lambda v: v is None or isinstance(v, str), "must be a string or null"),
    "session": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                "must be a whole number >= 1"),
    "finished_at": (lambda v: _is_number(v) and v >= 0, "must be a UNIX time (a finite number >= 0)"),
    "experiment": (lambda v: v is None or (isinstance(v, str) and bool(v)), "must be an id string or null"),
}


def _check_field(name: str, value: Any) -> None:
    ok, rule = _RULES[name]
    if not ok(value):
        raise BadField(name, value, rule)


def _check_params(params: Mapping[str, Any], distributions: Mapping[str, str]) -> None:
    """Every parameter has its Optuna distribution, and its value lies in it (what rebuilding
    the study needs)."""
    for name, value in params.items():
        if name not in distributions:
            raise BadField("params", {name: value}, f"parameter {name!r} has no entry in distributions")
        try:
            dist = _distribution(distributions[name])
            inside = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise BadField("distributions", {name: distributions[name]},
                           f"not an Optuna distribution holding {value!r} ({e})") from e
        if not inside:
            raise BadField("params", {name: value}, f"outside its distribution {distributions[name]}")


@functools.lru_cache(maxsize=1024)
def _distribution(text: str):
    """An Optuna distribution from its JSON, parsed once per text: a journal repeats a few
    texts in every record (parsing each was a quarter of reading 10,000 records)."""
    import optuna

    return optuna.distributions.json_to_distribution(text)


def _shared_strings(value: Any) -> Any:
    """``value`` with every dict key and string value interned: a record's ~40 keys and its
    repeated strings (distributions, actor, node, categorical choices) are then one object for
    all records, not one per record (a resumed 10,000-study universe holds ~10^5 records)."""
    # Numbers (most leaves: the per-window errors) are passed over without a call each.
    if isinstance(value, dict):
        return {sys.intern(k): v if type(v) in _NUMBERS else _shared_strings(v) for k, v in value.items()}
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, list):
        return [v if type(v) in _NUMBERS else _shared_strings(v) for v in value]
    return value


_NUMBERS = frozenset((float, int, bool, type(None)))


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats become None (their reason is in ``error``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class TrialJournal:
    """Appends finished trials to ``<experiment>/journal/`` in atomic chunks.

    Args:
        storage: the experiment's storage.
        session: this run's session number (chunk names start with it, so a resumed run never
            writes over an earlier session's chunks).
        flush_interval_s: a record reaches storage at most this long after it was appended
            (:meth:`start`'s timer, or :meth:`maybe_flush` without one).
        experiment: the experiment's id, written into every record (None: records keep theirs).
    """

    def __init__(self, storage: Storage, session: int, flush_interval_s: float = FLUSH_INTERVAL_S,
                 experiment: str | None = None) -> None:
        self.storage = storage
        self.session = session
        self.flush_interval_s = flush_interval_s
        self.experiment = experiment
        self.pending: list[JournalRecord] = []
        self.oldest: float | None = None
        """monotonic time the oldest pending record was appended."""
        self.sequence = 0
        self.last_flush = time.monotonic()
        self.bytes_written = 0
        self.flushes = 0
        self.flush_seconds = 0.0
        self.failure: OSError | None = None
        """The first write the storage refused; the run stops at once (see :meth:`flush`)."""
        self.on_saved: Callable[[str], None] | None = None
        """Told each chunk's name once it is written (the trial store reads it then, beside tuning)."""
        # pending is appended by Tune's event loop and written by the timer thread.
        self._state = threading.Condition()
        self._writing = threading.Lock()  # one chunk at a time: chunk names are sequential
        self._timer: threading.Thread | None = None
        self._closing = False

    def append(self, records: Iterable[JournalRecord]) -> None:
        if self.experiment is not None:
            records = [replace(r, experiment=self.experiment) for r in records]
        with self._state:
            if not self.pending:
                self.oldest = time.monotonic()
            self.pending.extend(records)
            self._state.notify()

    def maybe_flush(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= self.flush_interval_s:
            self.flush()

    def start(self) -> None:
        """Start the timer thread: pending records are written once the oldest is half the
        interval old (the other half covers the write itself), whatever arrives next."""
        if self._timer is None:
            self._closing = False
            self._timer = threading.Thread(target=self._flush_on_time, name="journal-flush", daemon=True)
            self._timer.start()

    def stop(self) -> None:
        """Stop the timer thread (pending records stay pending: :meth:`close` writes them)."""
        with self._state:
            self._closing = True
            self._state.notify()
        if self._timer is not None:
            self._timer.join()
            self._timer = None

    def _flush_on_time(self) -> None:
        while True:
            with self._state:
                while not self._closing and not self.pending:
                    self._state.wait()
                if self._closing:
                    return
                due = (self.oldest or 0.0) + self.flush_interval_s / 2
                # A refused write is retried at most once per interval, not in a busy loop.
                if self.failure is not None:
                    due = max(due, self.last_flush + self.flush_interval_s)
                wait = due - time.monotonic()
                if wait > 0:
                    self._state.wait(wait)
                    continue
            self.flush()

    def flush(self) -> None:
        """Write the pending records as one new chunk (nothing when none are pending).

        A refused write (full disk, read-only storage) keeps the records pending, to be written
        by a later flush, and is remembered in :attr:`failure` rather than raised: the caller
        is Tune's event loop or the timer, and the run must wind down (no new trials) rather
        than crash with trials in flight. :meth:`close` raises it."""
        with self._writing:
            self.last_flush = time.monotonic()
            with self._state:
                batch = list(self.pending)
            if not batch:
                return
            start = time.perf_counter()
            data = ("\n".join(r.to_json() for r in batch) + "\n").encode()
            name = f"{JOURNAL_DIR}/{self.session:04d}-{self.sequence + 1:06d}.jsonl"
            try:
                self.storage.write_bytes(name, data)
            except OSError as e:
                self.failure = self.failure or e
                return
            self.sequence += 1
            with self._state:
                del self.pending[:len(batch)]  # appends only add at the end
                self.oldest = time.monotonic() if self.pending else None
            self.bytes_written += len(data)
            self.flushes += 1
            self.flush_seconds += time.perf_counter() - start
        if self.on_saved is not None:
            try:
                self.on_saved(name.rsplit("/", 1)[1])
            except Exception as e:  # only a head start for a reader: the chunk is saved either way
                log.warning("journal: telling of chunk %s failed: %s", name, e)

    def close(self) -> None:
        """Write what is pending. When the storage still refuses, save the pending records to a
        local rescue file and raise :class:`StorageFault` saying how to bring them back."""
        self.stop()
        self.flush()
        if self.failure is None:
            return
        if not self.pending:  # the storage came back: everything is saved, but the run stopped
            raise StorageFault(f"{self.storage.root}: the storage refused a write ({self.failure}); the "
                               f"run stopped with every finished trial saved. Resume it with "
                               f"`{self.storage.command('resume')}`.")
        rescue = rescue_path(self.storage.name, self.session)
        rescue.parent.mkdir(parents=True, exist_ok=True)
        rescue.write_text("\n".join(r.to_json() for r in self.pending) + "\n")
        raise StorageFault(
            f"{self.storage.root}: the storage refused a write ({self.failure}); the run stopped. "
            f"{len(self.pending)} finished trials not yet in its journal were saved to {rescue}. "
            f"Once the storage is writable again: copy that file to "
            f"{self.storage.path(JOURNAL_DIR, rescue.name)} and run `{self.storage.command('resume')}`."
        )

    def stats(self) -> dict[str, Any]:
        return {"flushes": self.flushes, "bytes": self.bytes_written,
                "bytes_per_flush": self.bytes_written / self.flushes if self.flushes else 0,
                "seconds_per_flush": self.flush_seconds / self.flushes if self.flushes else 0}


def rescue_path(name: str, session: int) -> Path:
    """Where a run saves the trials its storage refused (local disk, outside the storage)."""
    base = Path(os.environ.get("TUNER_RESCUE_DIR", Path.home() / ".cache" / "forecast-tuner" / "rescue"))
    return base / name / f"{session:04d}-rescue-{int(time.time())}.jsonl"


def chunk_names(storage: Storage) -> list[str]:
    """The journal's chunk files, oldest first."""
    return sorted(name for name in storage.list(JOURNAL_DIR) if name.endswith(".jsonl"))


def read_journal(storage: Storage, provenance: Provenance | None = None) -> list[JournalRecord]:
    """Every record, in the order they were written; a trial written twice (a compaction cut
    short) is kept once. Raises :class:`JournalError` naming the file and line of anything
    unreadable, of any field whose value is not allowed, and (given ``provenance``) of any
    record that is not this experiment's."""
    return list(iter_journal(storage, provenance))


def iter_journal(storage: Storage, provenance: Provenance | None = None) -> Iterator[JournalRecord]:
    """:func:`read_journal`'s records one at a time, a chunk file read at once: a caller that
    keeps less than the whole record (collation) never holds every record."""
    yield from first_written((r for name in chunk_names(storage) for r in chunk_records(storage, name, provenance)),
                             key=lambda r: (r.study, r.trial_id))


def first_written(items: Iterable[T], key: Callable[[T], Hashable]) -> Iterator[T]:
    """``items`` (a trial's records or lines, oldest chunk first) with each trial, as ``key``
    names it, kept once, as it was first written (a compaction cut short writes some twice)."""
    seen: set[Hashable] = set()
    for item in items:
        trial = key(item)
        if trial not in seen:
            seen.add(trial)
            yield item


def chunk_records(storage: Storage, name: str, provenance: Provenance | None = None) -> list[JournalRecord]:
    """The records of the chunk ``name`` (as :func:`chunk_names` lists it), each checked as
    :func:`read_journal` checks them, duplicates kept. Raises :class:`JournalError` naming the
    file and line of the first that is not allowed."""
    path = f"{JOURNAL_DIR}/{name}"
    records = []
    for line_no, line in _file_lines(storage, path):
        try:
            record = JournalRecord.from_json(line)
        except BadField as e:
            raise JournalError(_damaged(storage, path, f"line {line_no}: {e}")) from e
        except (ValueError, TypeError) as e:
            raise JournalError(_damaged(storage, path, f"line {line_no} is not a trial record ({e})")) from e
        why = provenance.refuses(record) if provenance is not None else None
        if why is not None:
            raise JournalError(_foreign(storage, path, line_no, record, why))
        records.append(record)
    return records


def _file_lines(storage: Storage, path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every non-blank line of the chunk at ``path``."""
    try:
        text = storage.read_bytes(path).decode()
    except (OSError, UnicodeDecodeError) as e:
        raise JournalError(_damaged(storage, path, f"cannot be read ({e})")) from e
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield line_no, line


def _foreign(storage: Storage, path: str, line_no: int, record: JournalRecord, why: str) -> str:
    return (f"{storage.path(path)}: line {line_no} (trial {record.trial_id} of {record.study}) is not "
            f"this experiment's: {why}. Nothing was run or overwritten. Move the file out of "
            f"{storage.path(JOURNAL_DIR)} if it does not belong there.")


def _damaged(storage: Storage, path: str, what: str) -> str:
    return (f"{storage.path(path)}: {what}. The experiment's finished trials are recorded there, so "
            "it is not resumed and nothing was overwritten. Restore the file from a backup, or move "
            f"it out of {storage.path(JOURNAL_DIR)} to resume without the trials it holds.")


def last_session(storage: Storage) -> int:
    """The highest session number that wrote a chunk (0 when none)."""
    sessions = [int(name.split("-", 1)[0]) for name in chunk_names(storage) if name.split("-", 1)[0].isdigit()]
    return max(sessions, default=0)


COMPACT_LINES = 10_000
"""Records written per piece when the journal is compacted."""


def compact(storage: Storage, session: int, read: Mapping[str, Sequence[Hashable]] | None = None) -> None:
    """Merge every chunk into one (``<session>-compact.jsonl``), then delete the merged ones:
    a finished experiment keeps a single journal file. A trial written twice (a compaction cut
    short) is kept once, as it was first written.

    The lines are copied as they are, not read into records and written again: it runs after
    every record was read and checked (:func:`chunk_records`, by the trial store as the chunks
    were saved and when tuning ended; parsing and re-writing them cost 7.7 s of a
    core at 1,000 studies × 10 trials, beside re-scoring). ``read``: chunk name → the trial
    key of each of its lines, in order, as the caller read them (the trial store's), so that
    only a chunk it did not read, or whose line count has changed since, is parsed for its keys
    here (that parse was 70 % of a compaction's CPU). A line that is not a JSON object naming
    its study and trial still stops it, naming the file and line, before anything is deleted."""
    names = chunk_names(storage)
    if len(names) <= 1:
        return
    target = f"{session:04d}-compact.jsonl"
    # Streamed, COMPACT_LINES records at a time: the whole journal (~150 MB at 100,000 trials)
    # is never one string in memory.
    with storage.write_stream(f"{JOURNAL_DIR}/{target}") as out:
        lines: list[str] = []
        for _, line in first_written(_keyed_lines(storage, names, read or {}), key=lambda found: found[0]):
            lines.append(line)
            if len(lines) == COMPACT_LINES:
                out.write(("\n".join(lines) + "\n").encode())
                lines.clear()
        if lines:
            out.write(("\n".join(lines) + "\n").encode())
    for name in names:
        if name != target:
            storage.delete(f"{JOURNAL_DIR}/{name}")


def _keyed_lines(storage: Storage, names: list[str], read: Mapping[str, Sequence[Hashable]]
                 ) -> Iterator[tuple[Hashable, str]]:
    """(trial key, line) of every non-blank line of the chunks ``names``: the key ``read``
    gives for it when its chunk's line count matches, else parsed from the line."""
    for name in names:
        path = f"{JOURNAL_DIR}/{name}"
        found = list(_file_lines(storage, path))
        keys = read.get(name)
        if keys is not None and len(keys) == len(found):
            yield from zip(keys, (line for _, line in found), strict=True)
        else:
            for line_no, line in found:
                yield _trial_key(storage, path, line_no, line), line


def _trial_key(storage: Storage, path: str, line_no: int, line: str) -> tuple[str, str]:
    """(study, trial id) of a journal line, for compaction's one copy of each trial."""
    try:
        parsed = json.loads(line)
        return parsed["study"], parsed["trial_id"]
    except (ValueError, TypeError, KeyError) as e:
        raise JournalError(_damaged(storage, path, f"line {line_no} is not a trial record ({e!r})")) from e


def records_by_study(records: Iterable[JournalRecord]) -> dict[str, list[JournalRecord]]:
    by_study: dict[str, list[JournalRecord]] = {}
    for r in records:
        by_study.setdefault(r.study, []).append(r)
    for rows in by_study.values():
        rows.sort(key=lambda r: r.number)
    return by_study

