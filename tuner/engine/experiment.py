"""The Ray driver: tune every (symbol, family) study of an experiment, then collate the winners.

Flow: load data and cut windows (before Ray starts, so bad input fails fast) → resolve weights
→ join or start Ray → start each family's model actors and wait until they have loaded →
one Tune run whose searcher multiplexes one Optuna TPE study per (symbol, family), the family
defaults scored on both periods beside it → re-score each winner on the test period
(:mod:`tuner.engine.rescoring`) → write result files, summary and trial table.

A run under an existing name resumes it (Tune restores its trials and the searcher every
study's history); ``tuner resume NAME`` does the same from the stored config.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuner import __version__
from tuner.core.config import load_family_config, with_space_checkpoints
from tuner.core.data import bundled_data_path
from tuner.core.errors import ConfigError, DamagedFile, TunerError
from tuner.core.models.weights import FAMILY_MODEL, resolve_weights
from tuner.core.phase_clock import PhaseClock
from tuner.core.pooled import PooledOutcome
from tuner.core.storage import (
    CONFIG_FILE,
    PROGRESS_FILE,
    SUMMARY_FILE,
    TRIALS_FILE,
    Storage,
    is_uri,
)
from tuner.core.summary_tables import ExperimentSummary
from tuner.core.timed_storage import TimedStorage
from tuner.core.windows import (
    AUTO_CAP,
    AUTO_CONTEXT,
    AUTO_MIN,
)
from tuner.engine.actors import (
    WEIGHTS_FREE_CHUNK,
    LoadLedger,
    ModelServer,
    PackBoard,
    Routing,
    WindowStore,
    group_key,
)
from tuner.engine.collate import TrialRecord, write_experiment
from tuner.engine.collate_tasks import TaskCollator
from tuner.engine.experiment_config import ExperimentConfig, FamilyResources
from tuner.engine.journal import (
    JOURNAL_DIR,
    JournalError,
    JournalRecord,
    StorageFault,
    TrialJournal,
    last_session,
    read_journal,
    records_by_study,
)
from tuner.engine.lock import ExperimentLock
from tuner.engine.pooled_study import (
    POOLED_SYMBOL,
    pooled_completed,
    pooled_families,
    pooled_key,
    pooled_summary,
    tuning_symbols,
)
from tuner.engine.provenance import ID_KEY, SINCE_KEY, Provenance, experiment_identity
from tuner.engine.rescoring import (
    DefaultScores,
    PooledScores,
    WinnerScores,
    score_pooled,
    score_winners,
    winner_forecasts,
)
from tuner.engine.result_store import open_results
from tuner.engine.trial_store import StoredTrials, start_trials
from tuner.engine.window_slices import cut_windows, derive_candidates
from tuner.engine.without_winner import cause_lines

log = logging.getLogger(__name__)

NAMESPACE = "forecast-tuner"
GPU_SHARE = {"toto": 0.5, "kronos_standard": 0.25, "kronos_ensemble": 0.25, "toto2": 0.25}
"""Default GPU share per model actor: one actor of each family fills one GPU."""
ACTOR_CONCURRENCY = 4
"""evaluate() calls a model actor runs at once (threads), so its batcher can merge them."""
REPORT_SYMBOLS = 20
"""Symbols the end-of-run lines show (the report has them all)."""
PACKS_PER_ACTOR = ACTOR_CONCURRENCY
"""Packs in flight per model actor: as many as it runs calls at once."""

Echo = Callable[[str], None]


# ------------------------------------------------------------------------------------- entry


def run_experiment(config: ExperimentConfig, echo: Echo = print,
                   include_dashboard: bool | None = None, take_over: bool = False,
                   started_at: float | None = None) -> dict[str, Any]:
    """Run (or resume, if the name exists) an experiment; return its summary.

    ``started_at``: UNIX time the run's ``wall_s`` counts from (the CLI passes its process's
    start, :func:`~tuner.core.phase_clock.process_started_at`); default: this call."""
    started_at = time.time() if started_at is None else started_at
    storage = Storage(config.storage, config.name)
    stored = _stored_config(storage)
    if stored is not None:
        _check_same_experiment(stored, config, storage)
        ignored = _ignored_on_resume(stored, config)
        config = replace(stored, address=config.address)
        echo(f"experiment {config.name} exists at {storage.root}: resuming it")
        if ignored:
            echo(f"WARNING: resuming keeps the stored settings; ignored: {'; '.join(ignored)}")
    # Tiny weights live on the driver's disk only, so a run that joins a cluster never falls back.
    joins_cluster = bool(config.address or os.environ.get("RAY_ADDRESS"))
    return _run(config, storage, echo, include_dashboard,
                fallback_allowed=config.weights is None and not joins_cluster, take_over=take_over,
                started_at=started_at)


def resume_experiment(name: str, storage_root: str = "results", address: str | None = None,
                      echo: Echo = print, include_dashboard: bool | None = None,
                      take_over: bool = False, started_at: float | None = None) -> dict[str, Any]:
    """Continue an interrupted experiment from its stored config and Tune state
    (``started_at``: see :func:`run_experiment`)."""
    started_at = time.time() if started_at is None else started_at
    storage = Storage(storage_root, name)
    stored = _stored_config(storage)
    if stored is None:
        raise ConfigError(f"no experiment {name!r} under {storage.base} (no {CONFIG_FILE})")
    return _run(replace(stored, address=address), storage, echo, include_dashboard, fallback_allowed=False,
                take_over=take_over, started_at=started_at)


def extend_experiment(name: str, trials: int, storage_root: str = "results", address: str | None = None,
                      echo: Echo = print, include_dashboard: bool | None = None,
                      take_over: bool = False) -> dict[str, Any]:
    """Raise an existing experiment's budget to ``trials`` per study and continue it from its
    journal: every finished trial is kept, each study's TPE goes on from its history, and every
    other stored setting stays as it was (the stored config's ``trials`` is updated when the
    session starts). A lower budget is refused: finished trials are never dropped."""
    storage = Storage(storage_root, name)
    stored = _stored_config(storage)
    if stored is None:
        raise ConfigError(f"no experiment {name!r} under {storage.base} (no {CONFIG_FILE})")
    _check_extension(name, stored.trials, trials)
    if trials == stored.trials:
        echo(f"experiment {name} already has {trials} trials per study; continuing it as it is")
    else:
        echo(f"experiment {name}: raising the budget from {stored.trials} to {trials} trials per study")
    return _run(replace(stored, trials=trials, address=address), storage, echo, include_dashboard,
                fallback_allowed=False, take_over=take_over)


def _check_extension(name: str, stored: int, trials: int) -> None:
    """A budget may only grow: a smaller one would leave finished trials beyond it."""
    if trials < stored:
        raise ConfigError(f"experiment {name!r} has {stored} trials per study; --trials {trials} would "
                          f"lower it, and finished trials are never dropped: give {stored} or more "
                          f"(or start a new experiment with another --name)")


def saved_trials(name: str, storage_root: str = "results") -> int | None:
    """How many finished trials the experiment's journal holds (what a resume keeps); None
    when the journal cannot be read (its own error says why on resume)."""
    try:
        return len(read_journal(Storage(storage_root, name)))
    except (TunerError, OSError, ValueError):
        return None


def experiment_status(name: str, storage_root: str = "results") -> dict[str, Any]:
    """What is stored about an experiment: config, live progress, when done the summary, and
    the lock's holder while a run holds it (``lock``: its heartbeat says whether it lives)."""
    from tuner.engine.progress import read_progress

    storage = Storage(storage_root, name)
    if not storage.exists(CONFIG_FILE):
        raise ConfigError(f"no experiment {name!r} under {storage.base} (no {CONFIG_FILE})")
    status: dict[str, Any] = {"experiment": name, "root": storage.root,
                              "config": storage.read_json(CONFIG_FILE),
                              "progress": read_progress(storage)}
    status["summary"] = storage.read_json(SUMMARY_FILE) if storage.exists(SUMMARY_FILE) else None
    # The tables beside it, read on demand (columns, not every symbol's entry).
    status["results"] = ExperimentSummary(storage, status["summary"]) if status["summary"] is not None else None
    status["lock"] = ExperimentLock(storage).holder()  # host, pid, since, heartbeat of a run; None
    return status


# ------------------------------------------------------------------------------------- the run


def _run(config: ExperimentConfig, storage: Storage, echo: Echo, include_dashboard: bool | None,
         fallback_allowed: bool, take_over: bool = False, started_at: float | None = None) -> dict[str, Any]:
    try:
        return _run_locked(config, storage, echo, include_dashboard, fallback_allowed, take_over, started_at)
    except OSError as e:  # the storage itself: one clear line, not a traceback
        raise StorageFault(f"{storage.root}: {e}. Nothing finished was lost: the journal keeps "
                           f"every saved trial; fix the storage and run `{storage.command('resume')}`.") from e


def _run_locked(config: ExperimentConfig, storage: Storage, echo: Echo, include_dashboard: bool | None,
                fallback_allowed: bool, take_over: bool, started_at: float | None = None) -> dict[str, Any]:
    with ExperimentLock(storage, take_over=take_over) as lock:
        if lock.took_over:
            echo(lock.took_over)
        # Read (strictly) before anything is written: a damaged or foreign journal stops here.
        raw = storage.read_json(CONFIG_FILE) if storage.exists(CONFIG_FILE) else None
        experiment_id, since = experiment_identity(raw, last_session(storage) + 1)
        # A pooled study's records carry POOLED_SYMBOL: the experiment's own, not a foreign symbol.
        symbols = None if config.symbols is None else (*config.symbols, POOLED_SYMBOL)
        provenance = Provenance(experiment_id, since, families=tuple(config.families), symbols=symbols)
        history = read_journal(storage, provenance)
        done = _finished_summary(storage, history, echo, config.trials)
        if done is not None:
            echo(f"experiment {config.name} is complete ({done['trials']['completed']} trials); nothing "
                 f"to run. `tuner report {config.name}` shows it; results: {storage.root}")
            for line in cause_lines(ExperimentSummary(storage, done), history):
                echo(line)
            return done
        left = storage.remove_temp_files()  # under the lock: no other writer can be mid-write
        if left:
            echo(f"removed {left} temporary file(s) left by writes an interruption cut short")
        return _run_session(config, storage, echo, include_dashboard, fallback_allowed, history, provenance,
                            started_at)


def _run_session(config: ExperimentConfig, storage: Storage, echo: Echo, include_dashboard: bool | None,
                 fallback_allowed: bool, history: list[JournalRecord], provenance: Provenance,
                 started_at: float | None = None) -> dict[str, Any]:
    # Every second from the process's start to Ray's shutdown is in one phase (phases_s sums
    # to wall_s): start, tuning, rescoring, collation, writing, compaction, shutdown.
    clock = PhaseClock(started_at)
    started = clock.started
    session = last_session(storage) + 1
    weights, tiny_fallback = _resolve_weights(config, echo, fallback_allowed)
    config = replace(config, weights=weights)
    from tuner.engine.local_ray import set_start_wait, stop_local_ray

    set_start_wait()  # Ray reads its start-up wait when first imported: set it before that
    import ray

    started_ray, dashboard = _connect(config, include_dashboard)
    pool: ActorPool | None = None
    trials: StoredTrials | None = None
    default_scores: DefaultScores | None = None
    pooled_scores: PooledScores | None = None
    winner_scores: WinnerScores | None = None
    result_store = None
    collator: TaskCollator | None = None
    try:
        # The data is read and cut by tasks; the windows stay in the object store.
        windows = cut_windows(config)
        studies, skipped = windows.studies, windows.skipped
        for what, why in skipped.items():
            echo(f"skipped {what}: {why}")
        # Now the data says which studies run: a record of any other study stops the run here,
        # before it tunes (it would be merged into no study, or into the wrong one).
        pooled_fams = pooled_families(config.families, studies, config.pooled)
        provenance = replace(provenance, studies=frozenset([*(f"{s}/{f}" for s, f in studies),
                                                             *(pooled_key(f) for f in pooled_fams)]),
                             skipped=skipped)
        # The journal was read (and checked against the experiment) before the data; check the
        # same records against the studies now known, re-reading it only to name a refused
        # record's line.
        if any(provenance.refuses(r) is not None for r in history):
            read_journal(storage, provenance)
        storage.write_json(CONFIG_FILE, {**config.to_dict(), "tiny_fallback": tiny_fallback,
                                         "version": __version__, ID_KEY: provenance.experiment_id,
                                         SINCE_KEY: provenance.since_session})
        pool = _start_actors(config, windows.refs, echo)
        # Checked once the actors run: an autoscaling cluster only has its GPU nodes by now.
        _check_shared_storage(storage)
        actors = pool.actors
        tuned_on = {f: tuning_symbols(f, (s for s, fam in studies if fam == f), config.pooled_symbols, config.seed)
                    for f in pooled_fams}
        routing = Routing(NAMESPACE, {g: tuple(n for n, _ in members) for g, members in actors.items()},
                          config.seed, {f: 1 if f in FAMILY_MODEL else WEIGHTS_FREE_CHUNK for f in config.families},
                          board=pool.board_name, pooled_symbols=tuned_on)
        journal = TrialJournal(storage, session, experiment=provenance.experiment_id)
        searcher, progress, watchdog = _make_searcher(config, storage, studies, history, journal, session,
                                                      len(pool.infos), BoardClient(pool.board), pooled_fams)
        resumed = bool(history) or session > 1
        echo(f"tuning {len(studies)} studies × {config.trials} trials "
             f"({len(config.families)} families, {len({s for s, _ in studies})} symbols"
             + (f"; + {len(pooled_fams)} pooled studies, one per family over "
                + ", ".join(sorted({f"{len(s)} symbols" for s in tuned_on.values()})) if pooled_fams else "")
             + ") with "
             f"{len(pool.infos)} model actors, up to {searcher.pack_size} trials per Tune trial; "
             f"Ray dashboard: {dashboard}"
             + (f" [resumed] with {len(history)} finished trials kept" if resumed else ""))
        from tuner.engine.tuning import tune_studies

        # The store of the trial records starts now and reads the journal's chunks as they are
        # saved (a resumed run's earlier ones at once), so that little is left after tuning.
        trials = start_trials(storage, provenance)
        trials.read_new()
        journal.on_saved = lambda _chunk: trials.read_new()
        results_name = f"{config.name}-results-{uuid.uuid4().hex[:6]}"
        result_store = open_results(results_name, NAMESPACE)
        default_scores = DefaultScores(studies, actors, config.seed, result_store, (NAMESPACE, results_name),
                                       weights=config.weights_source).start()
        pooled_scores = PooledScores(studies, actors, config.seed, result_store, (NAMESPACE, results_name),
                                     config.max_latency_s, searcher.study_done, history)
        searcher.listeners.append(pooled_scores.record)
        winner_scores = WinnerScores(actors, config.seed, (NAMESPACE, results_name), config.max_latency_s,
                                     searcher.study_done)
        searcher.listeners.append(winner_scores.record)
        # Collation's workers start with tuning and import their libraries at the lowest CPU
        # priority, in the time the trials leave idle.
        collator = TaskCollator()
        collator.warm()
        clock.mark("start")
        try:
            outcome = tune_studies(searcher, routing, storage, session, progress, watchdog)
        finally:
            progress.close()
        clock.mark("tuning")
        default_scores.hurry()
        pooled_scores.hurry()
        winner_scores.hurry()
        # The records go to an actor (which writes trials.parquet meanwhile); the driver keeps
        # the winners, the pooled studies' records and the failed trials.
        trials.load(config.max_latency_s, session)
        winners, pooled_records = trials.digest.winners, trials.digest.pooled
        tick = progress.begin_phase("re-scoring winners on the test period")
        store_at = (NAMESPACE, results_name)
        finals, unscored = score_winners(winners, actors, config.seed, result_store, store_at, on_done=tick,
                                         validation=trials.winner_validation(), beside=winner_scores)
        if pooled_records:
            progress.begin_phase("re-scoring each family's pooled config on every symbol")
        pooled = score_pooled(pooled_records, studies, actors, config, result_store, store_at, beside=pooled_scores)
        tick = progress.begin_phase("blend and regime candidates")
        forecasts = winner_forecasts(winners, finals, actors, config.seed, on_done=tick)
        progress.begin_phase("scoring the family defaults")
        defaults = default_scores.result(winners)
        infos = _actor_infos(actors)
        meta = _meta(config, infos, skipped, started, tiny_fallback, resumed, session, journal)
        meta.update(ray.get(pool.ledger.totals.remote()))  # loads and restarts, restarted actors included
        # The model actors' work is done: their CPUs (and GPUs) go to the candidate and
        # collation tasks.
        pool.release()
        derived = derive_candidates(windows, forecasts, config.max_latency_s, config.seed)
        tick = progress.begin_phase("collating: significance tests, result files, summary")
        clock.mark("rescoring")
        meta["phases_s"] = dict(clock.phases)  # completed after shutdown, below
        meta["tuning"] = {"seconds": outcome.seconds, "tune_runs": outcome.runs,
                          "pack_size": searcher.pack_size, "max_packs_in_flight": searcher.max_packs,
                          "peak_packs_running": outcome.peak_running,
                          "searcher_suggest_s": searcher.suggest_s, "searcher_tell_s": searcher.tell_s}
        meta["windows_used"] = windows.windows_used
        timed = TimedStorage(storage)
        collator.on_done = tick
        summary = write_experiment(timed, trials, finals, studies, config.trials, meta, derived,
                                   unscored, defaults, pooled=pooled, window_dates=windows.window_dates,
                                   collator=collator)
        ray.kill(result_store, no_restart=True)  # every document is written: the results are done with
        summary["collation"] = {**collator.stats, "trials_table_s": round(trials.table_s or 0.0, 3)}
        trials_failed = trials.digest.failed
        summary = _add_pooled_section(timed, summary, pooled, pooled_fams, pooled_records, config.trials, tuned_on)
        progress.close()
        clock.mark("collation", within={"writing": timed.write_s})
        trials.wait_compaction()  # it ran beside re-scoring and collation: what is left of it
        trials.close()
        summary["collation"]["compaction_s"] = round(trials.compact_s or 0.0, 3)
        clock.mark("compaction")
        if outcome.stopped:
            summary["stopped"] = outcome.stopped
    finally:
        if default_scores is not None:
            default_scores.stop()
        if pooled_scores is not None:
            pooled_scores.stop()
        if winner_scores is not None:
            winner_scores.stop()
        if collator is not None:
            collator.close()
        if pool is not None:
            pool.release()
        if trials is not None:
            trials.close()
        if result_store is not None:
            ray.kill(result_store, no_restart=True)
        if started_ray:
            stop_local_ray()
    clock.mark("shutdown")
    _finish_timing(summary, clock, storage)
    if outcome.stopped:
        raise TunerError(outcome.stopped)
    _report(summary, storage, echo)
    for line in cause_lines(ExperimentSummary(storage, summary), trials_failed):  # last: what a user must act on
        echo(line)
    return summary


def _finish_timing(summary: dict[str, Any], clock: PhaseClock, storage: Storage) -> None:
    """Give the written summary the whole run's time: the phases after it was first written
    (its own writing, compaction, Ray's shutdown) are known only now, so ``summary.json`` is
    written again with them (the same document, its timing updated). Only this rewrite and the
    final lines printed are outside ``wall_s``."""
    summary["phases_s"] = dict(clock.phases)
    summary["wall_s"] = clock.wall_s
    storage.write_json(SUMMARY_FILE, summary)


def _finished_summary(storage: Storage, history: list[JournalRecord], echo: Echo,
                      trials: int | None = None) -> dict[str, Any] | None:
    """The stored summary when the experiment is complete and nothing is left to run (with a
    budget of ``trials`` per study: an extended budget has trials left to run); None when a run
    is needed (unfinished, extended, or an output to rebuild from the journal).

    Raises:
        JournalError: the summary counts more completed trials than the journal holds (a journal
            deleted or cut short): running would redo them and overwrite the results.
    """
    if not storage.exists(SUMMARY_FILE):
        return None
    try:
        summary = storage.read_json(SUMMARY_FILE)
    except DamagedFile as e:
        echo(f"{e} Rebuilding it now.")
        return None
    # Pooled studies' trials are counted in the summary's ``pooled`` section, not in ``trials``.
    completed = sum(r.status == "completed" and r.symbol != POOLED_SYMBOL for r in history)
    counts = summary.get("trials") if isinstance(summary, dict) else None
    recorded = counts.get("completed") if isinstance(counts, dict) else None
    if isinstance(recorded, int) and recorded > completed:
        raise JournalError(
            f"{storage.path(SUMMARY_FILE)} records {recorded} completed trials{' (complete)' if summary.get('complete') else ''}, "
            f"but the journal ({storage.path(JOURNAL_DIR)}) holds {completed}: it was deleted or cut short. "
            f"Nothing was run or overwritten: a run would redo those trials over the stored results. Restore "
            f"the journal's files from a backup and run `{storage.command('resume')}`; to continue without "
            f"the missing trials (they run again), move {SUMMARY_FILE} out of {storage.root} and resume; "
            f"to start over, move {storage.root} aside or pick another --name.")
    if trials is not None and isinstance(summary, dict) and (summary.get("config") or {}).get("trials", trials) != trials:
        return None
    if not summary.get("complete") or recorded != completed:
        return None
    for relative in (PROGRESS_FILE, TRIALS_FILE):
        try:
            if storage.exists(relative):
                storage.read_parquet(relative) if relative == TRIALS_FILE else storage.read_json(relative)
        except DamagedFile as e:
            echo(f"{e} Rebuilding it now.")
            return None
    try:  # the tables beside it: present, readable, of the same collation
        tables = ExperimentSummary(storage, summary)
        tables.symbol_names(), tables.study_counts()
    except DamagedFile as e:
        echo(f"{e} Rebuilding it now.")
        return None
    return summary


def _stored_config(storage: Storage) -> ExperimentConfig | None:
    from tuner.engine.experiment_config import parse_experiment_config

    if not storage.exists(CONFIG_FILE):
        return None
    data = storage.read_json(CONFIG_FILE)
    data.pop("tiny_fallback", None)
    data.pop("version", None)
    data.pop(ID_KEY, None)
    data.pop(SINCE_KEY, None)
    # Experiments made before pooled_symbols existed tuned their pooled studies on every symbol.
    data.setdefault("pooled_symbols", None)
    return parse_experiment_config(data, storage.path(CONFIG_FILE))


def _check_same_experiment(stored: ExperimentConfig, new: ExperimentConfig, storage: Storage) -> None:
    keys = ("data", "symbols", "families", "trials", "seed", "windows")
    if new.weights is not None:
        keys += ("weights",)
    diff = [k for k in keys if getattr(stored, k) != getattr(new, k)]
    if diff == ["trials"] and new.trials > stored.trials:
        raise ConfigError(
            f"experiment {new.name!r} already exists at {storage.root} with {stored.trials} trials per "
            f"study; to raise it to {new.trials} and continue from its journal, run "
            f"`tuner extend {new.name} --trials {new.trials}{_storage_option(new.storage)}`")
    if diff:
        raise ConfigError(
            f"experiment {new.name!r} already exists at {storage.root} with a different "
            f"{', '.join(diff)}; resume it with `{storage.command('resume')}` or pick another --name"
        )


def _storage_option(storage: str) -> str:
    """`` --storage X`` for a command line, '' for the default storage."""
    return "" if storage == "results" else f" --storage {storage}"


def _ignored_on_resume(stored: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Settings of ``new`` that differ from the stored run's and that resuming does not apply."""
    kept = {"name", "storage", "address", "data", "symbols", "families", "trials", "seed", "windows", "weights"}
    return [f"{k} (stored {getattr(stored, k)!r}, given {getattr(new, k)!r})"
            for k in ExperimentConfig.__dataclass_fields__
            if k not in kept and getattr(stored, k) != getattr(new, k)]


def _resolve_weights(config: ExperimentConfig, echo: Echo, fallback_allowed: bool):
    """Check every needed checkpoint can be found; offline default runs fall back to tiny ones."""
    # Sizes a family's space file lists apply unless the experiment names its own checkpoints.
    resolved = resolve_weights(with_space_checkpoints(config.weights_source, config.families),
                               config.families, fallback_allowed)
    for line in resolved.warnings:
        echo(line)
    return resolved.source, resolved.tiny_fallback


def _connect(config: ExperimentConfig, include_dashboard: bool | None) -> tuple[bool, str]:
    """Join ``config.address`` or start a local Ray; returns (whether this call started Ray,
    the dashboard address)."""
    import ray

    if ray.is_initialized():
        return False, "see the running cluster's dashboard"
    # A job submitted with `ray job submit` gets RAY_ADDRESS: it joins that cluster.
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        from tuner.engine.local_ray import start_failure

        # Joining a cluster: its resources are the cluster's; never pass num_cpus/num_gpus here.
        try:
            context = ray.init(address=address, namespace=NAMESPACE, log_to_driver=True)
        except Exception as e:  # ConnectionError, RuntimeError, auth errors...: one line, not a traceback
            raise start_failure(f"could not join the Ray cluster at {address}", e,
                                "Check that it is running (`ray status`) and the address.") from e
    else:
        from tuner.engine.local_ray import start_local_ray

        context = start_local_ray(NAMESPACE, include_dashboard)
    url = getattr(context, "dashboard_url", None)
    return True, (f"http://{url}" if url else "not running")


def _check_shared_storage(storage: Storage) -> None:
    """On a multi-node cluster a plain path must be a filesystem every node shares."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if is_uri(storage.root) or len({n["NodeManagerAddress"] for n in nodes}) <= 1:
        return
    marker = f".shared-check-{uuid.uuid4().hex[:8]}"
    storage.write_bytes(marker, b"")
    target = os.path.join(storage.root, marker)

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    checks = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
              .remote(target) for n in nodes]
    try:
        ok = ray.get(checks, timeout=60)
    finally:
        os.remove(target)
    if not all(ok):
        raise ConfigError(
            f"storage {storage.base!r} is not shared by every node ({sum(ok)}/{len(ok)} see it): "
            "on a multi-node cluster Ray Tune does not sync results to the head node. Use a shared "
            "filesystem path mounted on all nodes or a URI such as s3://bucket/prefix."
        )


def _default_gpu_share(family: str, families: Sequence[str]) -> float:
    """``GPU_SHARE[family]``, scaled down when the families' shares add up to more than one GPU
    (all four model families: one set of actors must still fit one GPU)."""
    total = sum(GPU_SHARE[f] for f in families if f in GPU_SHARE)
    return GPU_SHARE[family] / max(1.0, total)


def actor_groups(config: ExperimentConfig) -> dict[str, tuple[str, str | None]]:
    """Actor group (:func:`~tuner.engine.actors.group_key`) → (family, checkpoint size): one
    group per family, or one per size of a family that searches several.

    Raises:
        ConfigError: ``resources.<family>.gpu_share`` names a size the family does not search.
    """
    groups: dict[str, tuple[str, str | None]] = {}
    for family in config.families:
        sizes = [c.name for c in config.weights_source.family_checkpoints(family)]
        named = [s for s, _ in config.resources_for(family).gpu_share or ()]
        unknown = [s for s in named if s not in sizes]
        if unknown:
            raise ConfigError(f"resources.{family}.gpu_share.{unknown[0]}: not a checkpoint size {family} searches "
                              + (f"({', '.join(sizes)})" if sizes else "(it searches one checkpoint: use num_gpus)"))
        for size in sizes or [None]:
            groups[group_key(family, size)] = (family, size)
    return groups


def _actor_plan(config: ExperimentConfig) -> dict[str, FamilyResources]:
    """Each actor group's actor count and resources: the config's, filled from the cluster.
    A family searching several sizes has a group per size, each with ``actors`` actors and
    its ``gpu_share`` (default: the family's share split evenly among its sizes)."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 1.0)
    groups = actor_groups(config)
    n = len(groups)
    per_family = {f: sum(g[0] == f for g in groups.values()) for f in config.families}
    plan = {}
    for group, (family, size) in groups.items():
        want = config.resources_for(family)
        given = want.share_of(size) if size is not None else None
        if given is None and want.num_gpus is not None:
            given = want.num_gpus
        # GPU sizing when the cluster has GPUs, or when the config asks for them on a cluster whose
        # GPU nodes do not exist yet (autoscaling from zero): never size GPU actors from the head.
        if (gpus >= 1 and family in GPU_SHARE) or (given or 0) > 0:
            share = given if given is not None else _default_gpu_share(family, config.families) / per_family[family]
            actors = want.actors or max(1, int(gpus))
            default_cpu = min(1.0, cpus / (n * actors + 1)) if gpus >= 1 else 1.0
            cpu = want.num_cpus if want.num_cpus is not None else default_cpu
        else:
            share = given or 0.0
            cpu = want.num_cpus if want.num_cpus is not None else (2.0 if cpus >= 8 else cpus / (n + 1))
            actors = want.actors or max(1, int((cpus - 1) // (cpu * n)))
        plan[group] = FamilyResources(actors=actors, num_gpus=share, num_cpus=cpu)
    return plan


@dataclass
class ActorPool:
    """The model actors of a run and what must live as long as they do.

    Attributes:
        actors: actor group (a family, or ``family@size``) → [(name, handle)].
        infos: what each actor reported once loaded (``ModelServer.info``).
        data_refs: every family's windows in the object store: the driver owns them for the
            whole run, because a restarted actor fetches them again (via the window store).
        groups: placement groups, one per GPU set (one actor of each family on one node).
        board, board_name: the :class:`~tuner.engine.actors.PackBoard` actor and its name.
        ledger, ledger_name: the :class:`~tuner.engine.actors.LoadLedger` actor and its name.
        store, store_name: the :class:`~tuner.engine.actors.WindowStore` actor and its name.
    """

    actors: dict[str, list]
    infos: list[dict]
    data_refs: list
    groups: list
    board: Any = None
    board_name: str | None = None
    ledger: Any = None
    ledger_name: str | None = None
    store: Any = None
    store_name: str | None = None

    def release(self) -> None:
        import ray
        from ray.util import remove_placement_group

        for pool in self.actors.values():
            for _, handle in pool:
                ray.kill(handle, no_restart=True)
        for group in self.groups:
            remove_placement_group(group)
        for helper in (self.board, self.ledger, self.store):
            if helper is not None:
                ray.kill(helper, no_restart=True)
        # Released before collation, and again (a no-op) when the run ends.
        self.actors, self.groups, self.board, self.ledger, self.store = {}, [], None, None, None


def _gpu_sets(plan: dict[str, FamilyResources]) -> int:
    """How many placement groups to pack actors into: one per GPU set when every family has the
    same number of GPU actors and one of each fits a GPU; else 0 (schedule actors freely)."""
    counts = {res.actors for res in plan.values()}
    if len(counts) == 1 and all(res.num_gpus for res in plan.values()) \
            and sum(res.num_gpus for res in plan.values()) <= 1.0 + 1e-9:
        return counts.pop()
    return 0


def _start_actors(config: ExperimentConfig, window_refs: list, echo: Echo) -> ActorPool:
    """Start every model actor and wait until all have loaded their weights (or time out).

    With GPUs, each set of one actor per family is a STRICT_PACK placement group, so a set
    always shares one node's GPU (fractional shares alone could put two Toto actors on one GPU
    and strand the Kronos actors on a node without CPU for them)."""
    import ray
    from ray.util import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    server = ray.remote(ModelServer)
    run_id = uuid.uuid4().hex[:6]
    plan = _actor_plan(config)
    members_of = actor_groups(config)
    families = list(plan)  # actor groups: a family, or one size of a family
    groups = [placement_group([{"GPU": plan[f].num_gpus, "CPU": plan[f].num_cpus} for f in families],
                              strategy="STRICT_PACK", name=f"{config.name}-set{i}-{run_id}")
              for i in range(_gpu_sets(plan))]
    pool = ActorPool({}, [], [], groups)
    pool.board_name = f"{config.name}-packs-{run_id}"
    pool.board = ray.remote(PackBoard).options(name=pool.board_name, namespace=NAMESPACE,
                                               num_cpus=0).remote()
    pool.store_name = f"{config.name}-windows-{run_id}"
    pool.store = ray.remote(WindowStore).options(name=pool.store_name, namespace=NAMESPACE,
                                                 num_cpus=0).remote()
    pool.ledger_name = f"{config.name}-loads-{run_id}"
    pool.ledger = ray.remote(LoadLedger).options(name=pool.ledger_name, namespace=NAMESPACE,
                                                 num_cpus=0).remote()
    # The windows' slices (tuner.engine.window_slices), handed to each actor by the store.
    pool.data_refs = list(window_refs)
    ray.get(pool.store.put.remote(pool.data_refs))
    for group, res in plan.items():
        family, size = members_of[group]
        pool.actors[group] = []
        for i in range(res.actors):
            name = f"{config.name}-{family}-{i}-{run_id}" if size is None else f"{config.name}-{family}-{size}-{i}-{run_id}"
            placement = {"scheduling_strategy": PlacementGroupSchedulingStrategy(
                groups[i], placement_group_bundle_index=families.index(group))} if groups else {}
            handle = server.options(
                name=name, namespace=NAMESPACE, num_cpus=res.num_cpus, num_gpus=res.num_gpus,
                max_restarts=3, max_task_retries=2, max_concurrency=ACTOR_CONCURRENCY, **placement,
            ).remote(family, config.weights, (NAMESPACE, pool.store_name), config.device, config.autocast_dtype,
                     max(1, round(res.num_cpus)), config.bank_max_mb * 1024**2,
                     config.batch_wait_ms / 1000, res.num_gpus, (NAMESPACE, pool.ledger_name), name, size)
            pool.actors[group].append((name, handle))
        echo(f"{family}{'' if size is None else f' checkpoint {size}'}: {res.actors} model actor(s), "
             f"{res.num_gpus:g} GPU and {res.num_cpus:g} CPU each"
             + (" (one of each family and size per GPU set)" if groups else ""))
    pending = {h.info.remote(): (g, n) for g, members in pool.actors.items() for n, h in members}
    ready, waiting = ray.wait(list(pending), num_returns=len(pending), timeout=config.pending_timeout_s)
    if waiting:
        stuck = sorted({pending[r][0] for r in waiting})
        pool.release()
        needs = "; ".join(f"{f}: {plan[f].actors} × ({plan[f].num_gpus:g} GPU, {plan[f].num_cpus:g} CPU)"
                          for f in stuck)
        raise TunerError(
            f"model actors for {', '.join(stuck)} did not start within {config.pending_timeout_s:.0f}s: "
            f"they need {needs}; the cluster has GPU {ray.available_resources().get('GPU', 0):g} and "
            f"CPU {ray.available_resources().get('CPU', 0):g} free of GPU "
            f"{ray.cluster_resources().get('GPU', 0):g}, CPU {ray.cluster_resources().get('CPU', 0):g}. "
            "Lower resources.<family>.num_gpus/num_cpus/actors, or add nodes."
        )
    pool.infos = ray.get(ready)
    loads = sum(i["model_loads"] for i in pool.infos)
    echo(f"model actors ready: {len(pool.infos)} actors, {loads} model loads "
         f"({', '.join(sorted({i['device'] for i in pool.infos}))})")
    if any(i["tiny_weights"] for i in pool.infos):
        echo("WARNING: TINY RANDOM-INIT WEIGHTS: scores are noise, for pipeline checks only.")
    return pool


class BoardClient:
    """The searcher's side of the :class:`~tuner.engine.actors.PackBoard` actor."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def put(self, pack_id: str, pack: list) -> None:
        import ray

        ray.get(self.handle.put.remote(pack_id, pack))  # on the board before the trial can start

    def drop(self, pack_id: str) -> None:
        self.handle.drop.remote(pack_id)


def _make_searcher(config: ExperimentConfig, storage: Storage, studies: list[tuple[str, str]],
                   history: list[JournalRecord], journal: TrialJournal, session: int, n_actors: int,
                   board: BoardClient, pooled_fams: list[str] | tuple[str, ...] = ()):
    """The multiplexing searcher (every study rebuilt from the journal, the pooled studies of
    ``pooled_fams`` included), the progress view listening to it, and the stuck-resources watchdog."""
    from tuner.engine.progress import PendingWatchdog, ProgressView
    from tuner.engine.search import StudyMultiplexer, auto_pack_size

    # once per family, not per study; with the `checkpoint` dimension where sizes are searched
    families = {f: load_family_config(f, weights=config.weights_source) for f in config.families}
    spaces = {f"{s}/{f}": (s, f, families[f].space) for s, f in studies}
    spaces.update({pooled_key(f): (POOLED_SYMBOL, f, families[f].space) for f in pooled_fams})
    max_packs = max(1, min(len(studies) * config.max_concurrent_per_study, PACKS_PER_ACTOR * n_actors))
    pack_size = config.pack_size or auto_pack_size(len(studies), config.max_concurrent_per_study, max_packs)
    searcher = StudyMultiplexer(spaces, config.trials, config.max_concurrent_per_study, config.seed,
                                points_to_evaluate={**_first_points(config, studies, families),
                                                    **_pooled_first_points(pooled_fams, families)},
                                pack_size=pack_size,
                                max_packs=max_packs, journal=journal, history=records_by_study(history),
                                session=session, board=board, numbers_seen=_numbers_seen(storage),
                                first=[pooled_key(f) for f in pooled_fams])
    progress = ProgressView(storage, list(spaces), config.trials, history)
    progress.in_flight = searcher.in_flight
    searcher.listeners.append(progress.record)
    return searcher, progress, PendingWatchdog(config.pending_timeout_s)


def _numbers_seen(storage: Storage) -> dict[str, int]:
    """Study key → the highest trial number in ``trials.parquet`` (none when it is missing or
    damaged): a chunk moved out of the journal keeps its numbers there, so they are not reused."""
    if not storage.exists(TRIALS_FILE):
        return {}
    try:
        table = storage.read_parquet(TRIALS_FILE)
    except DamagedFile:
        return {}  # rebuilt by this run; the journal's numbers still hold
    if not {"study", "number"} <= set(table.columns) or table.empty:
        return {}
    return {str(k): int(v) for k, v in table.groupby("study")["number"].max().items()}


def _first_points(config: ExperimentConfig, studies: list[tuple[str, str]],
                  families: dict[str, Any]) -> dict[str, list[dict]]:
    """What each study evaluates first: its family's default config (always scored, as an
    ordinary trial that TPE learns from and that counts toward the budget), then the warm start."""
    warm = _warm_start(config, studies)
    points = {}
    for symbol, family in studies:
        key = f"{symbol}/{family}"
        default = families[family].default_point
        first = [default] if default else []
        points[key] = (first + [p for p in warm.get(key, []) if p != default])[:config.trials]
    return points


def _pooled_first_points(pooled_fams, families: dict[str, Any]) -> dict[str, list[dict]]:
    """A pooled study starts, like every study, from its family's default config."""
    return {pooled_key(f): [families[f].default_point] for f in pooled_fams if families[f].default_point}


def _warm_start(config: ExperimentConfig, studies: list[tuple[str, str]]) -> dict[str, list[dict]]:
    """Points each study evaluates first (see :mod:`tuner.engine.warm_start`)."""
    from tuner.core.config import configs_dir
    from tuner.engine.warm_start import warm_start_points

    if not config.warm_start_from and not config.warm_start_production:
        return {}
    previous = None
    if config.warm_start_from:
        previous = Storage(config.storage, config.warm_start_from)
        if not previous.exists(TRIALS_FILE):
            raise ConfigError(f"warm_start_from: experiment {config.warm_start_from!r} has no "
                              f"trials.parquet under {previous.root}")
    production = configs_dir() / "best" if config.warm_start_production else None
    spaces = {f: load_family_config(f, weights=config.weights_source).space for f in config.families}
    return warm_start_points(studies, spaces, previous=previous, production=production,
                             top_k=config.warm_start_top_k, budget=config.trials)


def _add_pooled_section(storage: Storage, summary: dict[str, Any], pooled: dict[str, PooledOutcome],
                        pooled_fams: list[str], pooled_records: list[TrialRecord], budget: int,
                        tuned_on: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """``summary.json``'s ``pooled`` section (unless collation wrote one) and completeness: an
    experiment whose pooled studies lack completed trials is not complete (a resume runs them)."""
    if not pooled_fams:
        return summary
    if "pooled" not in summary:
        summary["pooled"] = pooled_summary(pooled, budget, tuned_on)
    done = pooled_completed(pooled_records, pooled_fams)
    summary["pooled_trials"] = done
    summary["complete"] = bool(summary.get("complete")) and all(n >= budget for n in done.values())
    storage.write_json(SUMMARY_FILE, summary)
    return summary


def _actor_infos(actors: dict[str, list]) -> list[dict[str, Any]]:
    """What each actor reports of itself; an actor dead for good is listed as such."""
    import ray
    from ray.exceptions import RayActorError

    infos = []
    for group, members in actors.items():
        family, _, size = group.partition("@")
        for name, handle in members:
            try:
                infos.append(ray.get(handle.info.remote()))
            except RayActorError as e:
                infos.append({"family": family, **({"checkpoint": size} if size else {}), "name": name, "dead": f"{type(e).__name__}",
                              "model_loads": 0, "restarted": True, "tiny_weights": False})
    return infos


def _meta(config: ExperimentConfig, infos: list[dict], skipped: dict, started: float,
          tiny_fallback: bool, resumed: bool, session: int, journal: TrialJournal) -> dict[str, Any]:
    import ray

    return {
        "experiment": config.name,
        "max_latency_s": config.max_latency_s,
        "config": config.to_dict(),
        "data": config.data or str(bundled_data_path()),
        "windows": {**config.windows.to_dict(), "auto_cap": AUTO_CAP, "auto_min": AUTO_MIN,
                    "auto_context": AUTO_CONTEXT},
        "seed": config.seed,
        "weights": config.weights_source.to_dict(),
        "tiny_weights": any(i["tiny_weights"] for i in infos),
        "tiny_fallback": tiny_fallback,
        "model_actors": len(infos),
        "sample_banks": _sum_stats(i.get("bank") for i in infos),
        "batching": _sum_stats(i.get("batching") for i in infos),
        "samples_per_batch": _sum_stats(i.get("samples_per_batch") for i in infos),
        "actors": infos,
        "skipped": skipped,
        "resumed": resumed,
        "session": session,
        "journal": journal.stats(),
        "wall_s": time.time() - started,
        "versions": {"forecast-tuner": __version__, "ray": ray.__version__},
    }


def _sum_stats(stats) -> dict[str, int]:
    total: dict[str, int] = {}
    for s in stats:
        for k, v in (s or {}).items():
            total[k] = total.get(k, 0) + v
    return total


def phases_line(phases: dict[str, float]) -> str:
    """``time: start 19s, tuning 58s, ...``: where the wall time went, whole seconds."""
    return "time: " + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in phases.items())


def _report(summary: dict[str, Any], storage: Storage, echo: Echo) -> None:
    t = summary["trials"]
    echo(f"done in {summary['wall_s']:.0f}s: {t['completed']} trials completed, {t['failed']} failed, "
         f"{t['never_ran']} never ran; {summary['model_loads']} model loads by "
         f"{summary['model_actors']} actors")
    echo("  " + phases_line(summary.get("phases_s") or {}))
    rows = ExperimentSummary(storage, summary).symbols(  # key columns only: no entry is parsed
        ["best_family", "validation_pct_return_mae", "test_pct_return_mae", "baseline_validation_pct_return_mae",
         "beats_baseline"])
    shown = rows.head(REPORT_SYMBOLS).to_dict(orient="records")
    width = max([10, *(len(entry["symbol"]) for entry in shown)])  # long symbols keep columns
    for entry in shown:
        flag = "" if entry["beats_baseline"] else "  (does not beat the baseline)"
        test = entry["test_pct_return_mae"]
        echo(f"  {entry['symbol']:<{width}} best {entry['best_family']:<16} val {entry['validation_pct_return_mae']:.5f}  "
             f"test {test:.5f}  baseline {entry['baseline_validation_pct_return_mae']:.5f}{flag}")
    if len(rows) > REPORT_SYMBOLS:
        echo(f"  ... and {len(rows) - REPORT_SYMBOLS} more symbols: `tuner report {summary['experiment']}`")
    for family, pooled in sorted((summary.get("pooled") or {}).items()):
        value = pooled.get("validation_pct_return_mae") if isinstance(pooled, dict) else None
        if isinstance(value, float):
            tuned_on = pooled.get("tuned_on") or pooled.get("symbols") or ()
            echo(f"  pooled {family:<16} val {value:.5f} (mean validation over the {len(tuned_on)} symbols "
                 f"it was tuned on, {pooled.get('trials')} trials)")
    decisions = summary.get("decisions") or {}
    if decisions.get("symbols"):
        echo(f"decisions: own {decisions.get('own', 0)}, pooled {decisions.get('pooled', 0)}, default "
             f"{decisions.get('default', 0)} of {decisions['symbols']} symbols ({decisions.get('method')} FDR "
             f"{decisions.get('fdr_level')} on the test period); `tuner report {summary['experiment']}` says why")
    if summary.get("tiny_weights"):
        echo("WARNING: these results were made with TINY RANDOM-INIT weights: noise, not skill.")
    echo(f"results: {storage.root}")
