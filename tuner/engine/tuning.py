"""The Ray Tune layer of a run: Tune runs of packed trials until every study has its budget.

Why several Tune runs ("segments") rather than one: Tune keeps every trial of a run in memory,
walks them on every step and rewrites all of them into its experiment checkpoint. Capping a run
at :data:`TUNE_TRIALS_PER_RUN` packs keeps that bounded whatever the experiment's size; the
searcher (and so every study's history) carries over from one run to the next, and the runs'
folders sit under ``<experiment>/_tune/`` named ``s<session>-r<run>``. The cost is one drain per
run (its last packs finish while no new ones start), a fraction of a second for weights-free
families and one pack's duration at most.

Durability does not depend on Tune's checkpoints: finished trials are in the journal.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from ray.tune import Callback

from tuner.core.storage import Storage
from tuner.engine.actors import Routing, pack_trial, trial_dirname
from tuner.engine.progress import PendingWatchdog, ProgressView
from tuner.engine.search import StudyMultiplexer

TUNE_TRIALS_PER_RUN = 100
"""Packs per Tune run (each carries up to ``pack_size`` Optuna trials); the environment variable
``TUNER_PACKS_PER_TUNE_RUN`` overrides it (tests use it to make many runs from a small one)."""
TRIAL_RESOURCES = {"cpu": 0.01}
"""Trials only wait on model actors; the actors hold the real CPU/GPU share."""
TUNE_ENV = {
    # Per-trial CSV/JSON/TensorBoard files: nothing of ours reads them (the journal has it all).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Tune's checkpoint is not what resumes a run (the journal is): its default period will do.
    "TUNE_GLOBAL_CHECKPOINT_S": "auto",
    # Ctrl-C stops the run at once (the journal is flushed); Tune's handler would end only the
    # current Tune run and print a Tuner.restore hint that does not apply.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # Tune's own terminal output (experiment box, "View detailed results here"): ours replaces it.
    "RAY_AIR_NEW_OUTPUT": "0",
}
QUIET_LOGGERS = {
    "ray.tune": logging.WARNING,  # "Wrote the latest version of all result files ..." per run
    # Tune looks for per-trial result files at the end of each run; we write none on purpose.
    "ray.tune.analysis.experiment_analysis": logging.ERROR,
}


class DropToldSlots(Callback):
    """Empties a pack's reported slots once the searcher has told them to their studies.

    Tune keeps each trial's last result in memory and in every experiment checkpoint; a pack's
    result holds up to ``pack_size`` trials' metrics, which the journal already has. Tune calls
    the searcher before the callbacks (``TuneController._process_trial_result``), and a slot the
    searcher has not taken yet is left in place, so nothing it needs is ever dropped.
    """

    def __init__(self, searcher: StudyMultiplexer) -> None:
        self.searcher = searcher

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        slots = result.get("slots")
        if slots and not any(s["slot"] in self.searcher.slots for s in slots):
            result["slots"] = []

    def __getstate__(self) -> dict:
        return {}  # Tune pickles its callbacks; this one is never restored


@dataclass
class TuningOutcome:
    """What the Tune runs of one session did.

    Attributes:
        runs: Tune runs made.
        stopped: the watchdog's message when it stopped the session (stuck resources).
        seconds: wall time of the Tune runs.
        peak_running: most Tune trials (packs) running at once.
    """

    runs: int
    stopped: str | None
    seconds: float
    peak_running: int = 0


def tune_studies(searcher: StudyMultiplexer, routing: Routing, storage: Storage, session: int,
                 progress: ProgressView, watchdog: PendingWatchdog,
                 trials_per_run: int | None = None) -> TuningOutcome:
    """Run Tune until the searcher has every study's budget (or the watchdog stops it)."""
    trials_per_run = trials_per_run or int(os.environ.get("TUNER_PACKS_PER_TUNE_RUN", TUNE_TRIALS_PER_RUN))
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    # Without max_concurrent_trials Tune keeps one trial pending for a custom searcher, so packs
    # would run one at a time; the searcher itself caps packs in flight at max_packs.
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(searcher.max_packs)
    for name, level in QUIET_LOGGERS.items():
        if logging.getLogger(name).getEffectiveLevel() < level:
            logging.getLogger(name).setLevel(level)
    from ray import tune

    start = time.perf_counter()
    trainable = tune.with_resources(tune.with_parameters(pack_trial, routing=routing), TRIAL_RESOURCES)
    runs = 0
    if searcher.journal is not None:
        searcher.journal.start()  # records reach storage within a second, whatever Tune does next
    try:
        while not searcher.done and watchdog.message is None:
            runs += 1
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    num_samples=trials_per_run,
                    reuse_actors=True,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=f"s{session:03d}-r{runs:04d}",
                    storage_path=storage.tune_storage_path,
                    failure_config=tune.FailureConfig(max_failures=2),
                    callbacks=[progress, watchdog, DropToldSlots(searcher)],
                    stop=watchdog,
                    verbose=0,
                ),
            )
            tuner.fit()
            # fit() returns when every trial of the run has ended: a pack still held will never
            # report (its slots fail and a resume retries them), and must not keep the loop going.
            searcher.abandon_packs()
    finally:
        if searcher.journal is not None:
            searcher.journal.close()  # raises StorageFault when the storage refused a write
    return TuningOutcome(runs=runs, stopped=watchdog.message, seconds=time.perf_counter() - start,
                         peak_running=watchdog.peak_running)
