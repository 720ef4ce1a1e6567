"""The experiment lock: one live run per experiment folder.

Two drivers under one name would both append to the journal and both collate: two histories,
last writer wins. So a run holds ``<experiment>/.lock`` (host, pid, since, heartbeat every
:data:`HEARTBEAT_S`) while it lives, and a lock is taken over only from a holder that is
provably gone:

* on this host, when its pid no longer runs, or runs a process started after the lock was taken
  while the lock's heartbeat is older than :data:`STALE_AFTER_S` (the pid was reused): taken
  over without asking, and said so;
* on another host (a pid there cannot be checked), when its heartbeat is older than
  :data:`STALE_AFTER_S` and the user passes ``--take-over``;
* a damaged lock (empty, not JSON, no host or pid) names no holder to check: it is named, and
  ``--take-over`` takes it over (it is never taken silently: an empty lock may be one another
  run is writing at this moment).

A live holder is refused even with ``--take-over``, with the reason; a refusal suggests
``--take-over`` only when it would work.

On a local or shared filesystem the lock is created atomically (``O_EXCL``); on an object store
(s3://, gs://) there is no atomic create, so two drivers starting within the same second could
both pass: the lock then guards against the common case, a second run started later.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tuner.core.errors import TunerError
from tuner.core.storage import Storage

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
"""Seconds between the holder's rewrites of the lock (its heartbeat)."""
STALE_AFTER_S = 300.0
"""A holder on another host whose heartbeat is older than this (ten missed heartbeats) counts as
gone, so ``--take-over`` may take its lock; a younger one is alive and refused."""
PID_REUSE_SLACK_S = 2.0
"""A process on this host that started this long after the lock's ``since`` is not its holder."""


class ExperimentLocked(TunerError):
    """Another live run holds the experiment, or its lock is damaged (without ``--take-over``)."""


@dataclass(frozen=True)
class Holder:
    """What the lock file says and what can be proven about it.

    Attributes:
        content: the lock's JSON object (host, pid, since, heartbeat, token); empty when damaged.
        damaged: why the file names no holder (``"empty"``, ``"not JSON: ..."``), else None.
        gone: whether the holder is provably gone (see the module docstring).
        why: the evidence, as a clause: ``"pid 12 no longer runs on this host"``.
        needs_take_over: whether taking the lock needs ``--take-over`` (another host, damaged).
    """

    content: dict[str, Any]
    damaged: str | None
    gone: bool
    why: str
    needs_take_over: bool

    def describe(self) -> str:
        c = self.content
        return f"pid {c.get('pid')} on host {c.get('host')} since {c.get('since')}"


class ExperimentLock:
    """Hold ``<experiment>/.lock`` for the life of a run (a context manager).

    Args:
        storage: the experiment's storage.
        take_over: take the lock from a holder on another host whose heartbeat is older than
            :data:`STALE_AFTER_S`, or over a damaged lock file. Never from a live holder.

    After ``__enter__``, ``took_over`` says (one line) whose lock was taken and why it was safe,
    or is None; ``took_over_from`` is the old lock's content (``{}`` for a damaged one) or None.
    """

    def __init__(self, storage: Storage, take_over: bool = False) -> None:
        self.storage, self.take_over = storage, take_over
        self.token = uuid.uuid4().hex
        self.since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.took_over_from: dict[str, Any] | None = None
        self.took_over: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _content(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self.since,
                           "heartbeat": time.time(), "token": self.token}).encode()

    def holder(self) -> dict[str, Any] | None:
        """The lock's content when it is a readable JSON object, else None (absent or damaged)."""
        try:
            held = json.loads(self.storage.read_bytes(LOCK_FILE))
        except (OSError, ValueError):
            return None
        return held if isinstance(held, dict) else None

    def inspect(self) -> Holder | None:
        """The current lock's holder and whether it is provably gone; None when there is no lock."""
        try:
            data = self.storage.read_bytes(LOCK_FILE)
        except OSError:
            if not self.storage.exists(LOCK_FILE):  # object stores raise their own kinds for "absent"
                return None
            raise
        return judge(data)

    def __enter__(self) -> ExperimentLock:
        held = self.inspect()
        if held is not None and held.content.get("token") != self.token:
            lock = self.storage.path(LOCK_FILE)
            if not held.gone:
                later = ""
                if held.needs_take_over:  # another host: gone once its heartbeat is stale
                    left = STALE_AFTER_S - (time.time() - held.content["heartbeat"])
                    later = (f" (if it has stopped, `{self.storage.command('resume', '--take-over')}` "
                             f"works once its heartbeat is over {STALE_AFTER_S:.0f} s old, in {left:.0f} s)")
                raise ExperimentLocked(
                    f"experiment {self.storage.name!r} is being run by {held.describe()} (lock {lock}, "
                    f"last heartbeat {_ago(held.content.get('heartbeat'))}): {held.why}. It is not taken "
                    f"over, even with --take-over: wait for it to finish, or stop it first{later}.")
            if held.needs_take_over and not self.take_over:
                what = (f"the lock {lock} is damaged ({held.damaged}), so it names no run to check"
                        if held.damaged else
                        f"experiment {self.storage.name!r} is locked by {held.describe()} (lock {lock}): {held.why}")
                raise ExperimentLocked(
                    f"{what}. If no run of this experiment is running anywhere, take it over with "
                    f"`{self.storage.command('resume', '--take-over')}`.")
            self.took_over_from = held.content
            self.took_over = (f"took over the damaged lock {lock} ({held.damaged})" if held.damaged else
                              f"took the experiment over from {held.describe()}: {held.why}")
            self.storage.delete(LOCK_FILE)
        self._create()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="experiment-lock")
        self._beat.start()
        return self

    def _create(self) -> None:
        if self.storage.fs is None:
            path = self.storage._local(LOCK_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held = self.holder()
                who = (f"pid {held.get('pid')} on host {held.get('host')}" if held
                       else "another run (its lock is not written yet)")
                raise ExperimentLocked(
                    f"experiment {self.storage.name!r} was just started by {who} "
                    f"(lock {self.storage.path(LOCK_FILE)})") from None
            with os.fdopen(fd, "wb") as f:
                f.write(self._content())
        else:
            self.storage.write_bytes(LOCK_FILE, self._content())
            if (self.holder() or {}).get("token") != self.token:
                raise ExperimentLocked(f"experiment {self.storage.name!r}: another run took the lock "
                                       f"{self.storage.path(LOCK_FILE)} at the same time")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if (self.holder() or {}).get("token") == self.token:
                    self.storage.write_bytes(LOCK_FILE, self._content())
            except OSError:
                pass  # a storage fault shows up in the journal's writes, with a clear error

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            if (self.holder() or {}).get("token") == self.token:
                self.storage.delete(LOCK_FILE)
        except OSError:
            pass


def judge(data: bytes, now: float | None = None) -> Holder:
    """Read a lock file's bytes and decide whether its holder is provably gone."""
    try:
        content = json.loads(data)
    except ValueError as e:
        why = "empty" if not data.strip() else f"not JSON: {e}"
        return Holder({}, why, True, why, needs_take_over=True)
    if not isinstance(content, dict):
        why = f"a JSON {type(content).__name__}, not an object"
        return Holder({}, why, True, why, needs_take_over=True)
    host, pid = content.get("host"), content.get("pid")
    if not isinstance(host, str) or not host or not isinstance(pid, int) or isinstance(pid, bool):
        why = f"no valid host and pid (host {json.dumps(host)}, pid {json.dumps(pid)})"
        return Holder({}, why, True, why, needs_take_over=True)
    if host == socket.gethostname():
        gone, why = _gone_here(pid, content.get("since"), content.get("heartbeat"), now)
        return Holder(content, None, gone, why, needs_take_over=False)
    beat = content.get("heartbeat")
    if not isinstance(beat, (int, float)) or isinstance(beat, bool) or beat <= 0:
        return Holder(content, None, True, "it runs on another host and its lock has no heartbeat",
                      needs_take_over=True)
    age = (time.time() if now is None else now) - beat
    if age > STALE_AFTER_S:
        return Holder(content, None, True, f"it runs on another host and its last heartbeat was {age:.0f} s "
                      f"ago, over the {STALE_AFTER_S:.0f} s after which a run counts as gone",
                      needs_take_over=True)
    return Holder(content, None, False, f"it runs on another host and its last heartbeat was {max(age, 0):.0f} s "
                  f"ago, within the {STALE_AFTER_S:.0f} s after which a run counts as gone",
                  needs_take_over=True)


def _gone_here(pid: int, since: Any, heartbeat: Any, now: float | None = None) -> tuple[bool, str]:
    """Whether pid ``pid`` of this host is gone, and why. A pid that runs is the holder's unless
    two facts say otherwise: the process started after the lock was taken, and the lock's
    heartbeat is older than :data:`STALE_AFTER_S` (a live holder beats every 30 s)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True, f"pid {pid} no longer runs on this host"
    except PermissionError:
        pass  # it exists (another user's process): alive unless its start time says otherwise
    started = _process_start(pid)
    taken = _epoch(since)
    silent = (isinstance(heartbeat, (int, float)) and not isinstance(heartbeat, bool) and heartbeat > 0
              and (time.time() if now is None else now) - heartbeat > STALE_AFTER_S)
    if silent and started is not None and taken is not None and started > taken + PID_REUSE_SLACK_S:
        return True, (f"pid {pid} now belongs to a process started after the lock was taken "
                      "(the holder is gone and its pid reused)")
    return False, f"pid {pid} is still running on this host"


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from ``/proc`` (Linux); else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + float(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _epoch(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if isinstance(iso, str) else None
    except ValueError:
        return None


def _ago(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)) or timestamp <= 0:
        return "unknown"
    return f"{time.time() - timestamp:.0f} s ago"
