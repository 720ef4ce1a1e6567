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
One JSON object per line; see :class:`JournalRecord`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner.core.errors import TunerError
from tuner.core.storage import Storage

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
        data = json.loads(line)
        return cls(**data)


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
        flush_interval_s: :meth:`maybe_flush` writes at most this often.
    """

    def __init__(self, storage: Storage, session: int, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.storage = storage
        self.session = session
        self.flush_interval_s = flush_interval_s
        self.pending: list[JournalRecord] = []
        self.sequence = 0
        self.last_flush = time.monotonic()
        self.bytes_written = 0
        self.flushes = 0
        self.flush_seconds = 0.0
        self.failure: OSError | None = None
        """The first write the storage refused; the run stops at once (see :meth:`flush`)."""

    def append(self, records: Iterable[JournalRecord]) -> None:
        self.pending.extend(records)

    def maybe_flush(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the pending records as one new chunk (nothing when none are pending).

        A refused write (full disk, read-only storage) keeps the records pending, to be written
        by a later flush, and is remembered in :attr:`failure` rather than raised: the caller
        is Tune's event loop, which must wind the run down (no new trials) rather than crash
        with trials in flight. :meth:`close` raises it."""
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        start = time.perf_counter()
        data = ("\n".join(r.to_json() for r in self.pending) + "\n").encode()
        name = f"{JOURNAL_DIR}/{self.session:04d}-{self.sequence + 1:06d}.jsonl"
        try:
            self.storage.write_bytes(name, data)
        except OSError as e:
            self.failure = self.failure or e
            return
        self.sequence += 1
        self.pending.clear()
        self.bytes_written += len(data)
        self.flushes += 1
        self.flush_seconds += time.perf_counter() - start

    def close(self) -> None:
        """Write what is pending. When the storage still refuses, save the pending records to a
        local rescue file and raise :class:`StorageFault` saying how to bring them back."""
        self.flush()
        if self.failure is None:
            return
        if not self.pending:  # the storage came back: everything is saved, but the run stopped
            raise StorageFault(f"{self.storage.root}: the storage refused a write ({self.failure}); the "
                               f"run stopped with every finished trial saved. Resume it with "
                               f"`tuner resume {self.storage.name}`.")
        rescue = rescue_path(self.storage.name, self.session)
        rescue.parent.mkdir(parents=True, exist_ok=True)
        rescue.write_text("\n".join(r.to_json() for r in self.pending) + "\n")
        raise StorageFault(
            f"{self.storage.root}: the storage refused a write ({self.failure}); the run stopped. "
            f"{len(self.pending)} finished trials not yet in its journal were saved to {rescue}. "
            f"Once the storage is writable again: copy that file to "
            f"{self.storage.path(JOURNAL_DIR, rescue.name)} and run `tuner resume {self.storage.name}`."
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


def read_journal(storage: Storage) -> list[JournalRecord]:
    """Every record, in the order they were written; a trial written twice (a compaction cut
    short) is kept once. Raises :class:`JournalError` naming the file and line of anything
    unreadable."""
    records: dict[tuple[str, str], JournalRecord] = {}
    for name in chunk_names(storage):
        path = f"{JOURNAL_DIR}/{name}"
        try:
            text = storage.read_bytes(path).decode()
        except (OSError, UnicodeDecodeError) as e:
            raise JournalError(_damaged(storage, path, f"cannot be read ({e})")) from e
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = JournalRecord.from_json(line)
            except (ValueError, TypeError) as e:
                raise JournalError(_damaged(storage, path, f"line {line_no} is not a trial record ({e})")) from e
            records.setdefault((record.study, record.trial_id), record)
    return list(records.values())


def _damaged(storage: Storage, path: str, what: str) -> str:
    return (f"{storage.path(path)}: {what}. The experiment's finished trials are recorded there, so "
            "it is not resumed and nothing was overwritten. Restore the file from a backup, or move "
            f"it out of {storage.path(JOURNAL_DIR)} to resume without the trials it holds.")


def last_session(storage: Storage) -> int:
    """The highest session number that wrote a chunk (0 when none)."""
    sessions = [int(name.split("-", 1)[0]) for name in chunk_names(storage) if name.split("-", 1)[0].isdigit()]
    return max(sessions, default=0)


def compact(storage: Storage, session: int) -> None:
    """Merge every chunk into one (``<session>-compact.jsonl``), then delete the merged ones:
    a finished experiment keeps a single journal file."""
    names = chunk_names(storage)
    if len(names) <= 1:
        return
    records = read_journal(storage)
    target = f"{session:04d}-compact.jsonl"
    storage.write_bytes(f"{JOURNAL_DIR}/{target}",
                        ("\n".join(r.to_json() for r in records) + "\n").encode())
    for name in names:
        if name != target:
            storage.delete(f"{JOURNAL_DIR}/{name}")


def records_by_study(records: Iterable[JournalRecord]) -> dict[str, list[JournalRecord]]:
    by_study: dict[str, list[JournalRecord]] = {}
    for r in records:
        by_study.setdefault(r.study, []).append(r)
    for rows in by_study.values():
        rows.sort(key=lambda r: r.number)
    return by_study

