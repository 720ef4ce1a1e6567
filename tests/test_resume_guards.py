"""What `tuner run`/`tuner resume` refuse or skip before Ray starts: a damaged journal, a live
holder of the experiment, an experiment that is already complete."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli import main
from tuner.core.storage import CONFIG_FILE, SUMMARY_FILE
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.journal import JOURNAL_DIR, JournalRecord
from tuner.engine.lock import LOCK_FILE

SUMMARY = {"experiment": "done", "complete": True, "trials": {"completed": 2, "failed": 0, "never_ran": 0},
           "symbols": {}, "wall_s": 319.0}


def records(n: int) -> str:
    return "".join(JournalRecord(study="AAPL/bootstrap_returns", number=i, trial_id=f"t{i}.0", status="completed",
                                 params={"lookback": 20 + i}, distributions={}, value=0.01 + i / 100).to_json() + "\n"
                   for i in range(n))


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A stored experiment (2 trials of one study) that finished: config, journal, summary."""
    root = tmp_path / "done"
    (root / JOURNAL_DIR).mkdir(parents=True)
    config = ExperimentConfig(name="done", symbols=("AAPL",), families=("bootstrap_returns",), trials=2,
                              storage=str(tmp_path))
    (root / CONFIG_FILE).write_text(json.dumps(config.to_dict()))
    (root / JOURNAL_DIR / "0001-compact.jsonl").write_text(records(2))
    (root / SUMMARY_FILE).write_text(json.dumps(SUMMARY))
    return root


def resume(root: Path, *extra: str):
    return CliRunner().invoke(main, ["resume", root.name, "--storage", str(root.parent), "--no-dashboard", *extra])


def test_when_a_finished_experiment_is_resumed_then_it_says_so_and_changes_nothing(experiment):
    import ray

    before = (experiment / SUMMARY_FILE).read_bytes()
    result = resume(experiment)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        f"experiment done is complete (2 trials); nothing to run. `tuner report done` shows it; "
        f"results: {experiment}")
    assert (experiment / SUMMARY_FILE).read_bytes() == before
    assert not ray.is_initialized()


def test_when_a_journal_chunk_is_damaged_then_resume_stops_naming_it_and_overwrites_nothing(experiment):
    chunk = experiment / JOURNAL_DIR / "0001-compact.jsonl"
    chunk.write_text(records(2)[:-30])  # truncated, as a full disk or a bad copy leaves it
    (experiment / SUMMARY_FILE).write_text(json.dumps({**SUMMARY, "complete": False}))
    before = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file()}
    result = resume(experiment)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {chunk}: line 2 is not a trial record")
    assert "nothing was overwritten" in result.output and f"move it out of {experiment / JOURNAL_DIR}" in result.output
    assert {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file()} == before


def test_when_another_run_holds_the_experiment_then_resume_is_refused_naming_it(experiment):
    (experiment / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                    "since": "2026-12-02T09:00:00+00:00", "heartbeat": 0,
                                                    "token": "x"}))
    result = resume(experiment)
    assert result.exit_code == 1
    assert (f"Error: experiment 'done' is being run by pid {os.getpid()} on host {socket.gethostname()} "
            f"since 2026-12-02T09:00:00+00:00") in result.output
    # a live holder: --take-over would not work, so it is not suggested (issue 21)
    assert f"pid {os.getpid()} is still running on this host" in result.output
    assert "--take-over`" not in result.output
