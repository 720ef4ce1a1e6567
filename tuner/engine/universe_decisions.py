"""From an experiment's result documents to every symbol's ``decision`` and the ``panel`` tests.

Collation calls :func:`decision_inputs` where the documents are (per batch in the collation
tasks, :mod:`tuner.engine.collate_tasks`; for every symbol in the serial path,
:func:`add_decisions`) and :func:`decide_universe` once on all of them. The rule and the statistics live in the
core (:mod:`tuner.core.statistics.universe`, :mod:`tuner.core.statistics.panel`); this module only finds, per symbol,
the per-window test errors they compare:

* **own**: the symbol's winner (``best_family``: a family winner, blend or regime);
* **default**: the default config of the family the winner belongs to; for a blend or regime
  (built from several families), that of the symbol's best family winner by validation;
* **pooled**: that family's pooled config scored on this symbol (``pooled``, handed over by the
  engine), when the family has one.

The panel tests (summary ``panel``), on the test period, clustered by date (``window_dates``; by
window index without them): per family, its winners and its pooled config against its default
and against the naive baseline over every symbol that family has a winner for; and the
decisions: every symbol's decided config against its default and against the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.core.pooled import PooledOutcome, WindowDates
from tuner.core.statistics.panel import panel_dm
from tuner.core.statistics.significance import errors_of
from tuner.core.statistics.universe import SymbolCandidates, decide
from tuner.engine.result_store import ResultBrief

DERIVED = ("blend", "regime")
PERIOD = "test"


def _test_errors(doc: Mapping[str, Any] | None) -> list[float] | None:
    return errors_of(doc)[0][PERIOD] if doc else None


def _baseline_errors(doc: Mapping[str, Any] | None) -> list[float] | None:
    return errors_of(doc)[1][PERIOD] if doc else None


def _pooled_test_errors(pooled: Mapping[str, PooledOutcome], family: str, symbol: str) -> list[float] | None:
    """The test errors of ``family``'s pooled config on ``symbol``; None when the family has no
    pooled config or it was not scored there."""
    result = pooled[family].results.get(symbol) if family in pooled else None
    # Read off the result, not its to_dict(): that copies every section (3 calls per symbol).
    errors = result.test.scores.errors if result is not None and result.test is not None else None
    return list(errors) if errors else None


def base_family(symbol: str, own_family: str, documents: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """The family whose default and pooled config a symbol's winner is compared with: its own
    family, or for a derived candidate the symbol's best family winner by validation."""
    if own_family not in DERIVED:
        return own_family
    families = [(doc["validation"]["pct_return_mae"], fam) for (sym, fam), doc in documents.items()
                if sym == symbol and fam not in DERIVED]
    return min(families)[1] if families else own_family


def best_family_winners(documents: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[str, str]:
    """:func:`base_family` of a derived candidate for every symbol at once (one pass: asking
    :func:`base_family` per symbol scans every document each time, quadratic in a universe)."""
    best: dict[str, tuple[float, str]] = {}
    for (symbol, family), doc in documents.items():
        if family not in DERIVED:
            key = (doc["validation"]["pct_return_mae"], family)
            if symbol not in best or key < best[symbol]:
                best[symbol] = key
    return {symbol: family for symbol, (_, family) in best.items()}


def add_pooled(documents: Mapping[tuple[str, str], dict[str, Any]], pooled: Mapping[str, PooledOutcome]) -> None:
    """Give every family winner document whose family has a pooled config that config's scores
    on its symbol (``pooled``). Per symbol, so collation tasks can do it on their own batch."""
    for (symbol, family), doc in documents.items():
        outcome = pooled.get(family)
        if family not in DERIVED and outcome is not None and symbol in outcome.results:
            if isinstance(outcome.results[symbol], ResultBrief):
                raise TypeError("pooled results held by a result store are added by the collation tasks "
                                "(TaskCollator), not in this process")
            doc["pooled"] = {**outcome.results[symbol].to_dict(), "pooled_validation_pct_return_mae":
                             outcome.validation_pct_return_mae, "pooled_trials": outcome.trials}


@dataclass(frozen=True)
class StudyErrors:
    """One family winner's per-window test errors and those the panel tests compare it with
    (None where there are none: no test period, no default scored, no pooled config)."""

    symbol: str
    family: str
    winner: list[float] | None
    baseline: list[float] | None
    default: list[float] | None
    pooled: list[float] | None


@dataclass(frozen=True)
class DecisionInputs:
    """What the universe's decisions and panel tests need of some symbols (a collation batch's,
    or every symbol's): per-window errors and configs, no documents. Built per batch where the
    documents are (:func:`decision_inputs`), joined once for the whole universe
    (:func:`decide_universe`).

    Attributes:
        studies: every family winner (derived candidates excluded), sorted by symbol and family.
        candidates: per symbol with a winner, sorted, what its decision compares.
        own_baselines: symbol → the baseline's test errors on its own winner's windows.
    """

    studies: list[StudyErrors]
    candidates: list[SymbolCandidates]
    own_baselines: dict[str, list[float]]


@dataclass(frozen=True)
class UniverseOutcome:
    """The decisions of a universe.

    Attributes:
        decisions: symbol → its ``decision`` (goes to its summary entry and its winner's file).
        tallies: summary.json's ``decisions``; panel: summary.json's ``panel``.
    """

    decisions: dict[str, dict[str, Any]]
    tallies: dict[str, Any]
    panel: dict[str, Any]


def decision_inputs(documents: Mapping[tuple[str, str], Mapping[str, Any]],
                    entries: Mapping[str, Mapping[str, Any]],
                    pooled: Mapping[str, PooledOutcome]) -> DecisionInputs:
    """:class:`DecisionInputs` of the symbols ``documents`` hold (their result documents, every
    family and candidate of each), ``entries`` their summary entries
    (:func:`tuner.engine.collate.symbol_entries`), ``pooled`` each family's pooled outcome."""
    studies = [StudyErrors(symbol, family, _test_errors(doc), _baseline_errors(doc),
                           _test_errors(doc.get("default")), _pooled_test_errors(pooled, family, symbol))
               for (symbol, family), doc in sorted(documents.items()) if family not in DERIVED]
    candidates, own_baselines = [], {}
    bases = best_family_winners(documents)
    for symbol, entry in sorted(entries.items()):
        own_family = entry["best_family"]
        own_doc = documents[(symbol, own_family)]
        family = bases.get(symbol, own_family) if own_family in DERIVED else own_family
        default_doc = (documents.get((symbol, family)) or {}).get("default")
        pooled_test = _pooled_test_errors(pooled, family, symbol)
        candidates.append(SymbolCandidates(
            symbol, own_family, own_doc.get("config") or {}, _test_errors(own_doc) or [], family,
            (default_doc or {}).get("config") if default_doc else None, _test_errors(default_doc),
            pooled[family].config if pooled_test is not None else None, pooled_test))
        base = _baseline_errors(own_doc)
        if base is not None:
            own_baselines[symbol] = base
    return DecisionInputs(studies, candidates, own_baselines)


def decide_universe(inputs: Sequence[DecisionInputs], pooled_families: Sequence[str],
                    window_dates: WindowDates | None = None, horizon: int = 1) -> UniverseOutcome:
    """Every symbol's decision, the tallies and the panel tests, from the inputs of every
    symbol (in any number of parts, in symbol order); ``pooled_families``: the families with a
    pooled config."""
    studies = [s for part in inputs for s in part.studies]
    candidates = [c for part in inputs for c in part.candidates]
    own_baselines = {s: e for part in inputs for s, e in part.own_baselines.items()}
    dates = None
    if window_dates is not None:
        dates = {s: list((window_dates.get(s) or {}).get(PERIOD) or []) for s in window_dates}

    def test_dates(symbols) -> dict[str, list[str]] | None:
        return None if dates is None else {s: dates.get(s, []) for s in symbols}

    # The pooled config is meant for every symbol, so its panel test against the default takes
    # every symbol the family was tuned on, not only those whose winner is of that family.
    pooled_errors: dict[str, dict[str, list[float]]] = {}
    default_errors: dict[str, dict[str, list[float]]] = {}
    for study in studies:
        if study.pooled is not None and study.default is not None:
            pooled_errors.setdefault(study.family, {})[study.symbol] = study.pooled
            default_errors.setdefault(study.family, {})[study.symbol] = study.default
    panels = {f: panel_dm(pooled_errors[f], default_errors[f], test_dates(pooled_errors[f]), horizon=horizon)
              for f in pooled_errors}
    outcome = decide(candidates, panels, horizon=horizon)
    tallies = {**outcome.tallies, "pooled_tuned": sorted(pooled_families), "note": None if pooled_families else
               "no pooled config was tuned: each decision is own vs default"}
    panel = panel_section(studies, candidates, outcome.decisions, own_baselines, pooled_families,
                          test_dates, horizon)
    return UniverseOutcome(outcome.decisions, tallies, panel)


def add_decisions(documents: dict[tuple[str, str], dict[str, Any]], summary: dict[str, Any], *,
                  pooled: Mapping[str, PooledOutcome] | None = None, window_dates: WindowDates | None = None,
                  horizon: int = 1) -> None:
    """Every document in memory (the serial path): fill ``pooled`` (the pooled config's scores
    on the symbol) into every family winner document whose family has one, ``decision`` into
    each symbol's summary entry and its winner document, and ``decisions`` (tallies) and
    ``panel`` into the summary. Collation tasks do the same per batch
    (:mod:`tuner.engine.collate_tasks`)."""
    pooled = pooled or {}
    add_pooled(documents, pooled)
    entries = summary.get("symbols") or {}
    outcome = decide_universe([decision_inputs(documents, entries, pooled)], list(pooled), window_dates, horizon)
    for symbol, decision in outcome.decisions.items():
        entries[symbol]["decision"] = decision
        documents[(symbol, entries[symbol]["best_family"])]["decision"] = decision
    summary["decisions"] = outcome.tallies
    summary["panel"] = outcome.panel


def panel_section(studies: Sequence[StudyErrors], candidates: Sequence[SymbolCandidates],
                  decisions: Mapping[str, Mapping[str, Any]], own_baselines: Mapping[str, list[float]],
                  pooled_families: Sequence[str], test_dates, horizon: int) -> dict[str, Any]:
    """summary.json's ``panel``: see the module docstring."""
    out: dict[str, Any] = {"period": PERIOD, "families": {}}
    for family in sorted({s.family for s in studies}):
        winners, defaults, baselines, pooled_test = {}, {}, {}, {}
        for study in studies:
            if study.family != family or study.winner is None:
                continue
            winners[study.symbol] = study.winner
            if study.baseline is not None:
                baselines[study.symbol] = study.baseline
            if study.default is not None:
                defaults[study.symbol] = study.default
            if study.pooled is not None:
                pooled_test[study.symbol] = study.pooled
        dates = test_dates(winners)
        section = {
            "winner_vs_default": panel_dm(winners, defaults, dates, horizon=horizon).to_dict(),
            "winner_vs_baseline": panel_dm(winners, baselines, dates, horizon=horizon).to_dict(),
        }
        if family in pooled_families:
            section["pooled_vs_default"] = panel_dm(pooled_test, defaults, dates, horizon=horizon).to_dict()
            section["pooled_vs_baseline"] = panel_dm(pooled_test, baselines, dates, horizon=horizon).to_dict()
        else:
            section["pooled_vs_default"] = section["pooled_vs_baseline"] = None
            section["pooled_reason"] = "no pooled config was tuned for this family"
        out["families"][family] = section
    decided, defaults, baselines = {}, {}, {}
    for c in candidates:
        choice = decisions[c.symbol]["choice"]
        errors = {"own": c.own, "pooled": c.pooled, "default": c.default}[choice]
        base = own_baselines.get(c.symbol)
        if errors is not None and len(errors):
            decided[c.symbol] = errors
            if c.default is not None:
                defaults[c.symbol] = c.default
            if base is not None:
                baselines[c.symbol] = base
    dates = test_dates(decided)
    out["decisions"] = {"vs_default": panel_dm(decided, defaults, dates, horizon=horizon).to_dict(),
                        "vs_baseline": panel_dm(decided, baselines, dates, horizon=horizon).to_dict()}
    return out
