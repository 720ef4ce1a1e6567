"""Ctrl-C on a real `tuner run`: the driver says how many trials its journal kept and how to
resume, and exits 130 (not click's "Aborted!" and 1)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.conftest import engine_env
from tests.engine.test_faults import completed_in_progress, tuner_cli
from tuner.core.storage import Storage
from tuner.engine.journal import read_journal

pytestmark = pytest.mark.slow


def test_when_a_run_gets_ctrl_c_then_it_says_what_was_saved_and_how_to_resume_and_exits_130(tmp_path, slow_configs):
    storage = tmp_path / "results"
    root = storage / "intr"
    run = tuner_cli("run", "--name", "intr", "--storage", str(storage), "--families", "bootstrap_returns",
                    "--symbols", "AAPL,MSFT", "--trials", "8", "--horizon", "3", "--no-dashboard")
    driver = subprocess.Popen(in_the_foreground(run), env=engine_env(TUNER_CONFIGS=str(slow_configs)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        started = time.time()
        deadline = started + 300
        while completed_in_progress(root) < 2 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.2)
        assert driver.poll() is None, "the run ended before it could be interrupted"
        # Said if the run does not end as interrupted: when the SIGINT went, and why then.
        sent = (f"SIGINT sent {time.time() - started:.0f} s after the start, progress.json saying "
                f"{completed_in_progress(root)} trials done")
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
        try:
            output, _ = driver.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver did not exit within 300 s of SIGINT; where it waits:\n{stacks(driver.pid)}")
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # Ray's agents linger in the driver's group
        except ProcessLookupError:
            pass
    assert driver.returncode == 130, f"{sent}; exit {driver.returncode}:\n{output[-3000:]}"
    assert "Aborted!" not in output
    saved = len(read_journal(Storage(str(storage), "intr")))
    assert saved >= 2
    assert re.search(rf"interrupted: experiment intr: {saved} finished trials saved in its journal; .*"
                     rf"Continue it with `tuner resume intr --storage {re.escape(str(storage))}`", output), output[-3000:]


def in_the_foreground(command: list[str]) -> list[str]:
    """The command as a terminal's foreground job gets it: with SIGINT's default action. A
    shell starts a background job (``pytest ... &``, as a script may run the suite) with
    SIGINT ignored, its children inherit that, and Python then never raises
    KeyboardInterrupt: the driver rightly ran to the end and exited 0. Reset here in a small
    exec wrapper rather than ``preexec_fn``, which is unsafe once the test process has threads."""
    reset = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", reset, *command]


def stacks(pid: int) -> str:
    """The Python stacks of a process that hangs (py-spy comes with ``ray[default]``), so a
    failure on a loaded CI machine says where it waited."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    try:
        done = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(py-spy could not dump it: {e})"
    return done.stdout + done.stderr
