"""Collation: every trial of an experiment → winners per study, result files, summary, trial table.

Ray-free: the experiment driver turns Tune's results into :class:`TrialRecord` values and hands
them here. Nothing is dropped silently: trials that failed or never ran are counted per study
and listed in the trial table with their status.

Files, under ``<storage>/<experiment>/``:

* ``<family>/<SYMBOL>.json``: the study's winner (SPEC.md layout) with its validation score (the
  trial's own value), its test-period score and the naive baseline on both periods;
* ``summary.json`` (short: run facts, trial counts, decisions' tallies) with ``symbols.parquet``
  (per symbol the best family by validation pct_return_mae, its scores and decision) and
  ``studies.parquet`` (per study its trial counts, and why it has no winner) beside it: see
  :mod:`tuner.core.summary_tables`;
* ``trials.parquet``: one row per trial: config, metrics, latency, timings, node, status, error.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from tuner.core import strict_json
from tuner.core.candidates import label_candidate
from tuner.core.pooled import PooledOutcome, WindowDates
from tuner.core.storage import TRIALS_FILE, Storage
from tuner.core.summary_tables import write_summary
from tuner.core.trial import TrialResult
from tuner.engine.universe_decisions import add_decisions, base_family

COMPLETED, FAILED, NEVER_RAN = "completed", "failed", "never_ran"
DERIVED = ("blend", "regime")
"""Candidates built from the family winners (see tuner.core.candidates)."""


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the driver saw it.

    Attributes:
        trial_id: Tune's trial id ('' for trials that never ran).
        symbol, family: the study.
        status: ``completed``, ``failed`` or ``never_ran``.
        config: the trial's parameters (empty if it never ran).
        metrics: what the trial reported (pct_return_mae, price_mae, latency_s, timings, node...).
        error: the error message of a failed trial.
        number: the trial's position among its study's finished trials (its Optuna number).
        session: the run session that ran it (1 = first run, 2 = first resume...).
    """

    trial_id: str
    symbol: str
    family: str
    status: str
    config: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    number: int | None = None
    session: int | None = None

    @property
    def objective(self) -> float:
        value = self.metrics.get("pct_return_mae")
        return float(value) if value is not None else math.inf


def study_key(symbol: str, family: str) -> str:
    return f"{symbol}/{family}"


def pick_winners(records: Iterable[TrialRecord], max_latency_s: float | None = None
                 ) -> dict[tuple[str, str], TrialRecord]:
    """Per (symbol, family), the completed trial with the lowest validation pct_return_mae
    (ties: the earlier trial id, so the choice is reproducible). With ``max_latency_s``, only
    trials whose validation latency per forecast is within it can win."""
    best: dict[tuple[str, str], TrialRecord] = {}
    for r in records:
        if r.status != COMPLETED or not math.isfinite(r.objective):
            continue
        if max_latency_s is not None and r.metrics.get("latency_per_forecast_s", math.inf) > max_latency_s:
            continue
        key = (r.symbol, r.family)
        if key not in best or (r.objective, r.trial_id) < (best[key].objective, best[key].trial_id):
            best[key] = r
    return best


def trial_counts(records: Iterable[TrialRecord], studies: Iterable[tuple[str, str]],
                 budget: int) -> dict[tuple[str, str], dict[str, int]]:
    """Per study: completed, failed and never-ran counts against the budget. A trial that failed
    is retried by a resume, so failed attempts of earlier sessions stay counted (a resume never
    hides them) while never-ran is what the budget still lacks."""
    counts = {s: {COMPLETED: 0, FAILED: 0, NEVER_RAN: 0, "budget": budget} for s in studies}
    for r in records:
        counts.setdefault((r.symbol, r.family), {COMPLETED: 0, FAILED: 0, NEVER_RAN: 0, "budget": budget})
        counts[(r.symbol, r.family)][r.status] += 1
    for c in counts.values():
        c[NEVER_RAN] = max(0, budget - c[COMPLETED] - c[FAILED])
    return counts


def winner_document(winner: TrialRecord, final: TrialResult, counts: Mapping[str, int],
                    meta: Mapping[str, Any]) -> dict[str, Any]:
    """The SPEC.md result file of one study.

    ``final`` is the winner scored on the test period (same seed), with its trial's own
    validation scores (:func:`tuner.engine.rescoring.score_winners`; a winner whose record
    lacks them was run again on that period, and its validation block is still replaced by the
    trial's reported scores, which are what tuning chose on).
    """
    doc = final.to_dict()
    own = {k: winner.metrics[k] for k in ("pct_return_mae", "price_mae", "latency_s",
                                            "latency_per_forecast_s", "windows", "skill")
           if k in winner.metrics}
    doc["validation"] = {**doc["validation"], **own}
    doc["trials"] = dict(counts)
    doc["trial_id"] = winner.trial_id
    doc["experiment"] = meta.get("experiment")
    # The spec, and the counts this symbol actually got (auto periods differ per symbol).
    doc["windows"] = {**(meta.get("windows") or {}), **(meta.get("windows_used") or {}).get(final.symbol, {})}
    doc["data"] = meta.get("data")
    doc["created_at"] = meta.get("created_at")
    return doc


def symbol_entries(documents: Mapping[tuple[str, str], dict]) -> dict[str, dict[str, Any]]:
    """Per symbol of ``documents``, its summary entry: every family's (and candidate's) scores,
    the best one by validation pct_return_mae (``best_family``) with its config, baseline,
    skill and significance. Each entry reads only its own symbol's documents, so a collation
    task makes its batch's (:mod:`tuner.engine.collate_tasks`)."""
    symbols: dict[str, dict[str, Any]] = {}
    for (symbol, family), doc in sorted(documents.items()):
        entry = symbols.setdefault(symbol, {"families": {}})
        entry["families"][family] = {
            "validation_pct_return_mae": doc["validation"]["pct_return_mae"],
            "test_pct_return_mae": doc["test"]["pct_return_mae"] if doc.get("test") else None,
            "latency_per_forecast_s": doc["validation"].get("latency_per_forecast_s"),
            "config": doc["config"],
        }
    for symbol, entry in symbols.items():
        # Ties go to a family winner over a candidate derived from it (blend/regime).
        family, best = min(entry["families"].items(),
                           key=lambda kv: (kv[1]["validation_pct_return_mae"], kv[0] in DERIVED))
        doc = documents[(symbol, family)]
        entry.update({
            "best_family": family,
            "config": doc["config"],
            "validation_pct_return_mae": best["validation_pct_return_mae"],
            "test_pct_return_mae": best["test_pct_return_mae"],
            "baseline_validation_pct_return_mae": doc["baseline"]["validation"]["pct_return_mae"],
            "baseline_test_pct_return_mae": (doc["baseline"]["test"] or {}).get("pct_return_mae"),
            "validation_skill": doc["validation"].get("skill"),
            "validation_skill_reason": doc["validation"].get("skill_reason"),
            "test_skill": doc["test"].get("skill") if doc.get("test") else None,
            "test_skill_reason": (doc.get("test") or {}).get("skill_reason"),
            "beats_baseline": best["validation_pct_return_mae"]
            < doc["baseline"]["validation"]["pct_return_mae"],
            "stability_spread": (doc.get("stability") or {}).get("spread"),
            "significance": doc.get("significance"),
        })
    return symbols


def summary_head(counts: Mapping[tuple[str, str], Mapping[str, int]], meta: Mapping[str, Any],
                 documented: Collection[tuple[str, str]]) -> dict[str, Any]:
    """The summary's universe-level part: run facts (``meta``), ``complete``, the ``trials``
    totals, each study's counts (``studies``) and why a study has no result file
    (``studies_without_winner``; ``documented``: the studies that have one)."""
    totals = {COMPLETED: 0, FAILED: 0, NEVER_RAN: 0}
    for c in counts.values():
        for k in totals:
            totals[k] += c[k]
    limit = meta.get("max_latency_s")
    reasons = {study_key(*key): (f"no completed trial within max_latency_s {limit:g} s per forecast"
                                 if limit is not None and counts[key][COMPLETED] else "no completed trial")
               for key in sorted(counts) if key not in documented}
    return {
        **meta,
        # Failed attempts are retried by a resume: complete = every study has its budget completed.
        "complete": all(c[COMPLETED] >= c["budget"] for c in counts.values()),
        "trials": totals,
        "studies": {study_key(*k): dict(v) for k, v in sorted(counts.items())},
        "studies_without_winner": reasons,
    }


def build_summary(documents: Mapping[tuple[str, str], dict], counts: Mapping[tuple[str, str], Mapping[str, int]],
                  meta: Mapping[str, Any]) -> dict[str, Any]:
    """The summary in memory: :func:`summary_head` and every symbol's entry (``symbols``,
    :func:`symbol_entries`). Written as a short ``summary.json`` and two tables by
    :func:`tuner.core.summary_tables.write_summary`."""
    return {**summary_head(counts, meta, documents), "symbols": symbol_entries(documents)}


def trials_table(records: Iterable[TrialRecord]):
    """One row per trial (pandas DataFrame): study, status, params, metrics, timings, node, error."""
    import pandas as pd

    rows = []
    for r in records:
        row: dict[str, Any] = {"trial_id": r.trial_id, "study": study_key(r.symbol, r.family),
                               "number": r.number, "session": r.session,
                               "symbol": r.symbol, "family": r.family,
                               "status": r.status, "error": r.error,
                               "config": strict_json.dumps(dict(r.config), sort_keys=True)}
        row.update({f"param_{k}": v for k, v in r.config.items()})
        row.update({k: v for k, v in r.metrics.items() if not isinstance(v, (dict, list))})
        row["errors"] = r.metrics.get("errors")  # per-window validation errors (a list column)
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Mixed-type parameter columns (e.g. top_k int vs None) must still serialise to Parquet.
    for col in frame.columns:
        if col.startswith("param_") and frame[col].map(type).nunique() > 1:
            frame[col] = frame[col].astype(str)
    return frame


def add_significance(documents: dict[tuple[str, str], dict[str, Any]], records: Iterable[TrialRecord],
                     defaults: Mapping[tuple[str, str], TrialResult], meta: Mapping[str, Any]) -> None:
    """Give every family winner its ``default`` (the family default config's scores) and its
    ``significance`` section (:func:`tuner.core.statistics.significance.winner_significance`): against the
    baseline and the default on both periods, SPA/Reality Check and PBO over the study's trials,
    and the symbol's Model Confidence Set over every candidate's test errors (computed once per
    symbol and shared by its winners)."""
    from tuner.core.statistics.significance import (
        MCS_ALPHA,
        MCSResult,
        errors_of,
        model_confidence_set,
        winner_significance,
    )

    horizon = int((meta.get("windows") or {}).get("horizon", 1))
    seed = int(meta.get("seed") or 0)
    trial_errors: dict[tuple[str, str], list[list[float]]] = {}
    for r in records:
        if r.status == COMPLETED and r.metrics.get("errors"):
            trial_errors.setdefault((r.symbol, r.family), []).append(list(r.metrics["errors"]))
    by_symbol: dict[str, dict[str, list[float]]] = {}
    for (symbol, family), doc in sorted(documents.items()):
        model, base = errors_of(doc)
        if model["test"] is not None:
            by_symbol.setdefault(symbol, {})[family] = model["test"]
            if base["test"] is not None:
                by_symbol[symbol]["baseline"] = base["test"]
        if family in DERIVED:
            # Issue 23: a blend/regime gets the same section (it runs no trials: no SPA or PBO),
            # against the default of the symbol's best family winner.
            base_default = defaults.get((symbol, base_family(symbol, family, documents)))
            doc["significance"] = winner_significance(
                model, base, errors_of(base_default.to_dict())[0] if base_default is not None else None,
                trials=None, candidates=None, horizon=horizon, seed=seed)
            doc["significance"]["reasons"]["spa_p_value"] = doc["significance"]["reasons"][
                "reality_check_p_value"] = doc["significance"]["reasons"]["pbo"] = (
                f"a {family} candidate runs no trials of its own")
            continue
        default = defaults.get((symbol, family))
        if default is not None:
            doc["default"] = default.to_dict()
        columns = trial_errors.get((symbol, family), [])
        trials = (list(map(list, zip(*columns, strict=True)))
                  if columns and len({len(c) for c in columns}) == 1 else None)
        doc["significance"] = winner_significance(
            model, base, errors_of(doc["default"])[0] if default is not None else None,
            trials=trials, candidates=None, horizon=horizon, seed=seed)
    for symbol, candidates in by_symbol.items():
        if len(candidates) < 3:  # the winner and the baseline: vs_baseline already compares them
            mcs = MCSResult(None, None, MCS_ALPHA, len(next(iter(candidates.values()))),
                            "only one candidate besides the baseline: vs_baseline compares them")
        else:
            mcs = model_confidence_set(candidates, horizon=horizon, seed=seed)
        section = {**mcs.to_dict(), "period": "test"}
        for (sym, _), doc in documents.items():
            if sym == symbol and "significance" in doc:
                doc["significance"]["mcs"] = section
                doc["significance"]["reasons"].pop("mcs", None)
                if mcs.members is None:
                    doc["significance"]["reasons"]["mcs"] = mcs.reason or "not computed"


def symbol_documents(records: Iterable[TrialRecord], finals: Mapping[tuple[str, str], TrialResult],
                     counts: Mapping[tuple[str, str], Mapping[str, int]], meta: Mapping[str, Any],
                     derived: Mapping[tuple[str, str], dict[str, Any]] | None = None,
                     defaults: Mapping[tuple[str, str], TrialResult] | None = None
                     ) -> dict[tuple[str, str], dict[str, Any]]:
    """Every result document of the symbols the arguments hold, with its ``default`` and
    ``significance`` (not yet ``pooled`` or ``decision``: those need the universe). Nothing here
    looks beyond one symbol, so a subset of symbols (a Ray task's batch, see
    :mod:`tuner.engine.collate_tasks`) gives the same documents as the whole experiment.

    ``records`` must hold every trial of those symbols' studies; ``counts`` their counts
    (:func:`trial_counts`); ``meta`` the run facts with ``created_at``. Order: the family
    winners in the order :func:`pick_winners` finds them, then ``derived``'s."""
    records = list(records)
    documents = {}
    for key, winner in pick_winners(records, meta.get("max_latency_s")).items():
        if key in finals:
            documents[key] = winner_document(winner, finals[key], counts[key], meta)
    for key, doc in (derived or {}).items():
        documents[key] = label_candidate(doc, documents, counts, meta)
    add_significance(documents, records, defaults or {}, meta)
    return documents


Key = tuple[str, str]


@runtime_checkable
class Trials(Protocol):
    """An experiment's trial records, wherever they are held: in this process
    (:class:`TrialList`) or in a Ray actor (:class:`tuner.engine.trial_store.StoredTrials`, so
    the driver never holds every trial of a large universe). Pooled records are not among them."""

    def counts(self, studies: Iterable[Key], budget: int) -> dict[Key, dict[str, int]]:
        """:func:`trial_counts` over every record."""
        ...

    def records_of(self, symbols: Iterable[str] | None) -> list[TrialRecord]:
        """Every record of ``symbols`` (None: of every symbol), in the order they were written."""
        ...

    def write_table(self, storage: Storage) -> None:
        """Write ``trials.parquet`` (:func:`trials_table`) under ``storage``."""
        ...


@dataclass(frozen=True)
class TrialList:
    """:class:`Trials` held in this process (tests, the serial path without Ray)."""

    records: list[TrialRecord]

    def counts(self, studies, budget):
        return trial_counts(self.records, studies, budget)

    def records_of(self, symbols):
        if symbols is None:
            return list(self.records)
        chosen = set(symbols)
        return [r for r in self.records if r.symbol in chosen]

    def write_table(self, storage):
        storage.write_parquet(TRIALS_FILE, trials_table(self.records))


@dataclass(frozen=True)
class Collated:
    """What collation leaves for the summary, every result file written.

    Attributes:
        documented: the studies (and derived candidates) that got a result file.
        tallies: summary.json's ``decisions``; panel: its ``panel``.
        symbols: every symbol's summary entry, decision included (the serial path), or None.
        symbols_written: else the rows of ``symbols.parquet``, which collation wrote itself.
    """

    documented: frozenset[tuple[str, str]]
    tallies: dict[str, Any]
    panel: dict[str, Any]
    symbols: Mapping[str, dict[str, Any]] | None = None
    symbols_written: int | None = None


class Collator(Protocol):
    """How :func:`write_experiment` builds, decides and stores the result documents: in this
    process (:class:`SerialCollator`) or as Ray tasks
    (:class:`tuner.engine.collate_tasks.TaskCollator`)."""

    def collate(self, storage: Storage, trials: Trials, finals: Mapping[tuple[str, str], TrialResult],
                counts: Mapping[tuple[str, str], Mapping[str, int]], meta: Mapping[str, Any],
                derived: Mapping[tuple[str, str], dict[str, Any]], defaults: Mapping[tuple[str, str], TrialResult],
                pooled: Mapping[str, PooledOutcome], window_dates: WindowDates | None) -> Collated:
        """Every symbol's documents (:func:`symbol_documents`) with their ``pooled`` section, the
        universe's decisions (:func:`tuner.engine.universe_decisions.decide_universe`), each
        symbol's ``decision`` in its winner's document and entry; every document stored
        (``<family>/<SYMBOL>.json``)."""
        ...

    def write_summary(self, storage: Storage, summary: dict[str, Any], collated: Collated) -> dict[str, Any]:
        """The summary's tables and ``summary.json``
        (:func:`tuner.core.summary_tables.write_summary`); returns the short summary."""
        ...


class SerialCollator:
    """Every document built, decided and written here in the calling process (tests, no Ray)."""

    def collate(self, storage, trials, finals, counts, meta, derived, defaults, pooled, window_dates) -> Collated:
        documents = symbol_documents(trials.records_of(None), finals, counts, meta, derived, defaults)
        summary: dict[str, Any] = {"symbols": symbol_entries(documents)}
        add_decisions(documents, summary, pooled=pooled, window_dates=window_dates, horizon=horizon_of(meta))
        for key, doc in documents.items():
            storage.write_json(winner_file(key), doc)
        return Collated(frozenset(documents), summary["decisions"], summary["panel"], symbols=summary["symbols"])

    def write_summary(self, storage, summary, collated: Collated) -> dict[str, Any]:
        return write_summary(storage, summary, collated.symbols, symbols_written=collated.symbols_written)


def horizon_of(meta: Mapping[str, Any]) -> int:
    """The forecast horizon of a run (``meta``'s windows spec; 1 when it has none)."""
    return int((meta.get("windows") or {}).get("horizon", 1))


def winner_file(key: tuple[str, str]) -> tuple[str, str]:
    """A study's result file: names, not a path, so a symbol cannot add folders."""
    return (key[1], f"{key[0]}.json")


def write_experiment(storage: Storage, records: Iterable[TrialRecord] | Trials, finals: Mapping[tuple[str, str], TrialResult],
                     studies: list[tuple[str, str]], budget: int, meta: Mapping[str, Any],
                     derived: Mapping[tuple[str, str], dict[str, Any]] | None = None,
                     unscored: Mapping[tuple[str, str], str] | None = None,
                     defaults: Mapping[tuple[str, str], TrialResult] | None = None, *,
                     pooled: Mapping[str, PooledOutcome] | None = None,
                     window_dates: WindowDates | None = None,
                     collator: Collator | None = None) -> dict[str, Any]:
    """Write every winner file, ``trials.parquet``, ``symbols.parquet``, ``studies.parquet`` and
    ``summary.json``; return the short summary as written (the tables are read back through
    :class:`tuner.core.summary_tables.ExperimentSummary`).

    ``records``: every trial record (pooled ones excluded), or a :class:`Trials` holding them
    (the engine's keeps them in a Ray actor, which writes ``trials.parquet`` itself).
    ``derived`` holds candidates built from the winners ((symbol, "blend"|"regime") → result
    document, see :mod:`tuner.core.candidates`); they are written beside the families' files and
    compete for the best family of their symbol. ``unscored``: studies whose winner could not
    be re-scored on the test period (its actors died), and why; they get no winner file.
    ``defaults``: each study's family default config scored on both periods (same seed): the
    winner file shows it, and its ``significance`` section tests the winner against it.
    ``pooled`` (family → its pooled config's outcome) and ``window_dates`` (each window's date,
    for the panel tests' clustering) feed each symbol's universe-level ``decision`` and the
    summary's ``decisions`` and ``panel`` (:mod:`tuner.engine.universe_decisions`); without
    ``pooled`` each decision is own vs default. ``collator``: where the documents are built,
    decided and written (default: here, :class:`SerialCollator`; the engine's
    :class:`~tuner.engine.collate_tasks.TaskCollator` does it in Ray tasks, and this process
    then holds neither documents nor summary entries, only the universe-level summary)."""
    meta = {**meta, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    collator = collator or SerialCollator()
    trials = records if isinstance(records, Trials) else TrialList(list(records))
    counts = trials.counts(studies, budget)
    collated = collator.collate(storage, trials, finals, counts, meta, derived or {}, defaults or {},
                                pooled or {}, window_dates)
    summary = summary_head(counts, meta, collated.documented)
    summary["decisions"], summary["panel"] = collated.tallies, collated.panel
    for key, why in (unscored or {}).items():
        summary["studies_without_winner"][study_key(*key)] = why
    trials.write_table(storage)
    return collator.write_summary(storage, summary, collated)

