"""`tuner extend` (more trials for an existing experiment) and what Ctrl-C says, through
click's CliRunner; the engine itself is stubbed (tests/engine/test_extend.py runs it)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import tuner.engine.experiment as experiment
from tuner.cli import main
from tuner.core.storage import CONFIG_FILE, Storage


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """`tuner run --name exp --trials 5` as far as its stored config: the engine's session is a
    stub that writes the config, as the real one does first."""
    def session(config, storage, echo, include_dashboard, fallback_allowed, take_over=False, started_at=None):
        storage.write_json(CONFIG_FILE, config.to_dict())
        return {}

    monkeypatch.setattr(experiment, "_run", session)
    args = ["run", "--name", "exp", "--storage", str(tmp_path), "--symbols", "AAPL", "--families", "toto"]
    first = CliRunner().invoke(main, [*args, "--trials", "5"])
    assert first.exit_code == 0, first.output
    return tmp_path, args


def test_when_run_gets_a_larger_trials_for_an_existing_name_then_it_points_to_extend(stored):
    storage, args = stored
    result = CliRunner().invoke(main, [*args, "--trials", "8"])
    assert result.exit_code == 1
    assert "with 5 trials per study; to raise it to 8 and continue from its journal, run " \
           f"`tuner extend exp --trials 8 --storage {storage}`" in result.output


def test_when_extend_gets_fewer_trials_then_it_is_refused_and_nothing_changes(stored):
    storage, _ = stored
    result = CliRunner().invoke(main, ["extend", "exp", "--trials", "3", "--storage", str(storage)])
    assert result.exit_code == 1
    assert "has 5 trials per study; --trials 3 would lower it" in result.output
    assert Storage(str(storage), "exp").read_json(CONFIG_FILE)["trials"] == 5


def test_when_extend_gets_more_trials_then_the_stored_run_continues_with_only_the_budget_changed(stored):
    storage, _ = stored
    before = Storage(str(storage), "exp").read_json(CONFIG_FILE)
    result = CliRunner().invoke(main, ["extend", "exp", "--trials", "8", "--storage", str(storage)])
    assert result.exit_code == 0, result.output
    assert "raising the budget from 5 to 8 trials per study" in result.output
    after = Storage(str(storage), "exp").read_json(CONFIG_FILE)
    assert after == {**before, "trials": 8}


@pytest.mark.parametrize("command", ["run", "resume", "extend"])
def test_when_a_run_is_interrupted_then_it_says_what_was_saved_and_how_to_resume_and_exits_130(
        tmp_path, monkeypatch, command):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    for name in ("run_experiment", "resume_experiment", "extend_experiment"):
        monkeypatch.setattr(experiment, name, interrupted)
    monkeypatch.setattr(experiment, "saved_trials", lambda name, storage: 42)
    storage = str(tmp_path / "store")
    args = {"run": ["run", "--name", "exp", "--storage", storage],
            "resume": ["resume", "exp", "--storage", storage],
            "extend": ["extend", "exp", "--trials", "9", "--storage", storage]}[command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    assert "Aborted!" not in result.output
    assert "interrupted: experiment exp: 42 finished trials saved in its journal" in result.output
    assert f"Continue it with `tuner resume exp --storage {storage}`" in result.output


def test_when_the_default_storage_is_used_then_the_resume_hint_has_no_storage_option(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "resume_experiment", interrupted)
    monkeypatch.setattr(experiment, "saved_trials", lambda name, storage: 1)
    result = CliRunner().invoke(main, ["resume", "exp"])
    assert result.exit_code == 130
    assert "1 finished trial saved in its journal" in result.output
    assert result.output.rstrip().endswith("Continue it with `tuner resume exp`")


def test_when_the_journal_is_counted_then_saved_trials_reads_it(tmp_path):
    assert experiment.saved_trials("none", str(tmp_path)) == 0
