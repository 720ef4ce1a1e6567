"""A collation worker imports its libraries in a low-priority thread; a step waits for them."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from tuner.engine.collation_workers import LOW_PRIORITY, CollationWorker


def test_when_a_step_arrives_before_the_imports_end_then_it_waits_for_them_and_they_ran_at_low_priority(monkeypatch):
    release, seen = threading.Event(), {}

    def slow_imports():
        if sys.platform.startswith("linux"):
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        release.wait(10)
        seen["imported"] = True

    monkeypatch.setattr("tuner.core.statistics.significance.import_backends", slow_imports)
    worker = CollationWorker()
    ran = []
    step = threading.Thread(target=lambda: ran.append(worker.run(lambda x: (seen.get("imported"), x), 3)))
    step.start()
    step.join(0.2)
    assert step.is_alive() and ran == []  # held until the imports end
    release.set()
    step.join(10)
    assert ran == [(True, 3)]
    if sys.platform.startswith("linux") and os.getpriority(os.PRIO_PROCESS, 0) < LOW_PRIORITY:
        assert seen["nice"] == LOW_PRIORITY  # only the import thread: this one keeps its priority
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < LOW_PRIORITY


def test_when_the_imports_fail_then_each_step_raises_their_error(monkeypatch):
    def broken():
        raise ImportError("no arch here")

    monkeypatch.setattr("tuner.core.statistics.significance.import_backends", broken)
    worker = CollationWorker()
    for _ in range(2):
        with pytest.raises(ImportError, match="no arch here"):
            worker.run(lambda: "never")
