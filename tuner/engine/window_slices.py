"""The universe's windows, cut and kept on the cluster rather than in the driver.

Every study needs its symbol's validation, test and stability-fold windows at each family's
context length. Cutting them in the driver cost, at 10,000 symbols × 1 family, 142 s of one core
and 278 MB of the driver's memory, and putting them in the object store another 207 MB of shared
pages mapped by the driver (measured, 10,000 × 2). So Ray tasks read the data files and cut the
windows, a slice of files per task, and each task's windows go straight to the object store as
one object (family → symbol → :class:`~tuner.core.windows.Periods`: what the model actors
fetch). The driver gets back only each slice's small :class:`SliceFacts` (what each file held,
each symbol's window counts and dates, the cuts that failed) and settles the sources from them
(:func:`~tuner.core.data.settle_sources`: a symbol in two files, letter-case clashes, missing
symbols) exactly as :func:`~tuner.core.data.load_dataset` does.

The tasks run on the driver's node: on a cluster only the head has the data (``cluster/*.yaml``
mounts it there). Work that needs the windows after tuning, the blend and regime candidates,
runs as tasks on the slices too (:func:`derive_candidates`), on any node.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.core.candidates import WinnerForecasts, symbol_candidates
from tuner.core.config import load_family_config
from tuner.core.data import SourceRead, bundled_data_path, list_sources, read_source, settle_sources
from tuner.core.errors import DataError
from tuner.core.windows import (
    Periods,
    WindowSpec,
    make_periods,
    series_arrays,
    window_counts,
)
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.task_errors import get_raising_cause

WINDOW_SLICE = 500
"""Data files per task, and so per object-store object of windows: small objects whatever the
universe's size (a file holding many symbols is one slice)."""

Key = tuple[str, str]


@dataclass(frozen=True)
class SymbolWindows:
    """What the driver keeps of one symbol's windows.

    Attributes:
        families: the families whose windows were cut (in the experiment's order).
        counts: the window counts (:func:`~tuner.core.windows.window_counts`) at the first of
            them's context length.
        test_times: each test window's target time (datetime64, 8 bytes each; the driver makes
            them the ISO strings of :func:`~tuner.core.windows.target_dates`), same family: the
            panel tests cluster on them (tuner.engine.universe_decisions), and nothing reads
            the other periods' dates.
    """

    families: tuple[str, ...]
    counts: dict[str, int]
    test_times: np.ndarray


@dataclass(frozen=True)
class SliceFacts:
    """What one cutting task sends back to the driver (its windows stay in the object store).

    Attributes:
        reads: each of its files' :class:`~tuner.core.data.SourceRead`, in file order.
        symbols: each wanted symbol whose windows were cut for at least one family.
        cut_errors: (symbol, family) → why its windows could not be cut (too few bars).
    """

    reads: list[SourceRead]
    symbols: dict[str, SymbolWindows]
    cut_errors: dict[Key, str]


@dataclass
class UniverseWindows:
    """Every study's windows, held in the object store, and what the driver keeps of them.

    Attributes:
        refs: one object reference per slice (family → symbol → Periods); the driver owns
            them for the whole run, because a restarted model actor fetches them again.
        studies: the (symbol, family) studies to run, symbols in order.
        skipped: what was not usable and why (files, symbols, ``symbol/family`` cuts).
        windows_used: symbol → its window counts.
        window_dates: symbol → ``test`` → each test window's target date; a date is one
            string whatever the number of symbols that share it (a universe shares a calendar).
            Symbols with equal counts (or dates) share one object: read them, never modify.
        slice_of: symbol → the index of its slice in ``refs``.
    """

    refs: list
    studies: list[Key]
    skipped: dict[str, str]
    windows_used: dict[str, dict[str, int]]
    window_dates: dict[str, dict[str, list[str]]]
    slice_of: dict[str, int]


def cut_slice(files: list[Path], wanted: frozenset[str] | None, spec: WindowSpec,
              contexts: Mapping[str, int]) -> tuple[dict[str, dict[str, Periods]], SliceFacts]:
    """Read ``files`` and cut every wanted symbol's windows for each family's context length
    (``contexts``, in the experiment's family order): the windows, and the facts about them."""
    windows: dict[str, dict[str, Periods]] = {family: {} for family in contexts}
    reads, symbols, cut_errors = [], {}, {}
    for file in files:
        read, found = read_source(file)
        reads.append(read)
        for bars in found:
            if wanted is not None and bars.symbol not in wanted:
                continue
            series = series_arrays(bars)  # one read-only copy, shared by every family's windows
            cut: dict[str, Periods] = {}
            for family, context in contexts.items():
                try:
                    cut[family] = windows[family][bars.symbol] = make_periods(bars, spec, context, series=series)
                except DataError as e:
                    cut_errors[(bars.symbol, family)] = str(e)
            if cut:
                first = next(iter(cut.values()))
                symbols[bars.symbol] = SymbolWindows(tuple(cut), window_counts(first),
                                                     np.ascontiguousarray(first.test.future_times[:, -1]))
    return windows, SliceFacts(reads, symbols, cut_errors)


@dataclass(frozen=True)
class CuttingPlan:
    """How the cutting tasks share the driver's node.

    Attributes:
        task_cpus: each task's CPU request: 1, or 0 on a node that lends no CPU to tasks (a
            head started with ``--num-cpus 0``: the tasks still run there, where the data is).
        in_flight: tasks submitted at once (the node's CPUs, at least 1).
        files_per_task: at most :data:`WINDOW_SLICE`, fewer so that every CPU gets a task.
    """

    task_cpus: int
    in_flight: int
    files_per_task: int


def cutting_plan(files: int, node_cpus: float) -> CuttingPlan:
    """The :class:`CuttingPlan` for ``files`` data files on a node with ``node_cpus`` CPUs."""
    in_flight = max(1, int(node_cpus))
    return CuttingPlan(1 if node_cpus >= 1 else 0, in_flight,
                       max(1, min(WINDOW_SLICE, math.ceil(files / in_flight))))


def cut_windows(config: ExperimentConfig) -> UniverseWindows:
    """Read the experiment's data and cut its windows in Ray tasks on this node.

    Raises:
        DataError: nothing to tune (the message says why for each symbol), or the data source
            itself is missing or empty.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    source = config.data or bundled_data_path()
    listing = list_sources(source, config.symbols)
    families = list(config.families)
    contexts = {family: load_family_config(family).context_length for family in families}
    here = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["NodeID"] == here), 0.0)
    plan = cutting_plan(len(listing.files), cpus)
    task = ray.remote(cut_slice).options(
        num_returns=2, num_cpus=plan.task_cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
    batches = [listing.files[i:i + plan.files_per_task] for i in range(0, len(listing.files), plan.files_per_task)]
    refs: list = [None] * len(batches)
    facts: list = [None] * len(batches)
    running: dict[Any, int] = {}  # facts' reference → batch index
    for i, batch in enumerate(batches):
        if len(running) >= plan.in_flight:
            _collect(running, facts)
        refs[i], facts_ref = task.remote(batch, listing.wanted, config.windows, contexts)
        running[facts_ref] = i
    while running:
        _collect(running, facts)
    return _settle(listing, source, families, refs, facts)


def _collect(running: dict[Any, int], facts: list) -> None:
    """Wait for one running task; keep its facts (its error raised as itself)."""
    import ray

    ready, _ = ray.wait(list(running), num_returns=1)
    for ref in ready:
        facts[running.pop(ref)] = get_raising_cause(ref)


def _settle(listing, source, families: list[str], refs: list, facts: list[SliceFacts]) -> UniverseWindows:
    """The studies and what was skipped, in the order a serial load and cut gives them."""
    settled = settle_sources(listing, [read for part in facts for read in part.reads])
    skipped: dict[str, str] = {str(f): why for f, why in settled.skipped}
    skipped.update({symbol: str(err) for symbol, err in settled.errors.items()})
    usable = sorted(settled.symbols)
    where = {symbol: i for i, part in enumerate(facts) for symbol in part.symbols}
    cut_errors = {key: why for part in facts for key, why in part.cut_errors.items()}
    for symbol in usable:
        for family in families:
            if (symbol, family) in cut_errors:
                skipped[f"{symbol}/{family}"] = cut_errors[(symbol, family)]
    cut = {symbol: facts[where[symbol]].symbols[symbol] for symbol in usable if symbol in where}
    studies = [(symbol, family) for symbol in usable if symbol in cut for family in families
               if family in cut[symbol].families]
    if not studies:
        raise DataError(f"{source}: nothing to tune; " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    shared: dict[Any, Any] = {}
    used, dates = {}, {}
    for symbol, w in cut.items():
        used[symbol] = _shared(shared, tuple(w.counts.items()), lambda w=w: w.counts)
        dates[symbol] = _shared(shared, ("test", w.test_times.dtype.str, w.test_times.tobytes()),
                                lambda w=w: {"test": _interned_dates(w.test_times)})
    return UniverseWindows(refs, studies, skipped, windows_used=used, window_dates=dates,
                           slice_of={symbol: where[symbol] for symbol in cut})


def _shared(shared: dict[Any, Any], key: Hashable, make: Callable[[], Any]) -> Any:
    """The object ``shared`` keeps under ``key``, made by ``make`` (and kept) the first time.
    Symbols that share a calendar have equal window counts and dates: one object each instead of
    one per symbol (8 MB at 10,000 symbols). Nothing mutates them once cut."""
    if key not in shared:
        shared[key] = make()
    return shared[key]


def _interned_dates(times: np.ndarray) -> list[str]:
    """:func:`~tuner.core.windows.target_dates` of ``times``, each date one string object however
    many symbols share it (a universe shares a calendar: 10,000 symbols' copies were tens of MB)."""
    return [sys.intern(date) for date in np.datetime_as_string(times, unit="s").tolist()]


def derive_candidates(windows: UniverseWindows, found: Mapping[str, Mapping[str, WinnerForecasts]],
                      max_latency_s: float | None, seed: int) -> dict[Key, dict[str, Any]]:
    """Each symbol's blend and regime candidates (:func:`~tuner.core.candidates.symbol_candidates`)
    from its family winners' forecasts ``found`` (symbol → family → forecasts), computed by one
    task per slice of windows. Returns (symbol, kind) → document, symbols in ``found``'s order."""
    import ray

    by_slice: dict[int, dict[str, Mapping[str, WinnerForecasts]]] = {}
    for symbol, forecasts in found.items():
        by_slice.setdefault(windows.slice_of[symbol], {})[symbol] = forecasts
    task = ray.remote(_slice_candidates).options(num_cpus=1)
    parts = get_raising_cause([task.remote(windows.refs[i], chunk, max_latency_s, seed)
                               for i, chunk in by_slice.items()])
    made = {symbol: docs for part in parts for symbol, docs in part.items()}
    return {(symbol, kind): doc for symbol in found for kind, doc in made[symbol].items()}


def _slice_candidates(windows: Mapping[str, Mapping[str, Periods]],
                      found: Mapping[str, Mapping[str, WinnerForecasts]], max_latency_s: float | None,
                      seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """One slice's candidates; a symbol's periods are those of its first winner's family."""
    return {symbol: symbol_candidates(symbol, windows[next(iter(forecasts))][symbol], forecasts,
                                      max_latency_s, seed)
            for symbol, forecasts in found.items()}
