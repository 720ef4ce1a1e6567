"""What `tuner run`/`tuner resume` refuse or skip before Ray starts: a damaged journal, a live
holder of the experiment, an experiment that is already complete, a journal that is short of
the summary or holds another experiment's records; and damaged outputs named by every reader."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli import main
from tuner.core.storage import CONFIG_FILE, PROGRESS_FILE, SUMMARY_FILE, TRIALS_FILE
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.journal import JOURNAL_DIR, JournalRecord
from tuner.engine.lock import LOCK_FILE

SUMMARY = {"experiment": "done", "complete": True, "trials": {"completed": 2, "failed": 0, "never_ran": 0},
           "symbols": {}, "wall_s": 319.0}
LOOKBACK = '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 16, "high": 255}}'
EXPERIMENT_ID = "e" * 32


def records(n: int, study: str = "AAPL/bootstrap_returns", experiment: str | None = None) -> str:
    return "".join(JournalRecord(study=study, number=i, trial_id=f"t{i}.0", status="completed",
                                 params={"lookback": 20 + i}, distributions={"lookback": LOOKBACK},
                                 value=0.01 + i / 100, experiment=experiment).to_json() + "\n"
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


@pytest.fixture
def with_id(experiment) -> Path:
    """The same experiment made by this version: its config and records carry its id."""
    config = json.loads((experiment / CONFIG_FILE).read_text())
    (experiment / CONFIG_FILE).write_text(json.dumps({**config, "experiment_id": EXPERIMENT_ID,
                                                      "experiment_id_since_session": 1}))
    (experiment / JOURNAL_DIR / "0001-compact.jsonl").write_text(records(2, experiment=EXPERIMENT_ID))
    return experiment


def files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


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


def test_when_a_complete_experiment_lost_its_journal_then_resume_refuses_and_rewrites_nothing(experiment):
    import ray

    (experiment / JOURNAL_DIR / "0001-compact.jsonl").unlink()
    before = files(experiment)
    result = resume(experiment)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(
        f"Error: {experiment / SUMMARY_FILE} records 2 completed trials (complete), but the journal "
        f"({experiment / JOURNAL_DIR}) holds 0: it was deleted or cut short. Nothing was run or overwritten")
    assert "Restore the journal's files from a backup" in result.output
    assert f"move {SUMMARY_FILE} out of {experiment} and resume" in result.output
    assert files(experiment) == before and not ray.is_initialized()


def test_when_the_journal_is_short_of_the_summary_then_resume_refuses(experiment):
    (experiment / JOURNAL_DIR / "0001-compact.jsonl").write_text(records(1))
    result = resume(experiment)
    assert result.exit_code == 1 and "holds 1: it was deleted or cut short" in result.output


def test_when_a_chunk_of_another_experiment_is_copied_in_then_resume_refuses_naming_it(with_id):
    foreign = with_id / JOURNAL_DIR / "0001-000009.jsonl"
    foreign.write_text(records(3, experiment="f" * 32))
    before = files(with_id)
    result = resume(with_id)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {foreign}: line 1 (trial t0.0 of AAPL/bootstrap_returns) is not "
                                    "this experiment's: it belongs to another experiment")
    assert files(with_id) == before


def test_when_a_record_names_a_symbol_outside_the_experiment_then_resume_refuses_before_running(with_id):
    import ray

    chunk = with_id / JOURNAL_DIR / "0002-000001.jsonl"
    chunk.write_text(records(1, study="ZZZ/bootstrap_returns", experiment=EXPERIMENT_ID))
    result = resume(with_id)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {chunk}: line 1 (trial t0.0 of ZZZ/bootstrap_returns)")
    assert "symbol 'ZZZ' is not one of this experiment's symbols" in result.output
    assert not ray.is_initialized()


def test_when_a_record_has_a_bad_value_then_resume_names_file_line_field_and_value(with_id):
    chunk = with_id / JOURNAL_DIR / "0001-compact.jsonl"
    good, second = records(2, experiment=EXPERIMENT_ID).splitlines()
    chunk.write_text(good + "\n" + second.replace('"value": 0.02', '"value": "abc"') + "\n")
    result = resume(with_id)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {chunk}: line 2: field 'value' is \"abc\": must be a finite number")


DAMAGED = {SUMMARY_FILE: "{\"complete\": tr", PROGRESS_FILE: "{", TRIALS_FILE: "PAR1 not parquet"}


@pytest.mark.parametrize(("command", "damaged"), [
    ("status", SUMMARY_FILE), ("status", PROGRESS_FILE),
    ("report", SUMMARY_FILE), ("report", TRIALS_FILE),
    ("export-optuna", TRIALS_FILE), ("export-optuna", SUMMARY_FILE),
])
def test_when_an_output_is_damaged_then_readers_name_it_and_the_way_back(experiment, tmp_path, command, damaged):
    (experiment / damaged).write_text(DAMAGED[damaged])
    args = [command, "done", "--storage", str(experiment.parent)]
    if command == "export-optuna":
        args += ["--storage-url", f"sqlite:///{tmp_path / 'x.db'}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert f"Error: {experiment / damaged}: not " in result.output
    assert f"`tuner resume done --storage {experiment.parent}` rebuilds it from the experiment's journal" \
        in result.output
