"""Collation's processes: a few Ray actors that import the collation libraries once and then run
every collation step (:mod:`tuner.engine.collate_tasks`) one call at a time.

Plain Ray tasks run in whichever idle worker the raylet hands them, so warming workers ahead
did not warm the ones used. Measured at 1,000 studies × 10 trials on 2 cores (each process's
CPU time from /proc after tuning): of the two workers warmed, one ran no collation step at all,
and two cold workers imported SciPy and arch (~1.4 s of CPU each) while collating: four imports
where two were needed, two of them on the critical path. An actor is its own process: the one
warmed is the one that works.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

RETRIES = 3
"""A worker that dies (its node lost, out of memory) is restarted and its call run again, as
Ray retries a task: every step writes whole files and can run twice."""


LOW_PRIORITY = 19
"""The nice value of a worker's import thread: it takes only the CPU nothing else wants."""


class CollationWorker:
    """The actor's body: imports the libraries the collation steps use
    (:func:`tuner.core.statistics.significance.import_backends`) in a thread of the lowest CPU
    priority, so that a worker started while tuning runs imports in the time the trials leave
    idle; a step waits for the imports."""

    def __init__(self) -> None:
        self._imported = threading.Event()
        self._error: BaseException | None = None
        threading.Thread(target=self._import, name="collation-imports", daemon=True).start()

    def _import(self) -> None:
        from tuner.core.statistics.significance import import_backends

        try:
            with contextlib.suppress(AttributeError, OSError):  # Linux: a thread's own nice value
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)
            import_backends()
        except BaseException as e:  # raised by the step that waits for them
            self._error = e
        finally:
            self._imported.set()

    def _ready(self) -> None:
        self._imported.wait()
        if self._error is not None:
            raise self._error

    def pid(self) -> int:
        """The worker's process id, once its imports are done."""
        self._ready()
        return os.getpid()

    def run(self, step: Callable[..., Any], *args: Any) -> Any:
        """``step(*args)``: a module-level function (it travels by name); the references among
        ``args`` arrive resolved, as a task's do."""
        self._ready()
        return step(*args)


class CollationWorkers:
    """``count`` :class:`CollationWorker` actors spread over the nodes. They reserve no CPU:
    they start (and import) while the model actors still hold the CPUs, and work once those
    are released; ``count`` (the CPUs collation may use) bounds how many steps run at once.
    :meth:`close` ends them."""

    def __init__(self, count: int) -> None:
        import ray

        actor = ray.remote(CollationWorker).options(num_cpus=0, scheduling_strategy="SPREAD",
                                                    max_restarts=RETRIES, max_task_retries=RETRIES)
        self.workers = [actor.remote() for _ in range(max(1, count))]
        self._given: list[list[Any]] = [[] for _ in self.workers]  # per worker, its calls not seen done

    def submit(self, step: Callable[..., Any], *args: Any):
        """Run ``step(*args)`` on the worker with the fewest calls still running or queued;
        returns the call's reference (its error is raised by ``ray.get``, as its own type)."""
        import ray

        given = [ref for calls in self._given for ref in calls]
        if given:  # one wait for all: a wait per worker was hundreds per step on a large cluster
            _, running = ray.wait(given, num_returns=len(given), timeout=0)
            still = set(running)
            self._given = [[ref for ref in calls if ref in still] for calls in self._given]
        index = min(range(len(self.workers)), key=lambda i: len(self._given[i]))
        ref = self.workers[index].run.remote(step, *args)
        self._given[index].append(ref)
        return ref

    def pids(self) -> list[int]:
        """Each worker's process id, once its imports are done."""
        import ray

        return ray.get([w.pid.remote() for w in self.workers])

    def close(self) -> None:
        """End the workers (again: nothing)."""
        import ray

        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers, self._given = [], []
