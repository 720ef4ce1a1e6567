"""The progress view at universe scale: incremental counts, a summary that fits a screen,
per-study detail in progress.json and `tuner status --family/--symbol`."""

from __future__ import annotations

import io
import json

from click.testing import CliRunner
from rich.console import Console

from tuner.cli import main
from tuner.core.storage import CONFIG_FILE, PROGRESS_FILE, Storage
from tuner.engine.journal import JournalRecord
from tuner.engine.progress import ProgressView

FAMILIES = ("toto", "kronos_standard", "kronos_ensemble")


def rec(study: str, n: int, value: float | None, baseline: float = 0.02) -> JournalRecord:
    return JournalRecord(study=study, number=n, trial_id=f"{study}.{n}", status="completed" if value else "failed",
                         params={}, distributions={}, value=value, error=None if value else "DataError: bad",
                         metrics={"baseline_pct_return_mae": baseline})


def universe(storage: Storage, symbols: int = 500, budget: int = 30) -> ProgressView:
    keys = [f"S{i:03d}/{f}" for i in range(symbols) for f in FAMILIES]
    return ProgressView(storage, keys, budget, live=False)


def test_when_trials_finish_then_counts_best_and_families_update_incrementally(tmp_path):
    view = universe(Storage(str(tmp_path), "u"), symbols=2, budget=2)
    view.record(rec("S000/toto", 0, 0.03))
    view.record(rec("S000/toto", 1, 0.01))
    view.record(rec("S001/toto", 0, None))
    snap = view.snapshot()
    assert snap["trials_done"] == 3 and snap["trials_total"] == 2 * 3 * 2
    assert snap["studies"]["S000/toto"] == {"done": 2, "failed": 0, "running": 0, "total": 2,
                                            "best_pct_return_mae": 0.01, "skill": 0.5}
    assert snap["families"]["toto"] == {"studies": 2, "done": 2, "failed": 1, "finished_studies": 1}
    assert snap["recent_failures"] == ["S001/toto: DataError: bad"]


def test_when_resumed_then_the_earlier_sessions_trials_are_counted_but_not_in_the_rate(tmp_path):
    storage = Storage(str(tmp_path), "u")
    view = ProgressView(storage, ["A/toto"], 4, history=[rec("A/toto", 0, 0.01), rec("A/toto", 1, 0.02)], live=False)
    assert view.snapshot()["trials_done"] == 2 and view.rate() == 0.0


def test_when_1500_studies_run_then_the_terminal_view_fits_a_screen(tmp_path):
    view = universe(Storage(str(tmp_path), "u"))
    for i in range(500):
        for j, family in enumerate(FAMILIES):
            view.record(rec(f"S{i:03d}/{family}", 0, 0.01 + (i * 3 + j) / 1e5))
    view.record(rec("S007/toto", 1, None))
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(view.renderable())
    lines = console.export_text().splitlines()
    assert len(lines) <= 30
    text = "\n".join(lines)
    assert "1501/45000 trials (1 failed)" in text
    assert "S000/toto" in text and "S499/kronos_ensemble" in text  # best and worst by skill
    assert "S007/toto: DataError: bad" in text


def test_when_refreshed_then_progress_json_has_per_study_detail_and_is_strict_json(tmp_path):
    storage = Storage(str(tmp_path), "u")
    view = universe(storage, symbols=3)
    view.record(rec("S001/toto", 0, 0.01))
    view.refresh(force=True)
    data = json.loads((tmp_path / "u" / PROGRESS_FILE).read_text())
    assert len(data["studies"]) == 9 and data["studies"]["S001/toto"]["done"] == 1
    assert data["studies"]["S002/toto"]["best_pct_return_mae"] is None


def test_when_status_is_filtered_then_only_those_studies_are_listed(tmp_path):
    storage = Storage(str(tmp_path), "u")
    storage.write_json(CONFIG_FILE, {"name": "u"})
    view = universe(storage, symbols=3)
    view.record(rec("S001/toto", 0, 0.0123))
    view.refresh(force=True)
    result = CliRunner().invoke(main, ["status", "u", "--storage", str(tmp_path), "--family", "toto",
                                       "--symbol", "S001,S002"])
    assert result.exit_code == 0, result.output
    study_lines = [line for line in result.output.splitlines() if line.startswith("  S")]
    assert study_lines == ["  S001/toto    1/30   best 0.01230",
                           "  S002/toto    0/30   best -"]
    assert "  toto                   3         0            1       0" in result.output


def test_when_writing_progress_is_slow_then_it_is_written_less_often(tmp_path, monkeypatch):
    from tuner.core.storage import Storage
    from tuner.engine import progress as progress_module
    from tuner.engine.progress import ProgressView

    view = ProgressView(Storage(str(tmp_path), "exp"), ["A/f"], 2, [], interval_s=0.0)
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: clock[0])
    writes = []

    def slow_write():  # each write "takes" 1 s of the fake clock
        writes.append(clock[0])
        clock[0] += 1.0

    monkeypatch.setattr(view, "_write", slow_write)
    for _ in range(1000):
        view.refresh()
        clock[0] += 0.1  # a Tune step
    # A write per step would be 1,000 s of writing in 100 s of steps; WRITE_SHARE allows one
    # second of writing in twenty.
    elapsed = clock[0] - 1000.0
    assert 3 <= len(writes) <= 1 + elapsed * progress_module.WRITE_SHARE
    before = len(writes)
    view.refresh(force=True)  # the final state is always written
    assert len(writes) == before + 1
