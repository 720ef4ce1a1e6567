"""Where a run's wall time went: phases measured back to back from the process's start.

A run's ``wall_s`` and ``phases_s`` (``summary.json``) come from one :class:`PhaseClock`: each
:meth:`PhaseClock.mark` closes the phase that ran since the previous mark, so the phases sum to
the wall time and nothing between them goes unaccounted (an earlier version timed only start,
tuning and re-scoring, and reported half of a resume's 374 s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def process_started_at() -> float:
    """UNIX time this process started (interpreter start-up and imports included), or now when
    the platform does not say."""
    try:
        import psutil  # Ray ships it (on the path once Ray is imported); not ours to require

        return float(psutil.Process().create_time())
    except Exception:  # no psutil here: Linux's /proc says the same
        pass
    try:
        # Field 22 of /proc/self/stat: clock ticks from boot to the start (the fields after
        # the command name's closing parenthesis begin at field 3); /proc/stat's btime: boot.
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return time.time()


class PhaseClock:
    """Seconds per phase of a run, contiguous from ``started``.

    Args:
        started: UNIX time the run counts from (the process's start for ``tuner run``).
        now: the clock (UNIX seconds); a parameter so tests can drive it.

    Attributes:
        phases: phase name → seconds, in the order the phases first ended; a phase marked
            twice accumulates.
    """

    def __init__(self, started: float | None = None, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.started = now() if started is None else started
        self.last = self.started
        self.phases: dict[str, float] = {}

    def mark(self, phase: str, within: Mapping[str, float] | None = None) -> float:
        """End ``phase`` now: it gets the seconds since the previous mark (or the start), less
        ``within``: seconds of other phases measured inside that stretch (e.g. the time spent
        writing files during collation), which go to those phases. Returns the stretch's seconds."""
        now = self.now()
        took = max(0.0, now - self.last)
        rest = took
        self.phases.setdefault(phase, 0.0)  # listed before the phases carved out of it
        for other, seconds in (within or {}).items():
            seconds = min(max(0.0, seconds), rest)
            self.phases[other] = self.phases.get(other, 0.0) + seconds
            rest -= seconds
        self.phases[phase] = self.phases.get(phase, 0.0) + rest
        self.last = now
        return took

    @property
    def wall_s(self) -> float:
        """Seconds from the start to the last mark (the sum of :attr:`phases`)."""
        return self.last - self.started

    def elapsed(self) -> float:
        """Seconds from the start to now."""
        return self.now() - self.started
