"""Every trial record of an experiment after tuning, held by a Ray actor rather than the driver.

Collation needs each symbol's trials (its winner, its SPA/PBO bootstraps over the study's
trials), the trial counts and ``trials.parquet``; at 10,000 studies × 10 trials that is 100,000
records, which the driver used to read from the journal and keep until the end (measured: the
records and the trial table were ~100 MB of the driver's 540 MB at 1,000 × 10). A
:class:`TrialStore` actor reads the journal once instead, keeps the records, writes
``trials.parquet`` and compacts the journal while the winners are re-scored and collated, and
hands each collation task its symbols' records through the object store. It reads each chunk
of the journal as the run saves it (:meth:`TrialStore.read_new`), beside tuning: reading
100,000 records at the end took 7 s of a core on a quiet machine, and 15 s of a 10,000 × 10
run, between the end of tuning and the start of re-scoring, which waited for it. The driver
keeps only the small :class:`TrialDigest`: each study's winner, the pooled studies' records and
the failed trials (for the causes printed at the end).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from tuner.core.metrics import Scores
from tuner.core.storage import Storage
from tuner.engine.collate import FAILED, Key, TrialList, TrialRecord, pick_winners
from tuner.engine.journal import (
    JournalError,
    JournalRecord,
    chunk_names,
    chunk_records,
    compact,
    first_written,
)
from tuner.engine.pooled_study import POOLED_SYMBOL
from tuner.engine.provenance import Provenance
from tuner.engine.task_errors import get_raising_cause


def trial_record(r: JournalRecord) -> TrialRecord:
    """A journal record as collation takes it."""
    # finished_at rides in the metrics, so trials.parquet has it (Optuna export's trial times).
    return TrialRecord(trial_id=r.trial_id, symbol=r.symbol, family=r.family, status=r.status,
                       config=r.config, metrics={**r.metrics, "finished_at": r.finished_at}, error=r.error,
                       number=r.number, session=r.session)


DRIVER_METRICS = ("pct_return_mae", "latency_per_forecast_s")
"""What the driver reads of a winner's metrics: its objective, and its validation latency (the
blend and regime candidates' latency)."""
SCORE_FIELDS = tuple(f.name for f in fields(Scores))
"""A trial's validation scores, as its metrics hold them (:func:`validation_scores`)."""


def validation_scores(metrics: Mapping[str, Any]) -> array | None:
    """A trial's validation scores as it reported them, packed (:meth:`Scores.packed`), so that
    re-scoring its config forecasts only the test period; None when its metrics lack any (a
    journal written before the errors were kept): it is run again on both periods."""
    complete = all(metrics.get(name) is not None for name in SCORE_FIELDS) and len(metrics["errors"])
    return Scores.from_dict(metrics).packed() if complete else None


@dataclass(frozen=True)
class TrialDigest:
    """What the driver keeps of the journal after tuning.

    Attributes:
        winners: each study's winner (:func:`~tuner.engine.collate.pick_winners`, in its order),
            its metrics only :data:`DRIVER_METRICS`.
        pooled: the pooled studies' records (a few per family; never collated per symbol).
        failed: the per-symbol studies' failed trials (the causes of studies without a winner).
        records: how many per-symbol records the store holds.
    """

    winners: dict[Key, TrialRecord]
    pooled: list[TrialRecord]
    failed: list[TrialRecord]
    records: int


class TrialStore:
    """The actor's body (plain Python; :func:`start_trials` runs it as an actor): the
    experiment's records, read from its journal chunk by chunk (:meth:`read_new`) and all
    together by :meth:`load`."""

    def __init__(self, storage_at: tuple[str, str], provenance: Provenance | None) -> None:
        import optuna  # noqa: F401  (reading checks each record's params: imported before load)

        self.storage = Storage(*storage_at)
        self.provenance = provenance
        self.trials = TrialList([])
        self.by_symbol: dict[str, list[TrialRecord]] = {}
        self._chunks: dict[str, list[TrialRecord]] = {}  # chunk name → its records, read and checked
        self._keys: dict[str, list[tuple[str, str]]] = {}  # chunk name → its lines' trials, for compaction
        self._winners: dict[Key, TrialRecord] = {}
        self._reading = threading.Lock()  # calls run in several threads; a chunk is read once

    def read_new(self) -> int:
        """Read (and check) the journal's chunks not read yet; returns how many were read. The
        run calls it as it saves each chunk; a chunk that cannot be read now is left for
        :meth:`load`, which reads it again and raises its error."""
        with self._reading:
            read = 0
            try:
                names = chunk_names(self.storage)
            except OSError:
                return 0
            for name in names:
                if name not in self._chunks:
                    try:
                        self._chunk(name)
                        read += 1
                    except JournalError:
                        continue
            return read

    def _chunk(self, name: str) -> list[TrialRecord]:
        """The chunk ``name``'s records, read and checked the first time they are asked for."""
        chunk = self._chunks.get(name)
        if chunk is None:
            records = chunk_records(self.storage, name, self.provenance)
            self._keys[name] = [(r.study, r.trial_id) for r in records]
            chunk = self._chunks[name] = [trial_record(r) for r in records]
        return chunk

    def load(self, max_latency_s: float | None) -> TrialDigest:
        """Every record of the journal's chunks (those not read yet are read now), a trial
        written twice kept once, as :func:`~tuner.engine.journal.read_journal` does; returns
        the driver's digest. Raises :class:`~tuner.engine.journal.JournalError` for a chunk
        that cannot be read or holds a record not allowed."""
        records, pooled = [], []
        with self._reading:
            every = (r for name in chunk_names(self.storage) for r in self._chunk(name))
            for record in first_written(every, key=lambda r: (r.symbol, r.family, r.trial_id)):
                if record.symbol == POOLED_SYMBOL:
                    pooled.append(record)
                else:
                    records.append(record)
                    self.by_symbol.setdefault(record.symbol, []).append(record)
            self._chunks = {}  # the records are kept below; compaction rewrites the chunks next
        self.trials = TrialList(records)
        # The driver reads a winner's config, objective and validation latency, never the rest
        # of its metrics (the collation tasks get the whole records from here): the per-window
        # errors were ~1 KB a study, the other metrics ~0.7 KB.
        self._winners = pick_winners(records, max_latency_s)
        winners = {key: replace(r, metrics={k: r.metrics[k] for k in DRIVER_METRICS if k in r.metrics})
                   for key, r in self._winners.items()}
        return TrialDigest(winners, pooled,
                           [r for r in records if r.status == FAILED], len(records))

    def winner_validation(self) -> list[array | None]:
        """Each winner's :func:`validation_scores`, in the digest's order of winners."""
        return [validation_scores(record.metrics) for record in self._winners.values()]

    def counts(self, studies: list[Key], budget: int) -> dict[Key, dict[str, int]]:
        return self.trials.counts(studies, budget)

    def records_of(self, symbols: list[str] | None) -> list[TrialRecord]:
        if symbols is None:
            return list(self.trials.records)
        return [r for s in symbols for r in self.by_symbol.get(s, [])]

    def write_table(self) -> float:
        """Write ``trials.parquet``; returns the seconds it took."""
        start = time.perf_counter()
        self.trials.write_table(self.storage)
        return time.perf_counter() - start

    def compact(self, session: int) -> float:
        """Merge the journal's chunks into one (:func:`~tuner.engine.journal.compact`: the
        records were read, so nothing else reads the chunks now; their trials' keys as read are
        handed on, so the lines are not parsed again); returns the seconds it took."""
        start = time.perf_counter()
        compact(self.storage, session, read=self._keys)
        return time.perf_counter() - start


class StoredTrials:
    """:class:`~tuner.engine.collate.Trials` held by a :class:`TrialStore` actor (see
    :func:`start_trials`); ``close`` ends the actor.

    Attributes:
        digest: what the driver keeps (:class:`TrialDigest`), once :meth:`load` has run.
    """

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.digest: TrialDigest | None = None
        self._table = None  # the pending write of trials.parquet
        self._compaction = None  # the pending compaction of the journal
        self.table_s: float | None = None
        self.compact_s: float | None = None

    def read_new(self) -> None:
        """Have the actor read the journal's chunks saved since it last did, and go on without
        waiting (:meth:`TrialStore.read_new`): the run calls it before tuning (a resumed run's
        earlier chunks) and as each chunk is saved."""
        if self.actor is not None:
            self.actor.read_new.remote()

    def load(self, max_latency_s: float | None, session: int) -> StoredTrials:
        """Have the actor read every record the journal holds (checked against the store's
        provenance) and return the digest, then start writing ``trials.parquet`` and compacting
        the journal (as session ``session``), both while the driver goes on. Ends the actor
        when the reading fails."""
        try:
            self.digest = get_raising_cause(self.actor.load.remote(max_latency_s))
        except BaseException:
            self.close()
            raise
        self._table = self.actor.write_table.remote()
        self._compaction = self.actor.compact.remote(session)
        return self

    def counts(self, studies: Iterable[Key], budget: int) -> dict[Key, dict[str, int]]:
        return get_raising_cause(self.actor.counts.remote(list(studies), budget))

    def winner_validation(self) -> dict[Key, array]:
        """Each winner's packed validation scores (:meth:`TrialStore.winner_validation`, after
        :meth:`load`), keyed as :attr:`digest`'s winners; those without are left out."""
        packed = get_raising_cause(self.actor.winner_validation.remote())
        return {key: scores for key, scores in zip(self.digest.winners, packed, strict=True) if scores is not None}

    def records_of(self, symbols: Iterable[str] | None) -> list[TrialRecord]:
        return get_raising_cause(self.actor.records_of.remote(None if symbols is None else list(symbols)))

    def records_ref(self, symbols: list[str]):
        """A reference to ``symbols``' records (a task given it gets the list)."""
        return self.actor.records_of.remote(list(symbols))

    def write_table(self, storage: Storage) -> None:
        """Wait for ``trials.parquet``, which the store began writing when it was opened (to
        ``storage``'s experiment: the same one)."""
        self.table_s = get_raising_cause(self._table)

    def wait_compaction(self) -> None:
        """Wait for the journal's compaction (begun when the store was opened); raises its error."""
        self.compact_s = get_raising_cause(self._compaction)

    def close(self) -> None:
        """End the actor (again: nothing)."""
        import ray

        if self.actor is not None:
            ray.kill(self.actor, no_restart=True)
            self.actor = None


def start_trials(storage: Storage, provenance: Provenance | None) -> StoredTrials:
    """Start a :class:`TrialStore` for ``storage``'s experiment; nothing is read until
    :meth:`StoredTrials.load`. The experiment starts it before tuning, so that the actor's
    process start and imports (~1 s of CPU) are not paid after it."""
    import ray

    # No CPU reserved: it works while the model actors still hold theirs, and only a few
    # collation tasks at a time ask it for records; concurrent calls read shared lists.
    return StoredTrials(ray.remote(TrialStore).options(num_cpus=0, max_concurrency=4).remote(
        (storage.base, storage.name), provenance))
