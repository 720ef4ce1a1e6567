"""Collation on the cluster: each symbol's result documents built, tested and written by Ray tasks.

What :func:`tuner.engine.collate.symbol_documents` does for a symbol (its winner documents, the
blend/regime labels, the significance tests: SPA/Reality Check and PBO bootstraps over each
study's trials, the symbol's Model Confidence Set) looks at no other symbol, so it runs as Ray
tasks, a batch of symbols each (a few tasks per CPU, so a slow batch does not hold the others
back), each writing its symbols' files as it finishes. The driver gathers, with ``ray.wait`` as
tasks finish, a light view of every document (:func:`light_view`: what the summary and the
decisions read, without the per-window validation errors and the default's baseline).

The decisions need every symbol at once (Benjamini-Yekutieli across the universe), so the driver
makes them from those views (:func:`tuner.engine.collate.write_experiment`); then a second round
of tasks adds each symbol's ``decision`` to its winner's file (the one document per symbol that
gets one). Writing there instead of holding every full document until the decisions keeps the
driver's memory at the views' size (measured: bench/bench_collation.py).

The model actors are gone by then (:func:`tuner.engine.experiment._run_session` releases them
before collating), so these tasks use the CPUs the experiment's actors held; each asks for one.

Everything a task writes is a whole file (atomic, :class:`~tuner.core.storage.Storage`) with the
content the serial path (:class:`~tuner.engine.collate.SerialCollator`) writes; a kill midway keeps
what was written, and ``tuner resume`` writes it all again (the same documents: same seed).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tuner.core.pooled import PooledOutcome
from tuner.core.storage import Storage
from tuner.core.trial import TrialResult
from tuner.engine.collate import (
    Key,
    SerialCollator,
    TrialRecord,
    symbol_documents,
    winner_file,
)
from tuner.engine.result_store import StoredResults
from tuner.engine.universe_decisions import add_pooled

TASKS_PER_CPU = 4
"""Batches per CPU the tasks may use: enough that the last batch to finish is short."""
MAX_BATCH = 100
"""Most symbols per task (10,000 symbols: 100 tasks), so a task's memory and time stay small."""
IN_FLIGHT_PER_CPU = 2
"""Batches submitted at once per CPU; the rest wait in the driver until one finishes."""

def batches(symbols: list[str], cpus: float, *, tasks_per_cpu: int = TASKS_PER_CPU,
            max_batch: int = MAX_BATCH) -> list[list[str]]:
    """``symbols`` cut into consecutive batches: about ``tasks_per_cpu`` per CPU, at most
    ``max_batch`` symbols each, at least one."""
    if not symbols:
        return []
    tasks = max(1, math.ceil(max(cpus, 1.0) * tasks_per_cpu))
    size = min(max_batch, max(1, math.ceil(len(symbols) / tasks)))
    return [symbols[i:i + size] for i in range(0, len(symbols), size)]


def light_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` without what neither the summary nor the decisions read: the per-window errors of
    the validation period (the winner's, its baseline's and its default's) and the default's
    baseline (the winner's own baseline is the same windows). The test period's errors stay:
    the decisions and the panel tests compare them."""
    view = dict(doc)
    for section in ("validation",):
        if isinstance(view.get(section), Mapping):
            view[section] = {k: v for k, v in view[section].items() if k != "errors"}
    if isinstance(view.get("baseline"), Mapping) and isinstance(view["baseline"].get("validation"), Mapping):
        view["baseline"] = {**view["baseline"], "validation": {
            k: v for k, v in view["baseline"]["validation"].items() if k != "errors"}}
    if isinstance(view.get("default"), Mapping):
        default = {k: v for k, v in view["default"].items() if k != "baseline"}
        if isinstance(default.get("validation"), Mapping):
            default["validation"] = {k: v for k, v in default["validation"].items() if k != "errors"}
        view["default"] = default
    return view


def share_settings(doc: dict[str, Any], shared: dict[str, Any]) -> None:
    """Make ``doc``'s ``significance.settings`` (the tests' parameters and descriptions, ~2 KB
    and the same in nearly every document of a run) the one object ``shared`` holds for that
    content, so that 10,000 documents in the driver hold one copy, not 10,000 (they are read,
    never changed, after collation)."""
    significance = doc.get("significance")
    if isinstance(significance, dict) and isinstance(significance.get("settings"), dict):
        settings = significance["settings"]
        significance["settings"] = shared.setdefault(json.dumps(settings, sort_keys=True, default=str), settings)


@dataclass(frozen=True)
class BatchOutcome:
    """What a collation task sends back.

    Attributes:
        documents: (symbol, family) → the document (its :func:`light_view` when the task wrote
            the files, the whole document when the driver writes them).
        seconds: the task's own time; write_s: of it, storing files.
    """

    documents: dict[Key, dict[str, Any]]
    seconds: float
    write_s: float


def collate_batch(storage_at: tuple[str, str], records: list[TrialRecord], finals: Mapping[Key, TrialResult],
                  counts: Mapping[Key, Mapping[str, int]], meta: Mapping[str, Any],
                  derived: Mapping[Key, dict[str, Any]], defaults: Mapping[Key, TrialResult],
                  pooled: Mapping[str, PooledOutcome], write: bool) -> BatchOutcome:
    """One task's work (plain Python; :class:`TaskCollator` runs it remotely): the documents of
    the symbols the arguments hold; with ``write``, each written with its ``pooled`` section (the
    only universe-level part that is per symbol) and a light view of it returned."""
    import ray

    start = time.perf_counter()
    pooled = {f: replace(o, results=ray.get(o.results)) if isinstance(o.results, ray.ObjectRef) else o
              for f, o in pooled.items()}
    documents = symbol_documents(records, finals, counts, meta, derived, defaults)
    if not write:
        return BatchOutcome(documents, time.perf_counter() - start, 0.0)
    views = {key: light_view(doc) for key, doc in documents.items()}
    add_pooled(documents, pooled)
    storage = Storage(*storage_at)
    writing = time.perf_counter()
    for key, doc in documents.items():
        storage.write_json(winner_file(key), doc)
    now = time.perf_counter()
    return BatchOutcome(views, now - start, now - writing)


def add_decisions_to_files(storage_at: tuple[str, str], decisions: Mapping[Key, Any]) -> float:
    """A second-round task: each symbol's ``decision`` added to its winner's file (read back as
    the first round wrote it: a JSON round trip keeps every value, and the key goes last, where
    the serial path puts it). Returns the seconds it took."""
    start = time.perf_counter()
    storage = Storage(*storage_at)
    for key, decision in decisions.items():
        doc = storage.read_json(winner_file(key))
        doc["decision"] = decision
        storage.write_json(winner_file(key), doc)
    return time.perf_counter() - start


def _of_symbols(mapping: Mapping[Any, Any], symbols: list[str], by_study: bool = True):
    """``mapping``'s entries of ``symbols`` (keyed by study; by symbol when not ``by_study``);
    for results held by a store actor, a reference to them (the store sends them to the task)."""
    if isinstance(mapping, StoredResults):
        return mapping.ref_of(symbols)
    chosen = set(symbols)
    return {k: v for k, v in mapping.items() if (k[0] if by_study else k) in chosen}


@dataclass
class TaskCollator:
    """:class:`tuner.engine.collate.Collator` on Ray: per-symbol documents in batched tasks.

    Attributes:
        cpus: the CPUs the tasks may use (sizes the batches; default: the cluster's).
        write_in_tasks: tasks write the files and send light views back (default), or send
            whole documents and the driver writes them after the decisions.
        on_done: ``tick(done, total)``: symbols collated so far (the progress view).
        stats: filled as it runs: tasks, symbols per task, seconds (summary's ``collation``).
    """

    cpus: float | None = None
    write_in_tasks: bool = True
    on_done: Callable[[int, int], None] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def pooled_written(self) -> bool:
        return self.write_in_tasks

    def _task_cpus(self) -> float:
        import ray

        total = float(ray.cluster_resources().get("CPU", 1.0))
        self.cpus = self.cpus if self.cpus is not None else total
        return min(1.0, total)  # a cluster with less than one CPU still runs them

    def documents(self, storage, trials, finals, counts, meta, derived, defaults, pooled):
        import ray

        task_cpus = self._task_cpus()
        # Trials held by an actor go from it to each task through the object store (a task's
        # top-level reference is resolved before it runs); the driver never fetches them.
        fetch = getattr(trials, "records_ref", None)
        by_symbol: dict[str, list[TrialRecord]] = {}
        if fetch is None:
            for r in trials.records_of(None):
                by_symbol.setdefault(r.symbol, []).append(r)
        symbols = sorted({s for s, _ in finals} | {s for s, _ in derived})
        groups = batches(symbols, self.cpus or 1.0)
        remote = ray.remote(collate_batch).options(num_cpus=task_cpus)
        at, meta_ref = (storage.base, storage.name), ray.put(dict(meta))

        def submit(group: list[str]):
            def pick(mapping: Mapping[Key, Any]):
                return _of_symbols(mapping, group)

            # A store's pooled results reach the task as references it resolves itself.
            batch_pooled = {f: replace(o, results=_of_symbols(o.results, group, by_study=False))
                            for f, o in pooled.items()}
            records = fetch(group) if fetch is not None else [r for s in group for r in by_symbol.get(s, [])]
            return remote.remote(at, records, pick(finals), pick(counts),
                                 meta_ref, pick(derived), pick(defaults), batch_pooled, self.write_in_tasks)

        # A few batches in flight per CPU, the next submitted as one finishes: the arguments
        # waiting in the object store stay bounded whatever the universe's size.
        queue, pending = list(reversed(groups)), {}
        in_flight = IN_FLIGHT_PER_CPU * max(1, math.ceil(self.cpus or 1.0))
        gathered: dict[Key, dict[str, Any]] = {}
        shared: dict[str, Any] = {}
        done, seconds, write_s = 0, [], 0.0
        while queue or pending:
            while queue and len(pending) < in_flight:
                group = queue.pop()
                pending[submit(group)] = len(group)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                outcome: BatchOutcome = ray.get(ref)  # a task's error is raised here, as its own type
                for doc in outcome.documents.values():
                    share_settings(doc, shared)
                gathered.update(outcome.documents)
                seconds.append(outcome.seconds)
                write_s += outcome.write_s
                done += pending.pop(ref)
                if self.on_done is not None:
                    self.on_done(done, len(symbols))
        self.stats.update({"tasks": len(groups), "symbols": len(symbols), "task_cpus": task_cpus,
                           "symbols_per_task": max(map(len, groups), default=0),
                           "written_by_tasks": self.write_in_tasks,
                           "task_s": round(sum(seconds), 3), "longest_task_s": round(max(seconds, default=0.0), 3),
                           "task_write_s": round(write_s, 3)})
        # The serial path's order (the panel tests take the documents in it).
        order = [k for k in trials.winner_order(meta.get("max_latency_s")) if k in finals] + list(derived)
        return {k: gathered[k] for k in order if k in gathered}

    def write(self, storage, documents) -> None:
        import ray

        if not self.write_in_tasks:
            SerialCollator().write(storage, documents)
            return
        decided = {key: doc["decision"] for key, doc in documents.items() if "decision" in doc}
        symbols = sorted({s for s, _ in decided})
        remote = ray.remote(add_decisions_to_files).options(num_cpus=self._task_cpus())
        at = (storage.base, storage.name)
        pending = []
        for group in batches(symbols, self.cpus or 1.0):
            pending.append(remote.remote(at, _of_symbols(decided, group)))
        seconds = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            seconds.extend(ray.get(ready))
        self.stats.update({"decision_tasks": len(seconds), "decision_task_s": round(sum(seconds), 3)})
