"""The re-scored winners, defaults and pooled configs, held by a Ray actor rather than the driver.

After tuning each study's winner and its family default are run again on both periods, and
each family's pooled config on every symbol; each result carries its per-window errors on
validation, test and the stability folds, for the family and the baseline. At 10,000 studies
the 20,000 winner and default results were 164 MB of the driver's memory and the pooled ones
78 MB (measured, RSS per phase, 10,000 × 2), held only to be handed to the collation tasks. So
the model actors put each result in a :class:`ResultStore` actor instead and return a
:class:`ResultBrief` (what the driver itself reads: the validation score it checks against the
trial's own, the test latency the candidates need); each collation task gets its symbols'
results from the store through the object store (:meth:`StoredResults.ref_of`), never through
the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any

from tuner.core.trial import TrialResult

Key = tuple[str, str]
Slot = tuple[str, Key]
"""(kind, (symbol, family)): kind is ``winner``, ``default`` or ``pooled`` (the family's pooled
config scored on the symbol)."""
POOLED = "pooled"


@dataclass(frozen=True, slots=True)  # slots: the driver holds three per study
class ResultBrief:
    """What the driver keeps of one re-scored result.

    Attributes:
        objective: its validation ``pct_return_mae`` (the driver checks it against the trial's).
        test_latency_per_forecast_s: its latency per forecast on the test period (None when
            it has no test period).
    """

    objective: float
    test_latency_per_forecast_s: float | None

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> ResultBrief:
        """The brief of ``TrialResult.to_dict()``'s layout."""
        test = result.get("test")
        return cls(float(result["validation"]["pct_return_mae"]),
                   None if not test else test.get("latency_per_forecast_s"))


class ResultStore:
    """The actor's body (plain Python; :func:`open_results` runs it as a named actor, which the
    model actors find by name)."""

    def __init__(self) -> None:
        self.by_symbol: dict[str, dict[Slot, TrialResult]] = {}

    def put_many(self, items: list[tuple[Slot, dict[str, Any]]]) -> None:
        """Keep each result (``TrialResult.to_dict()``); a retried call's result replaces the
        first one's, which is the same (same config and seed)."""
        for slot, result in items:
            self.by_symbol.setdefault(slot[1][0], {})[slot] = TrialResult.from_dict(result)

    def of_symbols(self, kind: str, symbols: list[str]) -> dict[Key, TrialResult]:
        """The ``kind`` results of ``symbols``' studies."""
        return {key: r for symbol in symbols for (k, key), r in self.by_symbol.get(symbol, {}).items()
                if k == kind}

    def of_keys(self, kind: str, keys: list[Key]) -> dict[Key, TrialResult]:
        """The ``kind`` results of the studies ``keys`` (those it holds)."""
        found = {}
        for key in keys:
            result = self.by_symbol.get(key[0], {}).get((kind, key))
            if result is not None:
                found[key] = result
        return found

    def pooled_of(self, family: str, symbols: list[str]) -> dict[str, TrialResult]:
        """``family``'s pooled config's results on ``symbols``, symbol → result."""
        return {key[0]: r for key, r in self.of_symbols(POOLED, symbols).items() if key[1] == family}


class StoredResults(Mapping[Any, ResultBrief]):
    """Re-scored results as the driver sees them: key → brief. The results themselves stay in
    the store; :meth:`ref_of` hands a task those of some symbols. Made by :func:`study_results`
    (a kind of study result, keyed by study) or :func:`pooled_results` (a family's pooled
    config's, keyed by symbol: :class:`~tuner.core.pooled.PooledOutcome`'s ``results``)."""

    def __init__(self, briefs: Mapping[Any, ResultBrief], fetch: Callable[[list[Any]], Any],
                 symbol_of: Callable[[Any], str] = itemgetter(0)) -> None:
        self.briefs, self._fetch, self._symbol_of = dict(briefs), fetch, symbol_of
        self._keys_of: dict[str, list[Any]] | None = None  # symbol → its keys, built when first asked

    def __getitem__(self, key: Any) -> ResultBrief:
        return self.briefs[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.briefs)

    def __len__(self) -> int:
        return len(self.briefs)

    def ref_of(self, symbols: Iterable[str]):
        """An object reference to the results of ``symbols`` (key → TrialResult): pass it to a
        task, where Ray resolves it; the driver never holds the results. Only the keys with a
        brief are asked for: the store may also hold a result the run did not keep (one scored
        beside tuning for a trial that was not the journal's winner after all, whose scoring
        after tuning then failed)."""
        if self._keys_of is None:
            self._keys_of = {}
            for key in self.briefs:
                self._keys_of.setdefault(self._symbol_of(key), []).append(key)
        return self._fetch([key for symbol in symbols for key in self._keys_of.get(symbol, ())])


def study_results(actor: Any, kind: str, briefs: Mapping[Key, ResultBrief]) -> StoredResults:
    """The ``kind`` (``winner``, ``default``) results held by the store ``actor``, by study."""
    return StoredResults(briefs, partial(actor.of_keys.remote, kind))


def pooled_results(actor: Any, family: str, briefs: Mapping[str, ResultBrief]) -> StoredResults:
    """``family``'s pooled config's results held by the store ``actor``, by symbol."""
    return StoredResults(briefs, partial(actor.pooled_of.remote, family), symbol_of=str)


def open_results(name: str, namespace: str):
    """Start the store actor under ``name`` (no CPU: it only keeps and hands out results)."""
    import ray

    return ray.remote(ResultStore).options(name=name, namespace=namespace, num_cpus=0,
                                           max_concurrency=4).remote()
