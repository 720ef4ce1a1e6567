"""Live progress of an experiment, a stored copy for ``tuner status``, and a stuck-trial watchdog.

The view is built for 1,500 studies: counts are updated incrementally, one finished Optuna
trial at a time (the searcher calls :meth:`ProgressView.record`), never recounted from Tune's
trial list; the terminal shows a summary that fits a screen (overall done/total, rate, ETA, per
family counts, the best and worst studies by skill, recent failures), drawn with Rich on a
terminal and as one plain line every ``log_interval_s`` elsewhere (logs, CI, ``ray job logs``).
Per-study detail goes to ``progress.json`` (``tuner status NAME --family/--symbol``).

Tune pickles its callbacks into its own state; a pickled view is a small stub, never restored.
"""

from __future__ import annotations

import atexit
import heapq
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from tuner.core.storage import PROGRESS_FILE, Storage
from tuner.engine.journal import JournalRecord

TOP = 5
"""Best and worst studies shown on the terminal."""
WARMUP_TRIALS = 5
"""Trials this session must finish before a rate and ETA are shown ("warming up" until then):
the first trials include actor start-up and TPE's first suggestions, so an ETA from them is
off by far (a 4-minute demo first said 37 min)."""
RATE_WINDOW_S = 60.0
"""The rate (and so the ETA) is over trials finished in this many recent seconds."""
WRITE_SHARE = 0.05
"""Most of the driver's time ``progress.json`` writes may take (they are spaced out to keep it)."""


class StudyProgress:
    """One study's counts: finished, failed, best validation score, baseline (for skill)."""

    __slots__ = ("done", "failed", "best", "baseline")

    def __init__(self) -> None:
        self.done, self.failed, self.best, self.baseline = 0, 0, math.inf, None

    @property
    def skill(self) -> float | None:
        if self.baseline and math.isfinite(self.best):
            return 1.0 - self.best / self.baseline
        return None


class ProgressView(Callback):
    """Experiment progress on the terminal and in ``<experiment>/progress.json``.

    Args:
        storage: the experiment's storage.
        studies: every study key of the experiment.
        budget: Optuna trials per study.
        history: trials finished by earlier sessions (a resumed run counts them).
        live: draw with Rich (default: when stdout is a terminal).
        interval_s: redraw period on a terminal; ``progress.json`` is written at most this often
            (and less often when writing it would take more than :data:`WRITE_SHARE` of the time).
        log_interval_s: plain-line period when not on a terminal.
    """

    def __init__(self, storage: Storage, studies: list[str], budget: int,
                 history: Iterable[JournalRecord] = (), live: bool | None = None,
                 interval_s: float = 1.0, log_interval_s: float = 10.0) -> None:
        self.storage, self.budget = storage, budget
        self.interval_s, self.log_interval_s = interval_s, log_interval_s
        self.live_mode = sys.stdout.isatty() if live is None else live
        self.studies = {k: StudyProgress() for k in studies}
        self.families: dict[str, dict[str, int]] = {}
        for key in studies:
            fam = self.families.setdefault(key.rsplit("/", 1)[1], {"studies": 0, "done": 0, "failed": 0,
                                                                      "finished_studies": 0})
            fam["studies"] += 1
        self.failures: list[str] = []
        self.done_total = 0
        self.in_flight: Mapping[str, int] = {}
        for record in history:
            self.record(record)
        self.done_at_start = self.done_total
        self.start = time.time()
        self.last_draw = self.last_log = self.last_write = 0.0
        self.write_s = 0.0  # how long the last progress.json write took
        self._live = None
        self.recent: deque[tuple[float, int]] = deque([(self.start, self.done_total)])
        self.current_phase: dict[str, Any] | None = None

    # ---------------------------------------------------------------------- incremental state
    def record(self, record: JournalRecord) -> None:
        """Count one finished Optuna trial (the searcher calls this as it tells the study)."""
        study = self.studies.get(record.study)
        if study is None:
            return
        family = self.families[record.family]
        if record.status == "completed" and record.value is not None:
            study.done += 1
            family["done"] += 1
            study.best = min(study.best, record.value)
            study.baseline = study.baseline or record.metrics.get("baseline_pct_return_mae")
        else:
            study.failed += 1
            family["failed"] += 1
            self.failures = (self.failures + [f"{record.study}: {record.error}"[:200]])[-TOP:]
            if self.started and not self.live_mode:
                print(f"[{self.storage.name}] {record.study} trial {record.trial_id} FAILED: "
                      f"{(record.error or '')[:200]}", flush=True)
        if study.done + study.failed == self.budget:
            family["finished_studies"] += 1
        self.done_total += 1
        if self.started:
            self._note_throughput(time.time())

    @property
    def started(self) -> bool:
        return hasattr(self, "done_at_start")

    def total(self) -> int:
        return self.budget * len(self.studies)

    def _note_throughput(self, now: float) -> None:
        """Keep (time, trials done) points of the last RATE_WINDOW_S seconds, plus the one
        just before them, so the rate spans the whole window."""
        self.recent.append((now, self.done_total))
        while len(self.recent) > 2 and self.recent[1][0] < now - RATE_WINDOW_S:
            self.recent.popleft()

    @property
    def warming_up(self) -> bool:
        """Too few trials finished in this session for a rate worth showing."""
        return self.done_total - self.done_at_start < WARMUP_TRIALS

    def rate(self, now: float | None = None) -> float:
        """Optuna trials per second over the last RATE_WINDOW_S seconds of this session (since
        the session started, while that is shorter); 0.0 before any trial of this session."""
        now = time.time() if now is None else now
        first_t, first_done = self.recent[0]
        done = self.done_total - first_done
        elapsed = now - first_t
        return done / elapsed if done > 0 and elapsed > 0 else 0.0

    def eta(self) -> str:
        if self.warming_up:
            return "warming up"
        rate = self.rate()
        if rate <= 0:
            return "unknown (no trial finished recently)"
        remaining = max(0, self.total() - self.done_total) / rate  # retried failures count twice
        return f"{remaining / 60:.1f} min" if remaining >= 60 else f"{remaining:.0f} s"

    def pace(self) -> str:
        """``12.3/s, ETA 4.2 min``, or ``warming up`` until WARMUP_TRIALS trials finished."""
        if self.warming_up:
            return f"warming up ({self.done_total - self.done_at_start}/{WARMUP_TRIALS} trials before a rate)"
        return f"{self.rate():.1f}/s, ETA {self.eta()}"

    # ---------------------------------------------------------------------- after tuning
    def begin_phase(self, name: str, total: int | None = None) -> Callable[[int, int | None], None]:
        """Show a phase after tuning (re-scoring, collation) with its own progress, replacing
        the rate and ETA (the trials are done). Returns ``tick(done, total)`` to report its
        progress; :meth:`close` ends it."""
        self.current_phase = {"name": name, "done": 0, "total": total, "since": time.time()}
        self.refresh(force=True)

        def tick(done: int, total: int | None = None) -> None:
            phase = self.current_phase
            if phase is not None:
                phase["done"] = done
                phase["total"] = total if total is not None else phase["total"]
                self.refresh()

        return tick

    def phase_text(self) -> str:
        """``re-scoring winners: 12/54, 8 s`` for the phase under way ('' when none)."""
        phase = self.current_phase
        if phase is None:
            return ""
        count = f": {phase['done']}/{phase['total']}" if phase["total"] else ""
        return f"{phase['name']}{count}, {time.time() - phase['since']:.0f} s"

    def ranked(self) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
        """The best and worst studies by skill (1 - best / baseline: comparable across symbols)."""
        scored = [(s.skill, k) for k, s in self.studies.items() if s.skill is not None]
        return heapq.nlargest(TOP, scored), heapq.nsmallest(TOP, scored)

    def snapshot(self) -> dict[str, Any]:
        return {
            "experiment": self.storage.name,
            "updated": time.time(),
            "elapsed_s": time.time() - self.start,
            "trials_done": self.done_total,
            "trials_total": self.total(),
            "trials_per_s": self.rate(),
            "eta": self.eta(),
            "pace": self.pace(),
            "phase": self.phase_text() or None,
            "families": self.families,
            "recent_failures": self.failures,
            "studies": {k: {"done": s.done, "failed": s.failed, "running": self.in_flight.get(k, 0),
                            "total": self.budget,
                            "best_pct_return_mae": None if math.isinf(s.best) else s.best,
                            "skill": s.skill}
                        for k, s in self.studies.items()},
        }

    # ---------------------------------------------------------------------- Tune hooks
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last_draw >= self.interval_s:
            self.last_draw = now
            # progress.json holds every study: at 10,000 studies one write takes ~0.5 s of the
            # driver, which also runs Tune's loop; so it is written at most WRITE_SHARE of the time.
            if force or now - self.last_write >= self.write_s / WRITE_SHARE:
                self.last_write = now
                self._write()
                self.write_s = time.time() - now
            if self.live_mode:
                self._draw()
        if not self.live_mode and (force or now - self.last_log >= self.log_interval_s):
            self.last_log = now
            print(self.headline(), flush=True)

    def close(self) -> None:
        """Final state: written, drawn once, the live display released (and a phase ended)."""
        self.refresh(force=True)
        self.current_phase = None
        self._stop_live()

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # ---------------------------------------------------------------------- output
    def headline(self) -> str:
        failed = sum(f["failed"] for f in self.families.values())
        return (f"[{self.storage.name}] {self.done_total}/{self.total()} trials "
                f"({failed} failed), {self.phase_text() or self.pace()}")

    def _write(self) -> None:
        try:
            self.storage.write_bytes(PROGRESS_FILE, json.dumps(self.snapshot(), allow_nan=False).encode())
        except OSError:
            pass  # progress is best-effort; the journal is what must not fail

    def _draw(self) -> None:
        from rich.live import Live

        if self._live is None:
            self._live = Live(self.renderable(), auto_refresh=False, transient=False)
            self._live.start()
            atexit.register(self._stop_live)  # a crash between phases still restores the terminal
        self._live.update(self.renderable(), refresh=True)

    def renderable(self):
        from rich.console import Group
        from rich.table import Table

        head = Table.grid(padding=(0, 2))
        head.add_row(f"[bold]{self.storage.name}[/]", self.headline().split("] ", 1)[1])
        families = Table("family", "studies", "finished", "trials done", "failed", "running",
                         box=None, header_style="bold")
        for name, f in self.families.items():
            running = sum(n for k, n in self.in_flight.items() if k.endswith("/" + name))
            families.add_row(name, str(f["studies"]), str(f["finished_studies"]),
                             f"{f['done'] + f['failed']}/{f['studies'] * self.budget}",
                             str(f["failed"]), str(running))
        best, worst = self.ranked()
        ranks = Table("best studies (skill)", "", "worst studies (skill)", "", box=None, header_style="bold")
        for i in range(max(len(best), len(worst))):
            b = best[i] if i < len(best) else (None, "")
            w = worst[i] if i < len(worst) else (None, "")
            ranks.add_row(b[1], "" if b[0] is None else f"{b[0]:+.3f}", w[1], "" if w[0] is None else f"{w[0]:+.3f}")
        parts = [head, families, ranks]
        if self.failures:
            parts.append("[red]recent failures[/]\n" + "\n".join(f"  {f}" for f in self.failures))
        return Group(*parts)

    def __getstate__(self) -> dict[str, Any]:
        return {"unpicklable": True}  # Tune pickles callbacks; see the module docstring

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def read_progress(storage: Storage) -> dict[str, Any] | None:
    if not storage.exists(PROGRESS_FILE):
        return None
    return storage.read_json(PROGRESS_FILE)  # damaged: an error naming it and the way back


class PendingWatchdog(Callback, Stopper):
    """Stops the experiment with a clear message when trials wait for resources that never come:
    some trial PENDING, none RUNNING, for ``timeout_s``. Also keeps the most Tune trials seen
    RUNNING at once (packs in flight together: a check that they overlap)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.since: float | None = None
        self.message: str | None = None
        self.peak_running = 0

    def setup(self, **info: Any) -> None:
        self.since = None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        pending = running = 0
        needs = None
        for t in trials:  # bounded: a Tune run holds at most one segment's packs
            if t.status == "PENDING":
                pending += 1
                needs = needs or t.placement_group_factory.required_resources
            elif t.status == "RUNNING":
                running += 1
        self.peak_running = max(self.peak_running, running)
        if not pending or running:
            self.since = None
            return
        self.since = self.since or time.time()
        if time.time() - self.since > self.timeout_s and self.message is None:
            import ray

            self.message = (
                f"{pending} trial(s) waited {self.timeout_s:.0f}s for resources with none "
                f"running: each needs {needs}, the cluster has {ray.available_resources()} free "
                f"of {ray.cluster_resources()}. Add nodes, or lower the model actors' resources."
            )

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.message is not None
