"""Collation on the cluster: each symbol's result documents built, tested, decided and written in batches.

What :func:`tuner.engine.collate.symbol_documents` does for a symbol (its winner documents, the
blend/regime labels, the significance tests: SPA/Reality Check and PBO bootstraps over each
study's trials, the symbol's Model Confidence Set) looks at no other symbol, so it runs as steps
on the cluster, a batch of symbols each (a few batches per CPU, so a slow batch does not hold
the others back), each writing its symbols' files as it finishes. Three rounds:

1. **documents** (:func:`collate_batch`): a batch's documents, written; its symbols' summary
   entries and :class:`~tuner.engine.universe_decisions.DecisionInputs` (per-window test
   errors and configs) go to the run's :class:`~tuner.engine.part_store.PartStore`; the
   driver gets which studies have a file.
2. **decide** (:func:`decide_batches`): the decisions need every symbol at once
   (Benjamini-Yekutieli across the universe, the panel tests), so one step takes every batch's
   inputs and returns the summary's ``decisions`` and ``panel`` to the driver; each batch's
   decisions go to the part store.
3. **finish** (:func:`finish_batch`): each symbol's ``decision`` added to its winner's file and
   its summary entry; the batch's ``symbols.parquet`` rows go to the part store, and one last
   step (:func:`write_symbols`) writes them, in order, as one table.

So the driver holds numbers, a few references and the part store's handle, none of which grow
with the universe (the documents, entries and errors stay in the workers and the part store:
measured, bench/bench_driver_phases.py). The steps run on
:class:`~tuner.engine.collation_workers.CollationWorkers`, one per CPU, which import their
libraries at the lowest CPU priority while tuning runs; the model actors are gone
by the time they work (:func:`tuner.engine.experiment._run_session` releases them before
collating), so they use the CPUs the experiment's actors held.

Everything a step writes is a whole file (atomic, :class:`~tuner.core.storage.Storage`) with the
content the serial path (:class:`~tuner.engine.collate.SerialCollator`) writes; a kill midway keeps
what was written, and ``tuner resume`` writes it all again (the same documents: same seed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tuner.core.pooled import PooledOutcome, WindowDates
from tuner.core.storage import SYMBOLS_FILE, Storage
from tuner.core.summary_tables import row_groups, symbols_schema, symbols_table, write_summary
from tuner.core.trial import TrialResult
from tuner.engine.collate import (
    Collated,
    Key,
    TrialRecord,
    horizon_of,
    symbol_documents,
    symbol_entries,
    winner_file,
)
from tuner.engine.collation_workers import CollationWorkers
from tuner.engine.part_store import open_parts, pack, unpack
from tuner.engine.result_store import StoredResults
from tuner.engine.task_errors import get_raising_cause
from tuner.engine.universe_decisions import (
    DecisionInputs,
    add_pooled,
    decide_universe,
    decision_inputs,
)

TASKS_PER_CPU = 4
"""Batches per CPU the tasks may use: enough that the last batch to finish is short."""
MAX_BATCH = 100
"""Most symbols per task (10,000 symbols: 100 tasks), so a task's memory and time stay small."""
IN_FLIGHT_PER_CPU = 2
"""Batches submitted at once per CPU; the rest wait in the driver until one finishes."""
INPUTS, ENTRIES, DECISIONS, ROWS = "inputs", "entries", "decisions", "rows"
"""The kinds of part a batch hands on through the part store."""

def batches(symbols: list[str], cpus: float, *, tasks_per_cpu: int = TASKS_PER_CPU,
            max_batch: int = MAX_BATCH) -> list[list[str]]:
    """``symbols`` cut into consecutive batches: about ``tasks_per_cpu`` per CPU, at most
    ``max_batch`` symbols each, at least one."""
    if not symbols:
        return []
    tasks = max(1, math.ceil(max(cpus, 1.0) * tasks_per_cpu))
    size = min(max_batch, max(1, math.ceil(len(symbols) / tasks)))
    return [symbols[i:i + size] for i in range(0, len(symbols), size)]


@dataclass(frozen=True)
class BatchOutcome:
    """What a documents task (:func:`collate_batch`) sends the driver.

    Attributes:
        documented: the studies (and derived candidates) it wrote a result file for.
        seconds: the task's own time; write_s: of it, storing files.
    """

    documented: frozenset[Key]
    seconds: float
    write_s: float


def collate_batch(storage_at: tuple[str, str], parts: Any, index: int, records: list[TrialRecord],
                  finals: Mapping[Key, TrialResult], counts: Mapping[Key, Mapping[str, int]],
                  meta: Mapping[str, Any], derived: Mapping[Key, dict[str, Any]],
                  defaults: Mapping[Key, TrialResult], pooled: Mapping[str, PooledOutcome]) -> BatchOutcome:
    """Round 1 (plain Python; :class:`TaskCollator` runs it remotely): the documents of the
    symbols the arguments hold, each written with its ``pooled`` section (the only
    universe-level part that is per symbol); the decisions' inputs and the symbols' summary
    entries go to the part store ``parts`` as batch ``index``'s; returns what the driver reads."""
    import ray

    start = time.perf_counter()
    pooled = {f: replace(o, results=ray.get(o.results)) if isinstance(o.results, ray.ObjectRef) else o
              for f, o in pooled.items()}
    documents = symbol_documents(records, finals, counts, meta, derived, defaults)
    entries = symbol_entries(documents)
    inputs = decision_inputs(documents, entries, pooled)
    add_pooled(documents, pooled)
    storage = Storage(*storage_at)
    writing = time.perf_counter()
    for key, doc in documents.items():
        storage.write_json(winner_file(key), doc)
    now = time.perf_counter()
    ray.get([parts.put.remote(INPUTS, index, pack(inputs)), parts.put.remote(ENTRIES, index, pack(entries))])
    return BatchOutcome(frozenset(documents), now - start, now - writing)


def decide_batches(parts: Any, count: int, pooled_families: Sequence[str], window_dates: WindowDates | None,
                   horizon: int) -> tuple[Any, Any, float]:
    """Round 2: the universe's decisions from the inputs of batches ``0 .. count - 1`` (in the
    part store ``parts``); each batch's decisions go back to it. Returns (tallies, panel, its
    seconds)."""
    import ray

    start = time.perf_counter()
    inputs: list[DecisionInputs] = [unpack(part) for part in ray.get([parts.get.remote(INPUTS, i) for i in range(count)])]
    outcome = decide_universe(inputs, pooled_families, window_dates, horizon)
    ray.get(parts.put_each.remote(DECISIONS, [pack({c.symbol: outcome.decisions[c.symbol] for c in part.candidates})
                                              for part in inputs]))
    return outcome.tallies, outcome.panel, time.perf_counter() - start


def finish_batch(storage_at: tuple[str, str], parts: Any, index: int, created_at: str | None) -> float:
    """Round 3: each of batch ``index``'s symbols' ``decision`` added to its summary entry and
    to its winner's file (the key goes last, where the serial path puts it, by extending the
    file round 1 wrote: :meth:`~tuner.core.storage.Storage.add_json_key`). The batch's
    ``symbols.parquet`` rows go to the part store, for :func:`write_symbols`; returns the
    seconds it took."""
    import ray

    start = time.perf_counter()
    storage = Storage(*storage_at)
    entries, decisions = map(unpack, ray.get([parts.get.remote(ENTRIES, index), parts.get.remote(DECISIONS, index)]))
    for symbol, decision in decisions.items():
        entries[symbol]["decision"] = decision
        storage.add_json_key(winner_file((symbol, entries[symbol]["best_family"])), "decision", decision)
    ray.get(parts.put.remote(ROWS, index, pack(symbols_table(entries, created_at))))
    return time.perf_counter() - start


def write_symbols(storage_at: tuple[str, str], created_at: str | None, parts: Any, count: int) -> int:
    """The last task: ``symbols.parquet`` from the rows of batches ``0 .. count - 1`` (in the
    part store ``parts``, fetched one at a time), in row groups; returns its row count."""
    import ray

    written = 0

    def fetched():
        nonlocal written
        for index in range(count):
            table = unpack(ray.get(parts.get.remote(ROWS, index)))
            written += table.num_rows
            yield table

    Storage(*storage_at).write_parquet_parts(SYMBOLS_FILE, symbols_schema(created_at), row_groups(fetched()))
    return written


def write_summary_tables(storage_at: tuple[str, str], summary: dict[str, Any], symbols_written: int) -> dict[str, Any]:
    """The last step, in a task: ``studies.parquet`` and ``summary.json``
    (:func:`tuner.core.summary_tables.write_summary`; building the studies table in the driver
    added 14 MB to it at 10,000 studies, 5 MB at 1,000); returns the short summary."""
    return write_summary(Storage(*storage_at), summary, symbols_written=symbols_written)


def _of_symbols(mapping: Mapping[Any, Any], symbols: list[str], by_study: bool = True):
    """``mapping``'s entries of ``symbols`` (keyed by study; by symbol when not ``by_study``);
    for results held by a store actor, a reference to them (the store sends them to the task)."""
    if isinstance(mapping, StoredResults):
        return mapping.ref_of(symbols)
    chosen = set(symbols)
    return {k: v for k, v in mapping.items() if (k[0] if by_study else k) in chosen}


@dataclass
class TaskCollator:
    """:class:`tuner.engine.collate.Collator` on Ray: documents, decisions and files in tasks
    (see the module docstring).

    Attributes:
        cpus: the CPUs the tasks may use (sizes the batches; default: the cluster's).
        on_done: ``tick(done, total)``: symbols whose documents are written (the progress view).
        stats: filled as it runs: tasks, symbols per task, seconds (summary's ``collation``).
    """

    cpus: float | None = None
    on_done: Callable[[int, int], None] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    _workers: CollationWorkers | None = field(default=None, init=False, repr=False)
    _parts: Any = field(default=None, init=False, repr=False)

    def _cpus(self) -> float:
        """The CPUs collation may use: ``cpus``, else the cluster's."""
        import ray

        if self.cpus is None:
            self.cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return self.cpus

    def warm(self) -> CollationWorkers:
        """Start the workers (:class:`~tuner.engine.collation_workers.CollationWorkers`, one
        per CPU the collation will use), which import their libraries at once, at the lowest
        CPU priority: started with tuning, they import in the time the trials leave idle and
        are ready when collation begins; the part store starts with them. :meth:`collate`
        starts them if this was not called; :meth:`write_summary`, the last step, ends them."""
        if self._workers is None:
            self._workers = CollationWorkers(max(1, int(self._cpus())))
            self._parts = open_parts()  # its process starts now too, not when the first part is put
        return self._workers

    def close(self) -> None:
        """End the workers and a part store no collation took, if any (the run's ``finally``:
        collation may have failed midway, or never begun)."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        if self._parts is not None:
            import ray

            ray.kill(self._parts, no_restart=True)
            self._parts = None

    def collate(self, storage, trials, finals, counts, meta, derived, defaults, pooled, window_dates) -> Collated:
        import ray

        workers = self.warm()
        # Trials held by an actor go from it to each task through the object store (a task's
        # top-level reference is resolved before it runs); the driver never fetches them.
        fetch = getattr(trials, "records_ref", None)
        by_symbol: dict[str, list[TrialRecord]] = {}
        if fetch is None:
            for r in trials.records_of(None):
                by_symbol.setdefault(r.symbol, []).append(r)
        symbols = sorted({s for s, _ in finals} | {s for s, _ in derived})
        groups = batches(symbols, self._cpus())
        at, meta_ref = (storage.base, storage.name), ray.put(dict(meta))
        parts, self._parts = self._parts or open_parts(), None
        try:
            def submit(index: int):
                group = groups[index]
                # A store's pooled results reach the task as references it resolves itself.
                batch_pooled = {f: replace(o, results=_of_symbols(o.results, group, by_study=False))
                                for f, o in pooled.items()}
                records = fetch(group) if fetch is not None else [r for s in group for r in by_symbol.get(s, [])]
                return workers.submit(collate_batch, at, parts, index, records, _of_symbols(finals, group),
                                      _of_symbols(counts, group), meta_ref, _of_symbols(derived, group),
                                      _of_symbols(defaults, group), batch_pooled)

            documented, seconds, write_s = self._documents(groups, len(symbols), submit)
            tallies, panel, decide_s = ray.get(workers.submit(
                decide_batches, parts, len(groups), sorted(pooled), window_dates, horizon_of(meta)))
            parts.drop.remote(INPUTS)  # only the decide task reads them
            self.stats.update({"tasks": len(groups), "symbols": len(symbols), "workers": len(workers.workers),
                               "symbols_per_task": max(map(len, groups), default=0),
                               "task_s": round(sum(seconds), 3),
                               "longest_task_s": round(max(seconds, default=0.0), 3),
                               "task_write_s": round(write_s, 3), "decide_s": round(decide_s, 3)})
            written = self._finish(workers, at, parts, len(groups), meta.get("created_at"))
        finally:
            ray.kill(parts, no_restart=True)
        return Collated(frozenset(documented), tallies, panel, symbols_written=written)

    def write_summary(self, storage, summary: dict[str, Any], collated: Collated) -> dict[str, Any]:
        try:
            return get_raising_cause(self.warm().submit(write_summary_tables, (storage.base, storage.name),
                                                        summary, collated.symbols_written))
        finally:
            self.close()  # the last step

    def _documents(self, groups: list[list[str]], total: int, submit) -> tuple[set[Key], list[float], float]:
        """Round 1: ``submit(index)`` each batch, a few in flight per CPU, the next as one
        finishes (the arguments waiting in the object store stay bounded whatever the universe's
        size). Returns the studies documented, each task's seconds and their writing seconds."""
        import ray

        queue, pending = list(reversed(range(len(groups)))), {}
        in_flight = IN_FLIGHT_PER_CPU * max(1, math.ceil(self._cpus()))
        documented: set[Key] = set()
        done, seconds, write_s = 0, [], 0.0
        while queue or pending:
            while queue and len(pending) < in_flight:
                index = queue.pop()
                pending[submit(index)] = index
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                outcome: BatchOutcome = ray.get(ref)  # a task's error is raised here, as its own type
                documented |= outcome.documented
                seconds.append(outcome.seconds)
                write_s += outcome.write_s
                done += len(groups[pending.pop(ref)])
                if self.on_done is not None:
                    self.on_done(done, total)
        return documented, seconds, write_s

    def _finish(self, workers: CollationWorkers, at: tuple[str, str], parts: Any, count: int,
                created_at: str | None) -> int:
        """Round 3's steps, then the one writing ``symbols.parquet`` from their rows; returns
        its row count."""
        import ray

        seconds = ray.get([workers.submit(finish_batch, at, parts, index, created_at) for index in range(count)])
        rows = ray.get(workers.submit(write_symbols, at, created_at, parts, count))
        self.stats.update({"decision_tasks": len(seconds), "decision_task_s": round(sum(seconds), 3)})
        return rows
