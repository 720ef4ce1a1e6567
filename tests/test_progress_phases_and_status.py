"""The live view's warm-up, recent-throughput ETA and after-tuning phases, and `tuner status`
saying whether a run is live and how a finished one ended (in words)."""

from __future__ import annotations

import pytest

import tuner.engine.progress as progress_module
from tuner.core.storage import Storage
from tuner.engine.journal import JournalRecord
from tuner.engine.progress import WARMUP_TRIALS, ProgressView


def rec(study: str, n: int) -> JournalRecord:
    return JournalRecord(study=study, number=n, trial_id=f"{study}.{n}", status="completed", params={},
                         distributions={}, value=0.01, error=None, metrics={"baseline_pct_return_mae": 0.02})


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "time", fake)
    return fake


def test_when_few_trials_have_finished_then_the_view_says_warming_up_not_a_rate(tmp_path, clock):
    view = ProgressView(Storage(str(tmp_path), "e"), ["A/toto"], 100, live=False)
    assert "warming up" in view.headline() and "0.0/s" not in view.headline() and "ETA ?" not in view.headline()
    for n in range(WARMUP_TRIALS - 1):
        clock.now += 1
        view.record(rec("A/toto", n))
    assert "warming up (4/5 trials before a rate)" in view.headline()
    assert view.snapshot()["eta"] == "warming up"


def test_when_the_pace_picks_up_then_the_eta_follows_recent_throughput_not_the_slow_start(tmp_path, clock):
    view = ProgressView(Storage(str(tmp_path), "e"), ["A/toto"], 400, live=False)
    for n in range(5):  # start-up: 5 trials in 100 s
        clock.now += 20
        view.record(rec("A/toto", n))
    for n in range(5, 245):  # then 2 trials per second for 2 minutes
        clock.now += 0.5
        view.record(rec("A/toto", n))
    assert view.rate() == pytest.approx(2.0)  # the session's average: 245 / 220 s = 1.1/s
    assert view.eta() == "1.3 min"  # 155 left at 2/s: 78 s
    assert "2.0/s, ETA 1.3 min" in view.headline()


def test_when_tuning_is_done_then_rescoring_and_collation_show_as_phases_with_their_progress(tmp_path, clock):
    lines = []
    view = ProgressView(Storage(str(tmp_path), "e"), ["A/toto"], 1, live=False)
    view.record(rec("A/toto", 0))
    progress_module.print = lambda *a, **k: lines.append(" ".join(map(str, a)))
    try:
        tick = view.begin_phase("re-scoring winners and defaults on the test period")
        clock.now += 30
        tick(3, 10)
        assert "re-scoring winners and defaults on the test period: 3/10, 30 s" in view.headline()
        assert view.snapshot()["phase"] == "re-scoring winners and defaults on the test period: 3/10, 30 s"
        view.begin_phase("collating: significance tests, result files, summary")
        assert "collating: significance tests" in view.headline()
        view.close()
    finally:
        del progress_module.print
    assert view.current_phase is None and "warming up" in view.headline()
    assert any("re-scoring winners" in line for line in lines)  # logged when not on a terminal
