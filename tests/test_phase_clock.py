"""A run's time is accounted for phase by phase: the phases are contiguous from the process's
start and sum to the wall time; the seconds spent writing through a TimedStorage are counted
once per write (a write_json is not counted again for the write_bytes inside it)."""

from __future__ import annotations

import json
import time

import pytest

from tuner.core import timed_storage
from tuner.core.phase_clock import PhaseClock, process_started_at
from tuner.core.storage import Storage
from tuner.core.timed_storage import TimedStorage


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_when_phases_are_marked_then_they_are_contiguous_and_sum_to_the_wall_time():
    now = FakeTime(100.0)
    clock = PhaseClock(started=90.0, now=now)
    now.now = 125.0
    assert clock.mark("start") == 35.0  # from the process's start, not from the clock's creation
    now.now = 185.0
    clock.mark("tuning")
    now.now = 200.0
    clock.mark("collation", within={"writing": 4.0})
    now.now = 203.0
    clock.mark("shutdown")
    assert clock.phases == {"start": 35.0, "tuning": 60.0, "collation": 11.0, "writing": 4.0, "shutdown": 3.0}
    assert list(clock.phases) == ["start", "tuning", "collation", "writing", "shutdown"]
    assert clock.wall_s == 113.0 == sum(clock.phases.values())


def test_when_a_carved_phase_claims_more_than_the_stretch_then_it_gets_the_stretch_only():
    now = FakeTime(0.0)
    clock = PhaseClock(now=now)
    now.now = 2.0
    clock.mark("collation", within={"writing": 5.0})
    assert clock.phases == {"collation": 0.0, "writing": 2.0}
    assert clock.wall_s == 2.0


IMPORTED_AT = time.time()


@pytest.mark.parametrize("psutil_importable", [True, False])
def test_when_the_process_start_is_asked_then_it_is_before_this_test_module_was_imported(monkeypatch,
                                                                                           psutil_importable):
    import builtins

    if not psutil_importable:
        real_import = builtins.__import__

        def no_psutil(name, *args, **kwargs):
            if name == "psutil":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_psutil)
    started = process_started_at()
    assert IMPORTED_AT - 3600 < started < IMPORTED_AT  # not "now": the interpreter started earlier


def test_when_written_through_a_timed_storage_then_each_write_is_counted_once(tmp_path, monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(timed_storage.time, "perf_counter", lambda: float(next(ticks)))
    storage = TimedStorage(Storage(str(tmp_path), "exp"))
    storage.write_json("a.json", {"x": 1})  # ticks 0 → 2 (its inner write_bytes reads tick 1, not added)
    storage.write_bytes("b.bin", b"y")  # ticks 3 → 4
    assert storage.write_s == 3.0  # counted twice, the inner write would make it 4
    assert json.loads((tmp_path / "exp" / "a.json").read_text()) == {"x": 1}
    assert storage.root == Storage(str(tmp_path), "exp").root


@pytest.mark.parametrize("phases", [{"start": 19.4, "tuning": 58.0, "shutdown": 2.6}])
def test_when_phases_are_printed_then_each_has_its_seconds(phases):
    from tuner.engine.experiment import phases_line

    assert phases_line(phases) == "time: start 19s, tuning 58s, shutdown 3s"
