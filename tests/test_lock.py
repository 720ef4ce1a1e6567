"""The experiment lock: one live run per experiment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tuner.core.storage import Storage
from tuner.engine.lock import LOCK_FILE, ExperimentLock, ExperimentLocked


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path), "exp")


def plant(storage: Storage, host: str, pid: int) -> None:
    storage.write_bytes(LOCK_FILE, json.dumps({"host": host, "pid": pid, "since": "2026-12-01T10:00:00+00:00",
                                               "heartbeat": 0, "token": "other"}).encode())


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_when_a_run_holds_the_lock_then_a_second_is_refused_naming_the_holder(storage):
    with ExperimentLock(storage):
        with pytest.raises(ExperimentLocked) as e:
            ExperimentLock(storage).__enter__()
    message = str(e.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()} since " in message
    assert "`tuner resume exp --take-over`" in message


def test_when_the_run_ends_then_the_lock_is_released(storage):
    with ExperimentLock(storage):
        assert storage.exists(LOCK_FILE)
    assert not storage.exists(LOCK_FILE)
    with ExperimentLock(storage) as again:
        assert again.took_over_from is None


def test_when_the_holder_died_on_this_host_then_the_lock_is_taken_over(storage):
    pid = dead_pid()
    plant(storage, socket.gethostname(), pid)
    with ExperimentLock(storage) as lock:
        assert lock.took_over_from["pid"] == pid
        assert json.loads(storage.read_bytes(LOCK_FILE))["pid"] == os.getpid()


def test_when_the_holder_is_on_another_host_then_only_take_over_runs(storage):
    plant(storage, "another-host", 12345)
    with pytest.raises(ExperimentLocked, match="pid 12345 on host another-host since 2026-12-01"):
        ExperimentLock(storage).__enter__()
    with ExperimentLock(storage, take_over=True) as lock:
        assert lock.took_over_from["host"] == "another-host"
