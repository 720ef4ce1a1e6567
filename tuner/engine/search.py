"""One Ray Tune searcher that runs many Optuna studies at once, one per (symbol, family).

Why one multiplexing searcher rather than one Tuner per study or one ConcurrencyLimiter:

* one Tuner per study runs studies one after another (Tuner.fit blocks) or needs threads that
  Tune does not support, and gives N dashboards' worth of experiments to resume;
* a single ConcurrencyLimiter around one OptunaSearch is one study, not many;
* TPE suggests from the completed history: with many trials of one study in flight it suggests
  blind. So each study keeps at most ``max_concurrent`` trials in flight, while many studies
  together keep the cluster busy.

**Packs.** Ray Tune spends ~0.4 s of driver bookkeeping per Tune trial (trial start, result
processing, state), for ~1 ms of work on a weights-free family. So one Tune trial carries a
*pack*: one suggestion from each of up to ``pack_size`` studies. Each suggestion is still an
ordinary Optuna trial of its own study (``OptunaSearch.suggest``/``on_trial_complete``, TPE
unchanged, at most ``max_concurrent`` per study in flight); the pack's trainable evaluates them
concurrently on the model actors and reports each one back as it finishes, so a study learns
from a result as soon as it exists rather than when the whole pack ends.

Each study is a real :class:`ray.tune.search.optuna.OptunaSearch` over its family's define-by-run
space (:class:`tuner.core.search_space.SearchSpace`) with its own seeded TPE sampler. Suggestion is
O(1) per trial whatever the number of studies: a queue holds the studies that can take one more.

**State.** Every finished Optuna trial goes to the :mod:`tuner.engine.journal` within a second (its
timer thread writes it, whatever Tune does next); a
resumed run rebuilds each study from it (``study.add_trial``), never from a pickle. Tune's own
copy of the searcher (it pickles the searcher into ``tuner.pkl`` and every experiment checkpoint)
is a small stub: it would be the whole history rewritten every period, and is never restored.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tuner.core.errors import TunerError
from tuner.core.search_space import SearchSpace
from tuner.engine.actors import PACK_METRIC
from tuner.engine.journal import JournalRecord, TrialJournal
from tuner.engine.study_cache import DEFAULT_HOT, StudyCache

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per study is noise

METRIC, MODE = "pct_return_mae", "min"
"""What each Optuna study minimises."""
COMPLETED, FAILED = "completed", "failed"


def study_seed(seed: int, index: int, session: int = 1) -> int:
    """Each study's TPE seed: distinct per study, reproducible from the experiment seed. A
    resumed session reseeds, so a rebuilt sampler does not repeat the first session's draws."""
    return (seed * 1_000_003 + index + (session - 1) * 7_919) % (2**31 - 1)


class StudyMultiplexer(Searcher):
    """Suggests packs ``{"pack": [{"slot", "study", "symbol", "family", "params"}, ...]}`` from
    many Optuna studies.

    Args:
        spaces: study key (``"AAPL/toto"``) → (symbol, family, search space).
        trials_per_study: Optuna trials each study runs in total (within a session a failed
            trial uses budget; a resume retries it: only ``history``'s completed trials count).
        max_concurrent: Optuna trials of one study in flight at once.
        seed: experiment seed (each study's TPE seed derives from it and the study's position).
        points_to_evaluate: optional study key → configs to try first (warm start).
        pack_size: Optuna trials one Tune trial carries at most.
        max_packs: Tune trials in flight at once.
        journal: where finished trials are recorded (None: nowhere, for tests).
        history: study key → that study's finished trials from earlier sessions.
        session: the run session (1 = first run); reseeds TPE on resume.
        numbers_seen: study key → the highest trial number any stored output has shown (e.g.
            trials.parquet, which still lists a chunk moved out of the journal); new trials
            are numbered after it as well as after ``history``'s.
        board: where packs are published (``put(pack_id, pack)``, ``drop(pack_id)``, see
            :class:`tuner.engine.actors.PackBoard`) so the Tune config carries only the pack's id;
            None = the pack travels in the config.
        hot_studies: idle studies kept as live objects; the rest are kept compressed
            (:class:`tuner.engine.study_cache.StudyCache`), so the driver does not grow with the
            universe.
        active_studies: studies that take suggestions at once (default: half of ``hot_studies``,
            or more when the packs in flight need more to fill them); the
            others wait their turn and are admitted as studies issue their whole budget. Round
            robin over 10,000 studies would revive a compressed study for every trial (measured
            3.8x slower); admitting them in turn keeps the ones in use live. What a study
            suggests depends only on its own history and sampler, so the order of admission
            does not change it (tested).
        first: studies admitted before the others and, whenever they can take a trial, put
            at the front of the queue: the pooled studies, whose winner is scored on every
            symbol beside tuning once they finish (:class:`tuner.engine.rescoring.PooledScores`),
            so they should finish early. Their seeds and suggestions are unchanged.
    """

    def __init__(self, spaces: Mapping[str, tuple[str, str, SearchSpace]], trials_per_study: int,
                 max_concurrent: int = 2, seed: int = 0,
                 points_to_evaluate: Mapping[str, list[dict]] | None = None, pack_size: int = 1,
                 max_packs: int = 4, journal: TrialJournal | None = None,
                 history: Mapping[str, Sequence[JournalRecord]] | None = None, session: int = 1,
                 board: Any = None, numbers_seen: Mapping[str, int] | None = None,
                 hot_studies: int = DEFAULT_HOT, active_studies: int | None = None,
                 first: Sequence[str] = ()) -> None:
        super().__init__(metric=PACK_METRIC, mode="max")
        self.trials_per_study = trials_per_study
        self.max_concurrent = max_concurrent
        self.pack_size = max(1, pack_size)
        self.max_packs = max(1, max_packs)
        self.journal = journal
        self.session = session
        self.board = board
        self.listeners: list[Callable[[JournalRecord], None]] = []
        self.meta = {k: (symbol, family) for k, (symbol, family, _) in spaces.items()}
        self.in_flight = dict.fromkeys(spaces, 0)
        self.studies = StudyCache(busy=lambda key: self.in_flight[key] > 0, hot=hot_studies,
                                  factory=self._build, finished=self._finished)
        self.finished = dict.fromkeys(spaces, 0)
        self.issued = dict.fromkeys(spaces, 0)
        self.next_number = dict.fromkeys(spaces, 0)
        history = history or {}
        # What builds each study when it is first used (StudyCache.factory): waiting studies
        # hold no Optuna objects. The seed follows the study's position, so building later
        # changes nothing it suggests.
        self._recipes: dict[str, tuple[int, SearchSpace, list[dict], list[JournalRecord]]] = {}
        for index, (key, (_, _, space)) in enumerate(spaces.items()):
            done = list(history.get(key, ()))
            points = _untried((points_to_evaluate or {}).get(key, []), done)
            self._recipes[key] = (study_seed(seed, index, session), space, points, done)
            self.finished[key] = len(done)
            # Numbers continue after the highest seen, never reusing one (a chunk moved aside
            # leaves gaps: counting the records would number new trials like kept ones).
            self.next_number[key] = max([r.number + 1 for r in done]
                                        + [(numbers_seen or {}).get(key, -1) + 1])
            # A failed trial of an earlier session is retried: only completed ones use budget.
            self.issued[key] = sum(r.status == COMPLETED for r in done)
        self.remaining = sum(max(0, trials_per_study - n) for n in self.issued.values())
        self.first = frozenset(first)
        with_budget = [k for k in spaces if self.issued[k] < trials_per_study]
        with_budget = [k for k in with_budget if k in self.first] + [k for k in with_budget if k not in self.first]
        # Enough admitted studies to fill every pack in flight twice over, and room in the live
        # cache for them and the ones just finished.
        filling = 2 * math.ceil(self.pack_size * self.max_packs / max(1, max_concurrent))
        admitted = max(1, active_studies or max(hot_studies // 2, filling))
        self.waiting = deque(with_budget[admitted:])
        self.ready = deque(k for k in with_budget[:admitted] if self._can_take(k))
        self.queued = set(self.ready)
        self.slots: dict[str, str] = {}  # slot id (Optuna trial in flight) → study key
        self.packs: dict[str, list[dict[str, Any]]] = {}  # Tune trial id → its pack
        self.suggest_s = 0.0
        self.tell_s = 0.0

    # ------------------------------------------------------------------------------ Tune hooks
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return metric in (None, PACK_METRIC) and mode in (None, "max")

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self.packs:  # Tune may ask again for a trial it already holds
            return self._config(trial_id)
        if self.remaining == 0 or self.stopped:
            return Searcher.FINISHED
        if len(self.packs) >= self.max_packs or not self.ready:
            return None  # enough packs in flight, or every study with budget is at its limit
        start = time.perf_counter()
        pack: list[dict[str, Any]] = []
        while self.ready and len(pack) < self.pack_size:
            key = self.ready.popleft()
            self.queued.discard(key)
            slot = f"{trial_id}.{len(pack)}"
            params = self.studies.get(key).suggest(slot)
            self.slots[slot] = key
            self.issued[key] += 1
            self.in_flight[key] += 1
            self.remaining -= 1
            symbol, family = self.meta[key]
            pack.append({"slot": slot, "study": key, "symbol": symbol, "family": family, "params": params})
            if self._can_take(key):  # to the back: the other ready studies go first
                self._queue(key)
            elif self.issued[key] >= self.trials_per_study and self.waiting:
                self._admit(self.waiting.popleft())  # its budget is issued: the next study's turn
        self.studies.settle()
        self.packs[trial_id] = pack
        if self.board is not None:
            self.board.put(trial_id, pack)
        self.suggest_s += time.perf_counter() - start
        return self._config(trial_id)

    def _config(self, trial_id: str) -> dict[str, Any]:
        pack = self.packs[trial_id]
        if self.board is not None:
            return {"pack_id": trial_id, "trials": len(pack)}
        return {"pack": pack}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._take(result.get("slots") or ())

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._take((result or {}).get("slots") or ())
        pack = self.packs.pop(trial_id, None)
        if pack is None:
            log.warning("completion for unknown trial %s ignored", trial_id)
            return
        if self.board is not None:
            self.board.drop(trial_id)
        # Slots the trial never reported: it failed (after Tune's retries) or ended early.
        why = "its Tune trial failed (see the Ray logs)" if error else "its Tune trial ended without its result"
        self._take([{"slot": s["slot"], "ok": False, "error": why} for s in pack if s["slot"] in self.slots])

    def abandon_packs(self) -> int:
        """End every pack still held as if its Tune trial had ended without its result: its
        untold slots fail (a resume retries them). Called once a Tune run has returned, when
        none of its trials can report any more; returns the packs ended. Without this, a pack
        whose completion never arrived kept ``done`` false with no budget left, and each new
        Tune run ended at once (seen at the tail of 10,000 studies: thousands of empty runs)."""
        orphans = list(self.packs)
        for trial_id in orphans:
            log.warning("Tune trial %s ended without completing its pack; its untold trials fail", trial_id)
            self.on_trial_complete(trial_id)
        return len(orphans)

    # ------------------------------------------------------------------------------ helpers
    def _build(self, key: str) -> OptunaSearch:
        """The study's search object, with its earlier sessions' trials (StudyCache.factory)."""
        sampler_seed, space, points, done = self._recipes.pop(key)
        search = OptunaSearch(space=space, metric=METRIC, mode=MODE,
                              sampler=optuna.samplers.TPESampler(seed=sampler_seed),
                              study_name=key, points_to_evaluate=points)
        for record in done:
            search._ot_study.add_trial(_frozen(record))
        return search

    def _finished(self, key: str) -> bool:
        """Its whole budget issued and told: nothing asks this study again this session."""
        return self.issued[key] >= self.trials_per_study and self.in_flight[key] == 0

    @property
    def stopped(self) -> bool:
        """The storage refused a journal write: start nothing new (what runs still finishes)."""
        return self.journal is not None and self.journal.failure is not None

    @property
    def done(self) -> bool:
        """Every study has run its budget, or the run must stop; nothing is in flight."""
        return (self.remaining == 0 or self.stopped) and not self.slots

    def _admit(self, key: str) -> None:
        if self._can_take(key) and key not in self.queued:
            self._queue(key)

    def _queue(self, key: str) -> None:
        """``key`` takes its turn: at the back of the ready studies, or the front for a
        :attr:`first` one."""
        if key in self.first:
            self.ready.appendleft(key)
        else:
            self.ready.append(key)
        self.queued.add(key)

    def study_done(self, key: str) -> bool:
        """The study has issued its whole budget and been told every result (this session)."""
        return self._finished(key)

    def _can_take(self, key: str) -> bool:
        return self.issued[key] < self.trials_per_study and self.in_flight[key] < self.max_concurrent

    def _take(self, outcomes) -> None:
        """Tell each finished Optuna trial to its study, record it, free its study's slot."""
        start = time.perf_counter()
        records = []
        for outcome in outcomes:
            key = self.slots.pop(outcome["slot"], None)
            if key is None:
                continue  # already told (Tune repeats the last result on completion)
            record = self._tell(key, outcome)
            records.append(record)
            self.in_flight[key] -= 1
            if self._can_take(key) and key not in self.queued:
                self._queue(key)
            # Told one at a time, so that a listener asking study_done hears it with the last one.
            for listener in self.listeners:
                listener(record)
        self.studies.settle()
        if records and self.journal is not None:
            self.journal.append(records)
            self.journal.maybe_flush()
        self.tell_s += time.perf_counter() - start

    def _tell(self, key: str, outcome: Mapping[str, Any]) -> JournalRecord:
        search = self.studies.get(key)
        slot = outcome["slot"]
        # OptunaSearch keeps the asked optuna.Trial per trial id; its params and distributions
        # are what the journal needs to rebuild the study (read before the tell completes it).
        ot_trial = search._ot_trials[slot]
        params, distributions = dict(ot_trial.params), {
            name: optuna.distributions.distribution_to_json(d) for name, d in ot_trial.distributions.items()}
        value = outcome.get("value")
        ok = bool(outcome.get("ok")) and value is not None and math.isfinite(value)
        error = None if ok else (outcome.get("error") or f"{METRIC} is {value!r}, not a finite number")
        search.on_trial_complete(slot, result={METRIC: value} if ok else None, error=not ok)
        del search._ot_trials[slot]  # told: OptunaSearch would keep every trial object forever
        number = self.next_number[key]
        self.next_number[key] += 1
        self.finished[key] += 1
        return JournalRecord(
            study=key, number=number, trial_id=slot, status=COMPLETED if ok else FAILED,
            params=params, distributions=distributions, config=outcome.get("config") or params,
            value=value if ok else None, metrics=outcome.get("metrics") or {}, error=error,
            session=self.session, finished_at=time.time(),
        )

    # ------------------------------------------------------------------------------ state
    def save(self, checkpoint_path: str) -> None:
        """Nothing: the journal holds the state, written as trials finish."""

    def restore(self, checkpoint_path: str) -> None:
        raise TunerError("the searcher is rebuilt from the experiment's journal, not from Tune's "
                         "checkpoint: use `tuner resume NAME`")

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher into tuner.pkl and every experiment checkpoint; the studies
        # would make that the whole history, every period. Pickled copies are never restored.
        return {"studies_count": len(self.meta), "unpicklable": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _frozen(record: JournalRecord) -> optuna.trial.FrozenTrial:
    """A journal record as a finished trial of its Optuna study."""
    distributions = {k: optuna.distributions.json_to_distribution(v)
                     for k, v in record.distributions.items()}
    complete = record.status == COMPLETED and record.value is not None
    return optuna.trial.create_trial(
        params=dict(record.params), distributions=distributions,
        value=record.value if complete else None,
        state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL,
    )


def _untried(points: list[dict], done: Sequence[JournalRecord]) -> list[dict]:
    """Warm-start points not yet run by an earlier session (a resume must not retry them)."""
    tried = [dict(r.config) for r in done]
    return [p for p in points if not any(all(c.get(k) == v for k, v in p.items()) for c in tried)]


PACK_LIMIT = 256
"""The largest automatic pack. Each Tune trial costs a trial-actor start that does no work
(Tune starts an actor for each pending trial, then runs it on a finished trial's cached actor
and kills the one still starting), about a CPU-second on a busy machine; measured at 1,000 × 10
on 2 cores: packs of 64, ~1 actor started per pack and tuning 71-157 s; packs of 250, 9 actors
and 28 s. A pack reports each trial as it finishes, so a bigger pack does not delay what its
studies learn."""


def auto_pack_size(studies: int, max_concurrent: int, max_packs: int, limit: int = PACK_LIMIT) -> int:
    """Optuna trials per Tune trial: enough that ``max_packs`` packs can hold every study's
    slots, at most ``limit`` (:data:`PACK_LIMIT`)."""
    return max(1, min(limit, math.ceil(studies * max_concurrent / max_packs)))
