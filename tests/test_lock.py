"""The experiment lock: one live run per experiment; take-over only of a holder that is gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.core.storage import CONFIG_FILE, Storage
from tuner.engine.lock import LOCK_FILE, STALE_AFTER_S, ExperimentLock, ExperimentLocked


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path), "exp")


def plant(storage: Storage, host: str, pid: int, heartbeat: float = 0, since: str = "2026-12-01T10:00:00+00:00"
          ) -> None:
    storage.write_bytes(LOCK_FILE, json.dumps({"host": host, "pid": pid, "since": since,
                                               "heartbeat": heartbeat, "token": "other"}).encode())


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid():
    """A process of this host that runs for the whole test (started before the lock is planted)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield child.pid
    child.stdin.close()
    child.wait()


def now_iso() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def test_when_a_run_holds_the_lock_then_a_second_is_refused_naming_the_holder(storage):
    with ExperimentLock(storage):
        with pytest.raises(ExperimentLocked) as e:
            ExperimentLock(storage).__enter__()
    message = str(e.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()} since " in message
    assert f"pid {os.getpid()} is still running on this host" in message
    assert "--take-over`" not in message  # it would not work: not suggested


def test_when_the_run_ends_then_the_lock_is_released(storage):
    with ExperimentLock(storage):
        assert storage.exists(LOCK_FILE)
    assert not storage.exists(LOCK_FILE)
    with ExperimentLock(storage) as again:
        assert again.took_over_from is None and again.took_over is None


def test_when_the_holder_died_on_this_host_then_the_lock_is_taken_over_and_said_so(storage):
    pid = dead_pid()
    plant(storage, socket.gethostname(), pid)
    with ExperimentLock(storage) as lock:
        assert lock.took_over_from["pid"] == pid
        assert lock.took_over == (f"took the experiment over from pid {pid} on host {socket.gethostname()} "
                                  f"since 2026-12-01T10:00:00+00:00: pid {pid} no longer runs on this host")
        assert json.loads(storage.read_bytes(LOCK_FILE))["pid"] == os.getpid()


@pytest.mark.parametrize("take_over", [False, True], ids=["plain", "take-over"])
def test_when_the_holder_is_alive_on_this_host_then_even_take_over_is_refused_saying_why(
        storage, live_pid, take_over):
    plant(storage, socket.gethostname(), live_pid, heartbeat=time.time(), since=now_iso())
    with pytest.raises(ExperimentLocked) as e:
        ExperimentLock(storage, take_over=take_over).__enter__()
    message = str(e.value)
    assert f"pid {live_pid} is still running on this host. It is not taken over, even with --take-over: " \
           "wait for it to finish, or stop it first." in message
    assert "no longer" not in message and "--take-over`" not in message
    assert json.loads(storage.read_bytes(LOCK_FILE))["pid"] == live_pid  # untouched


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_when_the_holders_pid_was_reused_by_a_later_process_then_it_is_taken_over(storage, live_pid):
    plant(storage, socket.gethostname(), live_pid, since="2020-01-01T00:00:00+00:00", heartbeat=1.6e9)
    with ExperimentLock(storage) as lock:
        assert lock.took_over.endswith(f"pid {live_pid} now belongs to a process started after the lock was "
                                       "taken (the holder is gone and its pid reused)")


def test_when_a_later_process_has_the_pid_but_the_heartbeat_is_fresh_then_it_is_not_taken_over(
        storage, live_pid):
    plant(storage, socket.gethostname(), live_pid, since="2020-01-01T00:00:00+00:00", heartbeat=time.time())
    with pytest.raises(ExperimentLocked, match=f"pid {live_pid} is still running on this host"):
        ExperimentLock(storage, take_over=True).__enter__()


def test_when_the_holder_on_another_host_beats_recently_then_take_over_is_refused(storage):
    plant(storage, "another-host", 12345, heartbeat=time.time() - 10)
    for take_over in (False, True):
        with pytest.raises(ExperimentLocked) as e:
            ExperimentLock(storage, take_over=take_over).__enter__()
        message = str(e.value)
        assert "pid 12345 on host another-host since 2026-12-01" in message
        assert f"its last heartbeat was 10 s ago, within the {STALE_AFTER_S:.0f} s after which a run counts " \
               "as gone. It is not taken over, even with --take-over" in message
        assert f"works once its heartbeat is over {STALE_AFTER_S:.0f} s old, in 290 s)" in message


def test_when_the_holder_on_another_host_has_gone_quiet_then_only_take_over_takes_it(storage):
    plant(storage, "another-host", 12345, heartbeat=time.time() - STALE_AFTER_S - 100)
    with pytest.raises(ExperimentLocked) as e:
        ExperimentLock(storage).__enter__()
    assert f"last heartbeat was {STALE_AFTER_S + 100:.0f} s ago" in str(e.value)
    assert str(e.value).endswith(f"take it over with `tuner resume exp --storage {storage.base} --take-over`.")
    with ExperimentLock(storage, take_over=True) as lock:
        assert lock.took_over_from["host"] == "another-host"
        assert "no longer" not in lock.took_over
        assert f"last heartbeat was {STALE_AFTER_S + 100:.0f} s ago, over the" in lock.took_over


@pytest.mark.parametrize("content, why", [
    (b"", "empty"),
    (b"{not json", "not JSON: "),
    (b"[1, 2]", "a JSON list, not an object"),
    (b'{"host": null, "pid": null}', "no valid host and pid (host null, pid null)"),
], ids=["empty", "not-json", "list", "no-holder"])
def test_when_the_lock_is_damaged_then_it_is_named_and_take_over_takes_it(storage, content, why):
    storage.write_bytes(LOCK_FILE, content)
    with pytest.raises(ExperimentLocked) as e:
        ExperimentLock(storage).__enter__()
    message = str(e.value)
    assert message.startswith(f"the lock {storage.path(LOCK_FILE)} is damaged ({why}")
    assert "pid None" not in message and "`tuner resume exp --storage" in message
    with ExperimentLock(storage, take_over=True) as lock:
        assert lock.took_over.startswith(f"took over the damaged lock {storage.path(LOCK_FILE)} ({why}")
        assert json.loads(storage.read_bytes(LOCK_FILE))["pid"] == os.getpid()


def test_when_the_storage_is_the_default_then_the_suggestion_has_no_storage_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = Storage("results", "exp")
    storage.write_bytes(LOCK_FILE, b"")
    with pytest.raises(ExperimentLocked, match=r"take it over with `tuner resume exp --take-over`\.$"):
        ExperimentLock(storage).__enter__()


def test_when_resume_take_over_meets_a_live_holder_then_the_cli_refuses_and_runs_nothing(tmp_path, live_pid):
    from tuner.engine.experiment_config import ExperimentConfig

    storage = Storage(str(tmp_path), "exp")
    storage.write_json(CONFIG_FILE, ExperimentConfig(name="exp", storage=str(tmp_path)).to_dict())
    plant(storage, socket.gethostname(), live_pid, heartbeat=time.time(), since=now_iso())
    out = CliRunner().invoke(main_cli(), ["resume", "exp", "--storage", str(tmp_path), "--take-over"])
    assert out.exit_code == 1, out.output
    assert f"pid {live_pid} is still running on this host. It is not taken over, even with --take-over" in out.output
    assert "no longer running" not in out.output and "took the experiment over" not in out.output
    assert json.loads(storage.read_bytes(LOCK_FILE))["pid"] == live_pid


def main_cli():
    from tuner.cli import main

    return main
