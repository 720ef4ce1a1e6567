"""Live progress of an experiment, a stored copy for ``tuner status``, and a stuck-trial watchdog.

On a terminal the view redraws a small table (per study: trials done/total, best so far; overall
ETA); elsewhere (logs, CI, ``ray job logs``) it prints one plain line per finished trial.
Both callbacks hold only plain data, because Tune pickles them into its experiment state and
brings them back on resume.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from tuner.storage import PROGRESS_FILE, Storage


class ProgressView(Callback):
    """Per-study progress on the terminal and in ``<experiment>/progress.json``.

    Counts are derived from Tune's trial list at every step, so a resumed experiment shows the
    trials finished before the interruption too.
    """

    def __init__(self, storage_root: str, name: str, studies: list[str], budget: int,
                 interval_s: float = 1.0) -> None:
        self.storage_root, self.name = storage_root, name
        self.studies, self.budget, self.interval_s = studies, budget, interval_s
        self.setup()

    def setup(self, **info: Any) -> None:
        self.start = time.time()
        self.last_draw = 0.0
        self.lines_drawn = 0
        self.finished_at_start: int | None = None
        self.state = self._count([])

    def _count(self, trials: list, finishing=None) -> dict[str, dict[str, Any]]:
        """Per-study counts; ``finishing`` is a trial Tune reports complete before marking it so."""
        state = {k: {"done": 0, "failed": 0, "running": 0, "best": math.inf} for k in self.studies}
        for t in trials:
            s = state.get(t.config.get("study"))
            if s is None:
                continue
            value = (t.last_result or {}).get("pct_return_mae")
            if (t.status == "TERMINATED" or t is finishing) and value is not None:
                s["done"] += 1
                s["best"] = min(s["best"], value)
            elif t.status == "ERROR":
                s["failed"] += 1
            elif t.status == "RUNNING":
                s["running"] += 1
        return state

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.state = self._count(trials)
        if self.finished_at_start is None:
            self.finished_at_start = self.total_done()
        self._draw()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.state = self._count(trials, finishing=trial)
        key = trial.config.get("study")
        value = (trial.last_result or {}).get("pct_return_mae")
        if key in self.state and value is not None and not sys.stdout.isatty():
            s = self.state[key]
            print(f"[{self.name}] {key}: trial {s['done']}/{self.budget} pct_return_mae={value:.5f} "
                  f"best={s['best']:.5f} ({self.total_done()}/{self.total()} done, ETA {self.eta()})",
                  flush=True)
        self._draw(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.state = self._count(trials)
        key = trial.config.get("study")
        print(f"[{self.name}] {key}: trial {trial.trial_id} FAILED: "
              f"{str(getattr(trial, 'error_msg', '') or '')[:200]}", flush=True)
        self._draw(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.state = self._count(trials)
        self._draw(force=True)

    # -------------------------------------------------------------------------------------
    def total(self) -> int:
        return self.budget * len(self.studies)

    def total_done(self) -> int:
        return sum(s["done"] + s["failed"] for s in self.state.values())

    def eta(self) -> str:
        done_here = self.total_done() - (self.finished_at_start or 0)
        if done_here <= 0:
            return "?"
        remaining = (time.time() - self.start) / done_here * (self.total() - self.total_done())
        return f"{remaining / 60:.1f} min" if remaining >= 60 else f"{remaining:.0f} s"

    def snapshot(self) -> dict[str, Any]:
        return {
            "experiment": self.name,
            "updated": time.time(),
            "elapsed_s": time.time() - self.start,
            "trials_done": self.total_done(),
            "trials_total": self.total(),
            "eta": self.eta(),
            "studies": {k: {"done": s["done"], "failed": s["failed"], "running": s["running"],
                            "total": self.budget,
                            "best_pct_return_mae": None if math.isinf(s["best"]) else s["best"]}
                        for k, s in self.state.items()},
        }

    def _draw(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_draw < self.interval_s:
            return
        self.last_draw = now
        snap = self.snapshot()
        try:
            Storage(self.storage_root, self.name).write_json(PROGRESS_FILE, snap)
        except OSError:
            pass  # progress is best-effort; the run itself must not fail on it
        if sys.stdout.isatty():
            lines = [f"{self.name}: {snap['trials_done']}/{snap['trials_total']} trials, ETA {snap['eta']}"]
            for key, s in snap["studies"].items():
                best = "-" if s["best_pct_return_mae"] is None else f"{s['best_pct_return_mae']:.5f}"
                extra = (f"  running {s['running']}" if s["running"] else "") + (
                    f"  failed {s['failed']}" if s["failed"] else "")
                lines.append(f"  {key:<32} {s['done']:>4}/{s['total']:<4} best {best}{extra}")
            if self.lines_drawn:
                sys.stdout.write(f"\x1b[{self.lines_drawn}F\x1b[J")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            self.lines_drawn = len(lines)


def read_progress(storage: Storage) -> dict[str, Any] | None:
    if not storage.exists(PROGRESS_FILE):
        return None
    return json.loads(storage.read_bytes(PROGRESS_FILE))


class PendingWatchdog(Callback, Stopper):
    """Stops the experiment with a clear message when trials wait for resources that never come:
    some trial PENDING, none RUNNING, for ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.since: float | None = None
        self.message: str | None = None

    def setup(self, **info: Any) -> None:
        self.since, self.message = None, None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        pending = [t for t in trials if t.status == "PENDING"]
        running = [t for t in trials if t.status == "RUNNING"]
        if not pending or running:
            self.since = None
            return
        self.since = self.since or time.time()
        if time.time() - self.since > self.timeout_s and self.message is None:
            import ray

            needs = pending[0].placement_group_factory.required_resources
            self.message = (
                f"{len(pending)} trial(s) waited {self.timeout_s:.0f}s for resources with none "
                f"running: each needs {needs}, the cluster has {ray.available_resources()} free "
                f"of {ray.cluster_resources()}. Add nodes, or lower the model actors' resources."
            )

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.message is not None
