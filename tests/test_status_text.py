"""`tuner status` fits an 80 x 24 terminal by default at universe scale (1,500 studies running,
1,000 symbols finished), says whether the run is live, and lists every study with --all or the
ones --family/--symbol select (cut to the screen, saying how many more)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tests.test_progress import FAMILIES, rec, universe
from tuner.cli import main
from tuner.core.storage import CONFIG_FILE, SUMMARY_FILE, Storage


def status(tmp_path, *args: str):
    result = CliRunner().invoke(main, ["status", "u", "--storage", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.fixture
def running(tmp_path) -> Storage:
    """500 symbols x 3 families, one trial each done, one failure, a live lock."""
    storage = Storage(str(tmp_path), "u")
    storage.write_json(CONFIG_FILE, {"name": "u"})
    view = universe(storage)
    for i in range(500):
        for j, family in enumerate(FAMILIES):
            view.record(rec(f"S{i:03d}/{family}", 0, 0.01 + (i * 3 + j) / 1e5))
    view.record(rec("S007/toto", 1, None))
    view.refresh(force=True)
    storage.write_bytes(".lock", json.dumps({"host": "h1", "pid": 4242, "since": "2026-12-05T10:00:00+00:00",
                                             "heartbeat": time.time()}).encode())
    return storage


def finish(storage: Storage, symbols: int = 1000) -> None:
    storage.delete(".lock")
    storage.write_json(SUMMARY_FILE, {
        "complete": True, "tiny_weights": False,
        "trials": {"completed": 30 * 3 * symbols, "failed": 2, "never_ran": 0},
        "symbols": {f"SYMBOL-{i:04d}.LONGNAME" if i == 3 else f"S{i:04d}":
                    {"best_family": FAMILIES[i % 3] if i % 7 else "blend", "beats_baseline": i % 2 == 0,
                     "validation_pct_return_mae": 0.01, "test_pct_return_mae": 0.011}
                    for i in range(symbols)}})


def fits(lines: list[str]) -> bool:
    return len(lines) <= 24 and all(len(line) <= 80 for line in lines)


def test_when_a_universe_runs_then_status_fits_a_screen_and_says_it_is_live(tmp_path, running):
    lines = status(tmp_path)
    assert fits(lines), "\n".join(lines)
    assert lines[1].startswith("running: pid 4242 on h1 since 2026-12-05T10:00:00+00:00 (heartbeat ")
    assert lines[2].startswith("trials 1,501/45,000 (3 %), 1 failed, ") and ", ETA " in lines[2]
    text = "\n".join(lines)
    assert "  toto                 500         0          500       1" in text
    assert "S000/toto" in text and "S499/kronos_ensemble" in text  # best and worst by skill
    assert "  S007/toto: DataError: bad" in text
    assert lines[-1] == "1500 studies: `tuner status u --all` lists each; --family, --symbol select some"


def test_when_a_universe_has_finished_then_status_fits_a_screen_in_words(tmp_path, running):
    finish(running)
    lines = status(tmp_path)
    assert fits(lines), "\n".join(lines)
    assert lines[1] == "not running: finished, every study complete"
    assert "finished (complete): 90,000 trials completed, 2 failed, 0 never ran" in lines
    assert "  1,000 symbols, 500 of them beat the naive baseline" in lines
    assert "  best family: kronos_ensemble 286, toto 286, kronos_standard 285, blend 143" in lines
    assert not any("{" in line for line in lines)  # no Python dict


def test_when_all_is_asked_then_every_study_and_symbol_is_listed_aligned(tmp_path, running):
    finish(running)
    lines = status(tmp_path, "--all")
    studies = [line for line in lines if line.startswith("  S") and "best" in line]
    assert len(studies) == 1500
    winners = [line for line in lines if " val " in line]
    assert len(winners) == 1000
    assert len({line.index(" val ") for line in winners}) == 1  # a long symbol keeps the columns aligned
    assert any(line.startswith("  SYMBOL-0003.LONGNAME ") for line in winners)


def test_when_a_filter_selects_more_than_fit_then_they_are_cut_with_a_count(tmp_path, running):
    lines = status(tmp_path, "--family", "toto")
    assert fits(lines), "\n".join(lines)
    assert lines[-1].startswith("  ... and ") and lines[-1].endswith(" more studies (--all lists them)")
    shown = [line for line in lines if line.startswith("  S") and "/toto" in line and "best" in line]
    assert int(lines[-1].split()[2].replace(",", "")) + len(shown) == 500


@pytest.mark.parametrize(("lock", "expected"), [
    ({"host": "h1", "pid": 4242, "since": "x", "heartbeat": 1.0},
     "not running: its lock (pid 4242 on h1) has no heartbeat since "),
    (None, "not running: stopped before it finished; `tuner resume u` continues it"),
])
def test_when_the_run_is_gone_then_status_says_not_running(tmp_path, running, lock, expected):
    running.delete(".lock")
    if lock:
        running.write_bytes(".lock", json.dumps(lock).encode())
    lines = status(tmp_path)
    assert lines[1].startswith(expected)
    assert lines[2] == "trials 1,501/45,000 (3 %), 1 failed"  # no stale rate or ETA


def test_when_the_holder_on_this_host_was_killed_then_a_fresh_heartbeat_does_not_make_it_live(tmp_path, running):
    import socket
    import subprocess
    import sys
    import time

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs (SIGKILLed drivers leave their last heartbeat behind)
    lock = {"host": socket.gethostname(), "pid": dead.pid, "since": "2026-12-05T10:00:00+00:00",
            "heartbeat": time.time()}
    running.write_bytes(".lock", json.dumps(lock).encode())
    lines = status(tmp_path)
    assert lines[1].startswith(f"not running: its lock (pid {dead.pid} on {socket.gethostname()})")
    assert "ETA" not in "\n".join(lines)
