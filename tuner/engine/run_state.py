"""Whether an experiment's run is live, and how a finished or stopped one ended, in words
(what ``tuner status`` prints).

A live run holds ``<experiment>/.lock`` and rewrites its heartbeat every
:data:`~tuner.engine.lock.HEARTBEAT_S` seconds (:mod:`tuner.engine.lock`). No lock, a holder
whose process is gone on this host, or a heartbeat older than :data:`STALE_AFTER_S` means no
run is going on, so the stored rate and ETA are history, not a forecast.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.core.storage import Storage
from tuner.engine.lock import HEARTBEAT_S, LOCK_FILE

STALE_AFTER_S = 3 * HEARTBEAT_S
"""A heartbeat older than this (seconds) means the holder stopped beating: not running."""


@dataclass(frozen=True)
class Liveness:
    """Whether a run holds the experiment now.

    Attributes:
        live: True while a run holds the lock and its heartbeat is fresh.
        words: one line for people, e.g. ``running (pid 4242 on node-1, heartbeat 12 s ago)``
            or ``not running (no run holds it)``.
    """

    live: bool
    words: str


def liveness(storage: Storage, now: float | None = None) -> Liveness:
    """Read ``<experiment>/.lock`` and say whether its run is live (see the module docstring)."""
    now = time.time() if now is None else now
    try:
        held = json.loads(storage.read_bytes(LOCK_FILE)) if storage.exists(LOCK_FILE) else None
    except (OSError, ValueError):
        held = None
    if not isinstance(held, dict):
        return Liveness(False, "not running (no run holds it)")
    who = f"pid {held.get('pid')} on {held.get('host')}"
    beat = held.get("heartbeat")
    age = now - beat if isinstance(beat, (int, float)) else None
    if _gone_here(held):
        return Liveness(False, f"not running ({who} is gone; its lock is left over)")
    if age is None or age > STALE_AFTER_S:
        since = "never" if age is None else f"{age:.0f} s ago"
        return Liveness(False, f"not running? ({who} last beat {since}; a live run beats every "
                               f"{HEARTBEAT_S:.0f} s)")
    return Liveness(True, f"running ({who}, heartbeat {max(age, 0):.0f} s ago)")


def _gone_here(held: Mapping[str, Any]) -> bool:
    """The holder ran on this host and its process no longer exists."""
    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def finished_words(summary: Mapping[str, Any]) -> str:
    """How a collated run ended, in words: ``finished, complete: 270 trials completed, 0 failed,
    0 never ran`` or ``stopped, INCOMPLETE: ...; stopped because ...``."""
    trials = summary.get("trials") or {}
    counts = (f"{trials.get('completed', 0)} trials completed, {trials.get('failed', 0)} failed, "
              f"{trials.get('never_ran', 0)} never ran")
    if summary.get("stopped"):
        return f"stopped, INCOMPLETE: {counts}; stopped because {summary['stopped']}"
    return f"finished, {'complete' if summary.get('complete') else 'INCOMPLETE'}: {counts}"
