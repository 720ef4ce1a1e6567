"""Re-scoring on the live model actors: each study's winner on the test period (its validation
scores are its trial's own), its family default on the validation and test periods, each
family's pooled config on every symbol, and the winners' point forecasts for the blend and
regime candidates.

The weights are loaded in the model actors, so every call goes there
(:func:`on_live_actors`). The results go to the run's
:class:`~tuner.engine.result_store.ResultStore`; the driver keeps their briefs.

The family defaults do not depend on tuning, so :class:`DefaultScores` scores them from the
moment the actors are up, beside tuning, in a driver thread that keeps few calls queued per
actor (the trials' calls are not queued behind them). Each study's first trial is that same
default: whichever of the two runs first leaves its validation draws in the actor's sample
bank for the other. A study's winner is known once the study has finished, and each
family's pooled config once its pooled study has: :class:`WinnerScores` and
:class:`PooledScores` score them beside tuning from then on, and what they have not scored
when tuning ends is scored after it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tuner.core.candidates import WinnerForecasts
from tuner.core.config import load_family_config
from tuner.core.errors import TunerError
from tuner.core.models.weights import FAMILY_MODEL, WeightsSource
from tuner.core.pooled import PooledOutcome
from tuner.engine.actors import WEIGHTS_FREE_CHUNK, trial_group
from tuner.engine.collate import Key, TrialRecord, pick_winners
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.pooled_study import POOLED_SYMBOL, pooled_completed, pooled_key
from tuner.engine.result_store import (
    POOLED,
    ResultBrief,
    Slot,
    StoredResults,
    pooled_results,
    study_results,
)
from tuner.engine.trial_store import trial_record, validation_scores

log = logging.getLogger(__name__)

CALLS_IN_FLIGHT_PER_ACTOR = 64
"""Re-scoring calls (or chunks of a weights-free family's calls) queued per model actor at once
(:func:`on_live_actors`): enough to keep every actor and its request batcher busy."""
WINNERS_PER_BATCH = WEIGHTS_FREE_CHUNK
"""Winners of finished studies that :class:`WinnerScores` gathers, while tuning runs, before it
scores them (a weights-free family's calls go that many per actor call)."""
BESIDE_TUNING_PER_ACTOR = 1
""":class:`DefaultScores`' calls (or chunks) queued per model actor while tuning runs: one of
its ``ACTOR_CONCURRENCY`` threads, the others left to the trials."""

StoreAt = tuple[str, str]
"""(namespace, name) of the run's result store, where the model actors put each result."""


def on_live_actors(actors: dict[str, list], calls: dict[Any, tuple[Key, str, tuple]],
                   on_done: Callable[[int, int], None] | None = None,
                   per_actor: Callable[[], int] = lambda: CALLS_IN_FLIGHT_PER_ACTOR,
                   stop: threading.Event | None = None) -> dict:
    """Run many actor calls at once: ``calls`` maps a caller's key to ((symbol, family), method,
    args). Each starts on an actor chosen by its study; a call whose actor has died for good
    (Ray restarts crashed ones ``max_restarts`` times) moves on to the family's other actors.
    A weights-free family's calls go up to :data:`WEIGHTS_FREE_CHUNK` in one actor call
    (``ModelServer.call_many``): Ray's cost per call is more than their work; a model family's
    go one by one, so that its request batcher can merge those running at once.
    ``per_actor``: how many calls (or chunks) to keep queued per actor, asked before each
    submission. ``stop``: once set, nothing more is submitted or waited for, and the results
    gathered so far are returned.
    Returns key → result (in ``calls``' order), or key → :class:`TunerError` when every actor
    of the family is dead."""
    import zlib

    import ray
    from ray.exceptions import RayActorError

    def group(key) -> str:  # the family's actors, or its size's (args: symbol, config, ...)
        study, _, args = calls[key]
        return trial_group(study[1], args[1])

    def member(key, attempt: int) -> int:
        return (zlib.crc32("/".join(calls[key][0]).encode()) + attempt) % len(actors[group(key)])

    # Calls that share an actor (and a method) are cut into chunks, in the callers' order.
    chunks: list[list] = []
    filling: dict[tuple, list] = {}
    for key in calls:
        study, method, _ = calls[key]
        slot = (group(key), member(key, 0), method)
        chunk = filling.setdefault(slot, [])
        chunk.append(key)
        if len(chunk) >= (1 if study[1] in FAMILY_MODEL else WEIGHTS_FREE_CHUNK):
            chunks.append(filling.pop(slot))
    chunks.extend(filling.values())

    def submit(chunk: list, attempt: int):
        first = chunk[0]
        _, handle = actors[group(first)][member(first, attempt)]
        method = calls[first][1]
        if len(chunk) == 1:
            return getattr(handle, method).remote(*calls[first][2])
        return handle.call_many.remote(method, [calls[key][2] for key in chunk])

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    # A bounded number in flight, the next submitted as one is gathered: every call at once
    # made the driver hold 20,000 task specs and their results (+0.5 GB at 10,000 studies).
    actor_count = sum(len(m) for m in actors.values())
    waiting = iter(chunks)
    pending: deque[tuple[list, Any, int]] = deque()  # (chunk, its ref, attempt), gathered in order
    results: dict = {}

    def top_up() -> None:
        while not stopped() and len(pending) < per_actor() * actor_count:
            chunk = next(waiting, None)
            if chunk is None:
                return
            pending.append((chunk, submit(chunk, 0), 0))

    top_up()
    while pending and not stopped():
        chunk, ref, attempt = pending.popleft()
        top_up()
        try:
            outs = ray.get(ref)
            results.update(zip(chunk, outs if len(chunk) > 1 else [outs], strict=True))
        except RayActorError as e:
            if attempt + 1 < len(actors[group(chunk[0])]):
                pending.append((chunk, submit(chunk, attempt + 1), attempt + 1))
            else:
                results.update((key, TunerError(f"every {group(key)} model actor has died ({type(e).__name__})"))
                               for key in chunk)
        if on_done is not None:
            on_done(len(results), len(calls))  # the live view's re-scoring progress
    return {key: results[key] for key in calls if key in results}


def _scored_into(study: Key, config: Mapping[str, Any], seed: int, store_at: StoreAt, slot: Slot,
                 validation: Sequence[float] | None = None) -> tuple:
    """An :func:`on_live_actors` call: ``config`` scored on ``study``'s symbol, validation and
    test periods with ``seed``, its result put in the store at ``store_at`` under ``slot``.
    ``validation``: scores it already has on the validation period (not forecast again)."""
    return study, "evaluate_into", (study[0], config, seed, True, store_at, slot, validation)


class BesideTuning:
    """Actor calls (:func:`on_live_actors`'s ``calls``) run from a driver thread while tuning
    runs, one call (or chunk) queued per actor so that the trials' calls are not held up behind
    them, until :meth:`hurry`. The calls are given at once (``calls``), or added as they become
    known (``calls=None``, :meth:`add`): those are taken in batches of at least ``batch`` while
    tuning runs, and all that are left once it has ended. :meth:`wait` for the results,
    :meth:`stop` when the run ends without them. The family defaults, the pooled configs and
    the winners are scored so."""

    def __init__(self, actors: dict[str, list], calls: dict | None, name: str, batch: int = 1) -> None:
        self._actors, self._batch = actors, batch
        self._waiting: dict = calls if calls is not None else {}  # calls the thread has not taken
        self._closed = calls is not None  # nothing more is added: the thread takes what is left and ends
        self._per_actor = BESIDE_TUNING_PER_ACTOR
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.results: dict = {}
        self.error: BaseException | None = None
        """What the thread raised (handed to the driver's thread by whoever waits)."""
        # A daemon: a run that ends by an error does not wait on it (stop() ends it sooner).
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BesideTuning:
        self._thread.start()
        return self

    def add(self, key: Any, call: tuple) -> None:
        """One more call (once :meth:`hurry` has been called, none: its caller scores the rest)."""
        with self._changed:
            if self._closed:
                return
            self._waiting[key] = call
            if len(self._waiting) >= self._batch:
                self._changed.notify()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._changed:
                    self._changed.wait_for(lambda: self._closed or self._stop.is_set()
                                           or len(self._waiting) >= self._batch)
                    # Taken, not kept: ~300 bytes a call, not held to the end of the run.
                    calls, self._waiting = self._waiting, {}
                if not calls:
                    return
                self.results.update(on_live_actors(self._actors, calls, per_actor=lambda: self._per_actor,
                                                   stop=self._stop))
        except BaseException as e:
            self.error = e

    def hurry(self) -> None:
        """Tuning has ended: nothing more is added, and as many calls are kept queued as
        re-scoring does."""
        self._per_actor = CALLS_IN_FLIGHT_PER_ACTOR
        with self._changed:
            self._closed = True
            self._changed.notify()

    def wait(self) -> dict:
        """The results (as :func:`on_live_actors` returns them), once every call is in."""
        self.hurry()
        self._thread.join()
        return self.results

    def stop(self, wait_s: float | None = 10.0) -> None:
        """Submit nothing more and wait (at most ``wait_s``; None: until it ends) for the call
        being gathered."""
        self._stop.set()
        with self._changed:
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(wait_s)


class DefaultScores:
    """Each study's family default scored on the validation and test periods (same seed as its
    winner), :class:`BesideTuning`, started before tuning: see the module docstring.

    :meth:`hurry` once tuning has ended (as many calls queued as re-scoring's), :meth:`result`
    for the briefs, :meth:`stop` when the run ends without them.
    """

    def __init__(self, studies: Iterable[Key], actors: dict[str, list], seed: int, store: Any, store_at: StoreAt,
                 weights: WeightsSource | None = None) -> None:
        studies = list(studies)
        # Once per family, not per study: loading a family's config file 1,000 times took ~1 s.
        defaults = {family: load_family_config(family, weights=weights).default
                    for family in {family for _, family in studies}}
        defaults = {family: None if d is None else dict(d) for family, d in defaults.items()}
        # One config dict per family, shared by its calls (never changed: Ray copies arguments).
        calls = {key: _scored_into(key, defaults[key[1]], seed, store_at, ("default", key))
                 for key in studies if defaults[key[1]] is not None}
        self._store = store
        self._job = BesideTuning(actors, calls, "default-scores")

    def start(self) -> DefaultScores:
        self._job.start()
        return self

    def hurry(self) -> None:
        """Tuning has ended: keep as many calls queued as re-scoring does."""
        self._job.hurry()

    def result(self, studies: Iterable[Key]) -> StoredResults:
        """The defaults of ``studies`` (those with a winner), once all are scored; a default whose
        actors all died is left out."""
        scored = self._job.wait()
        if self._job.error is not None:
            raise self._job.error
        briefs = {key: scored[key] for key in studies if key in scored and not isinstance(scored[key], TunerError)}
        return study_results(self._store, "default", briefs)

    def stop(self, wait_s: float = 10.0) -> None:
        """Submit nothing more and wait (at most ``wait_s``) for the call being gathered."""
        self._job.stop(wait_s)


class WinnerScores:
    """Each study's winner scored on the test period beside tuning (:class:`BesideTuning`, in
    batches of at least :data:`WINNERS_PER_BATCH`), from the moment its study has finished.
    (Measured at 1,000 × 10 on 2 cores: after tuning, the winners' test period was 2.2 s of the
    one model actor's core while the other core idled. There every study is admitted at once
    and they finish together, in tuning's last seconds; at 10,000 studies they are admitted in
    turn and finish all along.) :func:`score_winners` takes what it scored when the journal's
    winner is the same trial, and scores the rest.

    Args:
        actors, seed, store_at: as :func:`score_winners`'.
        max_latency_s: the experiment's latency limit (which trial can win).
        done: study key → whether that study has finished (the searcher's ``study_done``).

    :meth:`record` is the searcher's listener; :meth:`hurry` once tuning has ended;
    :meth:`stop` when the run ends without :meth:`result`. Only this session's trials are
    heard: a study whose winner is an earlier session's is scored after tuning.
    """

    def __init__(self, actors: dict[str, list], seed: int, store_at: StoreAt, max_latency_s: float | None,
                 done: Callable[[str], bool]) -> None:
        self._seed, self._store_at = seed, store_at
        self._max_latency_s, self._done = max_latency_s, done
        self._best: dict[str, TrialRecord] = {}  # study → its best trial so far (studies still running)
        self._trial: dict[Key, str] = {}  # study → the trial id of the winner handed to the job
        self._job = BesideTuning(actors, None, "winner-scores", batch=WINNERS_PER_BATCH).start()

    def record(self, record: Any) -> None:
        """A journal record the searcher has just told: kept if it is its study's best so far;
        a study's last one hands its best to the job."""
        if record.symbol == POOLED_SYMBOL:
            return
        held = self._best.get(record.study)
        best = pick_winners([trial_record(record)] if held is None else [held, trial_record(record)],
                            self._max_latency_s)
        if best:
            self._best[record.study] = next(iter(best.values()))
        if not self._done(record.study):
            return
        winner = self._best.pop(record.study, None)
        if winner is None:
            return  # no completed trial: no winner (score_winners agrees)
        key = (winner.symbol, winner.family)
        self._trial[key] = winner.trial_id
        # The config in the journal's key order (sorted), as score_winners gets it read back: the
        # result document is then the same, byte for byte, wherever the winner was scored.
        self._job.add(key, _scored_into(key, dict(sorted(winner.config.items())), self._seed, self._store_at,
                                        ("winner", key), validation_scores(winner.metrics)))

    def hurry(self) -> None:
        """Tuning has ended: score every winner handed on, as many calls in flight as re-scoring's."""
        self._job.hurry()

    def result(self, winners: Mapping[Key, TrialRecord]) -> dict[Key, ResultBrief]:
        """Once every winner handed on is scored, the briefs of the studies whose winner in
        ``winners`` (the journal's, read after tuning) is the trial scored here. A failure is
        logged; score_winners scores the rest."""
        scored = self._job.wait()
        if self._job.error is not None:
            log.warning("winners not scored beside tuning: %s", self._job.error)
        return {key: brief for key, brief in scored.items()
                if key in winners and winners[key].trial_id == self._trial.get(key)
                and not isinstance(brief, TunerError)}

    def stop(self, wait_s: float = 10.0) -> None:
        """Submit nothing more and wait (at most ``wait_s``) for the call being gathered."""
        self._job.stop(wait_s)


def score_winners(winners: dict[Key, TrialRecord], actors: dict[str, list], seed: int, store: Any,
                  store_at: StoreAt, on_done: Callable[[int, int], None] | None = None,
                  validation: Mapping[Key, Sequence[float]] | None = None,
                  beside: WinnerScores | None = None) -> tuple[StoredResults, dict[Key, str]]:
    """Score each study's winner on the test period (same seed) on a live actor of its family;
    the results go to ``store`` (the :class:`~tuner.engine.result_store.ResultStore` at
    ``store_at``), the driver keeps their briefs. Returns the re-scored winners and, for winners
    that could not be re-scored, why.

    ``validation``: each winner's own validation scores, from its trial, packed
    (:meth:`~tuner.engine.trial_store.TrialStore.winner_validation`): its validation period is
    then not forecast again, only its baseline computed. A winner without them is run again on
    that period too. (Measured at 10,000 × 10: the sample bank had evicted nearly every
    winner's draws by the end of tuning, so that re-run was a second forecast per winner, half
    the winners' re-scoring.) ``beside``: what was scored beside tuning (only the rest is
    scored here)."""
    validation = validation or {}
    briefs: dict[Key, Any] = beside.result(winners) if beside is not None else {}
    calls = {key: _scored_into(key, dict(winner.config), seed, store_at, ("winner", key), validation.get(key))
             for key, winner in winners.items() if key not in briefs}
    ahead = len(briefs)
    briefs.update(on_live_actors(actors, calls, None if on_done is None
                                 else lambda done, total: on_done(ahead + done, ahead + total)))
    finals, unscored = {}, {}
    for key in winners:  # in the winners' order, wherever each was scored
        brief = briefs.get(key)
        if brief is None:
            continue
        if isinstance(brief, TunerError):
            unscored[key] = f"winner not re-scored on the test period: {brief}"
            continue
        own = winners[key].objective
        if not math.isclose(brief.objective, own, rel_tol=1e-9, abs_tol=1e-12):
            log.warning("%s/%s: re-run validation %.6g differs from the trial's %.6g (non-deterministic "
                        "device?); the trial's own value is reported", *key, brief.objective, own)
        finals[key] = brief
    return study_results(store, "winner", finals), unscored


def _pooled_calls(best: Mapping[Key, TrialRecord], studies: Iterable[Key], seed: int, store_at: StoreAt) -> dict:
    """:func:`on_live_actors` calls: each family's best pooled config (``best``, keyed by
    ``(POOLED_SYMBOL, family)``) on every symbol of that family in ``studies``."""
    return {(symbol, family): _scored_into((symbol, family), dict(best[(POOLED_SYMBOL, family)].config), seed,
                                           store_at, (POOLED, (symbol, family)))
            for symbol, family in studies if (POOLED_SYMBOL, family) in best}


class PooledScores:
    """Each family's pooled config scored on every symbol beside tuning (:class:`BesideTuning`),
    from the moment its pooled study has finished (the searcher runs the pooled studies first:
    :class:`~tuner.engine.search.StudyMultiplexer`'s ``first``). :func:`score_pooled` takes
    what it scored and scores the rest.

    Args:
        studies: every (symbol, family) study.
        actors, seed, store, store_at: as :func:`score_pooled`'s.
        max_latency_s: the experiment's latency limit (which pooled trial can win).
        done: study key → whether that study has finished (the searcher's ``study_done``).
        history: earlier sessions' records (a pooled study finished then is scored at once).

    :meth:`record` is the searcher's listener; :meth:`hurry` once tuning has ended,
    :meth:`stop` when the run ends.
    """

    def __init__(self, studies: Iterable[Key], actors: dict[str, list], seed: int, store: Any, store_at: StoreAt,
                 max_latency_s: float | None, done: Callable[[str], bool],
                 history: Iterable[Any] = ()) -> None:
        self._studies = list(studies)
        self._actors, self._seed, self._store_at = actors, seed, store_at
        self._max_latency_s, self._done = max_latency_s, done
        self._records: dict[str, list[TrialRecord]] = {}
        self._jobs: dict[str, tuple[dict, BesideTuning]] = {}  # family → (its config, the job scoring it)
        self._stopped = False
        for record in history:
            if record.symbol == POOLED_SYMBOL:
                self._records.setdefault(record.family, []).append(trial_record(record))
        for family in list(self._records):
            if self._done(pooled_key(family)):
                self._start(family)

    def record(self, record: Any) -> None:
        """A journal record the searcher has just told: a pooled study's last one starts the
        scoring of its best config."""
        if record.symbol != POOLED_SYMBOL:
            return
        self._records.setdefault(record.family, []).append(trial_record(record))
        if record.family not in self._jobs and self._done(record.study):
            self._start(record.family)

    def _start(self, family: str) -> None:
        best = pick_winners(self._records[family], self._max_latency_s)
        if (POOLED_SYMBOL, family) not in best or self._stopped:
            return  # no completed trial: nothing to score (score_pooled agrees)
        calls = _pooled_calls(best, (k for k in self._studies if k[1] == family), self._seed, self._store_at)
        job = BesideTuning(self._actors, calls, f"pooled-scores-{family}")
        self._jobs[family] = (dict(best[(POOLED_SYMBOL, family)].config), job.start())

    def hurry(self) -> None:
        """Tuning has ended: keep as many calls queued as re-scoring does."""
        for _, job in self._jobs.values():
            job.hurry()

    def result(self, best: Mapping[Key, TrialRecord]) -> dict[Key, Any]:
        """The briefs scored for the families whose config here is ``best``'s (the pooled
        winners read from the journal after tuning), once they are all in."""
        wanted = {family: dict(record.config) for (_, family), record in best.items()}
        for family, (config, job) in self._jobs.items():
            if wanted.get(family) != config:  # not the winner after all: its scores are of no use
                job.stop(None)
        found: dict[Key, Any] = {}
        for family, (config, job) in self._jobs.items():
            if wanted.get(family) == config:
                found.update(job.wait())
                if job.error is not None:  # score_pooled scores what is missing, and raises then
                    log.warning("pooled config of %s not scored beside tuning: %s", family, job.error)
        return found

    def stop(self, wait_s: float = 10.0) -> None:
        """Submit nothing more and wait (at most ``wait_s`` each) for the calls being gathered."""
        self._stopped = True
        for _, job in self._jobs.values():
            job.stop(wait_s)


def score_pooled(pooled_records: list[TrialRecord], studies: Sequence[Key], actors: dict[str, list],
                 config: ExperimentConfig, store: Any, store_at: StoreAt,
                 beside: PooledScores | None = None) -> dict[str, PooledOutcome]:
    """Each family's best pooled config scored on every symbol's validation and test periods with
    the experiment seed (the windows and draws of the symbol's own winner). A symbol whose
    re-scoring failed (its actors died) is left out of the outcome's results. The results go to
    ``store``; an outcome's ``results`` are their briefs (:func:`pooled_results`). ``beside``:
    what was scored beside tuning (only the rest is scored here)."""
    best = pick_winners(pooled_records, config.max_latency_s)
    every = _pooled_calls(best, studies, config.seed, store_at)
    briefs = beside.result(best) if beside is not None else {}
    briefs.update(on_live_actors(actors, {key: call for key, call in every.items()
                                          if key not in briefs or isinstance(briefs[key], TunerError)}))
    results: dict[str, dict[str, ResultBrief]] = {}
    for (symbol, family) in every:  # in the studies' order, wherever each was scored
        brief = briefs.get((symbol, family))
        if brief is None:
            continue  # stopped before it was scored
        if isinstance(brief, TunerError):
            log.warning("%s: pooled config of %s not scored: %s", symbol, family, brief)
            continue
        results.setdefault(family, {})[symbol] = brief
    completed = pooled_completed(pooled_records, [f for _, f in best])
    return {family: PooledOutcome(family, dict(record.config), record.objective, completed[family],
                                  pooled_results(store, family, results.get(family, {})))
            for (_, family), record in best.items()}


def winner_forecasts(winners: dict[Key, TrialRecord], finals: Mapping[Key, ResultBrief], actors: dict[str, list],
                     seed: int, on_done: Callable[[int, int], None] | None = None
                     ) -> dict[str, dict[str, WinnerForecasts]]:
    """Symbol → family → its winner's point forecasts on both periods (the blend and regime
    candidates' inputs; see tuner.core.candidates), asked of the model actors."""
    found: dict[str, dict[str, WinnerForecasts]] = {}
    outs = on_live_actors(actors, {key: (key, "point_forecasts", (key[0], dict(w.config), seed))
                                   for key, w in winners.items() if key[1] in FAMILY_MODEL}, on_done)
    for (symbol, family), out in outs.items():
        if isinstance(out, TunerError):
            continue  # no candidate from a family whose actors are gone (its study says why)
        latency = winners[(symbol, family)].metrics.get("latency_per_forecast_s", 0.0)
        final = finals.get((symbol, family))
        test_latency = final.test_latency_per_forecast_s if final is not None else None
        found.setdefault(symbol, {})[family] = WinnerForecasts(family, out["validation"], out["test"], latency,
                                                               test_latency)
    return found
