"""The experiment lock: one live run per experiment folder.

Two drivers under one name would both append to the journal and both collate: two histories,
last writer wins. So a run holds ``<experiment>/.lock`` (host, pid, since, heartbeat) while it
lives; a second run or resume is refused with the holder named. A lock whose holder is gone is
taken over: on the same host when its pid no longer runs; from another host only with
``--take-over`` (a pid on another machine cannot be checked), which the message says.

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
from datetime import datetime, timezone
from typing import Any

from tuner.core.errors import TunerError
from tuner.core.storage import Storage

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0


class ExperimentLocked(TunerError):
    """Another live run holds the experiment."""


class ExperimentLock:
    """Hold ``<experiment>/.lock`` for the life of a run (a context manager).

    Args:
        storage: the experiment's storage.
        take_over: take the lock even when its holder may be alive (another host).
    """

    def __init__(self, storage: Storage, take_over: bool = False) -> None:
        self.storage, self.take_over = storage, take_over
        self.token = uuid.uuid4().hex
        self.since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.took_over_from: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _content(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self.since,
                           "heartbeat": time.time(), "token": self.token}).encode()

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.storage.read_bytes(LOCK_FILE))
        except (OSError, ValueError):
            return None

    def __enter__(self) -> ExperimentLock:
        held = self.holder()
        if held is not None and held.get("token") != self.token:
            if not (self.take_over or _dead_here(held)):
                raise ExperimentLocked(
                    f"experiment {self.storage.name!r} is being run by pid {held.get('pid')} on host "
                    f"{held.get('host')} since {held.get('since')} (lock {self.storage.path(LOCK_FILE)}, "
                    f"last heartbeat {_ago(held.get('heartbeat'))}). Wait for it to finish, or stop it; "
                    f"if that run is dead, take over with `tuner resume {self.storage.name} --take-over`."
                )
            self.took_over_from = held
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
                held = self.holder() or {}
                raise ExperimentLocked(
                    f"experiment {self.storage.name!r} was just started by pid {held.get('pid')} on "
                    f"host {held.get('host')} (lock {self.storage.path(LOCK_FILE)})") from None
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


def _dead_here(held: dict[str, Any]) -> bool:
    """The holder ran on this host and its process is gone."""
    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _ago(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)) or timestamp <= 0:
        return "unknown"
    return f"{time.time() - timestamp:.0f} s ago"
