"""`tuner run`/`tuner resume` exit statuses: 3 with the cause per family on the last lines when
a study is left without a winner; the statuses documented in `--help`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tuner.cli import EXIT_NO_WINNER, main
from tuner.engine.journal import JournalRecord
from tuner.engine.without_winner import cause_lines

SUMMARY = {
    "complete": False,
    "studies": {"AAPL/toto": {}, "MSFT/toto": {}, "AAPL/bootstrap_returns": {}, "MSFT/bootstrap_returns": {}},
    "studies_without_winner": {"AAPL/bootstrap_returns": "no completed trial",
                               "MSFT/bootstrap_returns": "no completed trial"},
}


def failed(symbol: str, n: int, error: str) -> JournalRecord:
    return JournalRecord(study=f"{symbol}/bootstrap_returns", number=n, trial_id=f"{symbol}{n}", status="failed",
                         params={}, distributions={}, error=error)


def test_when_studies_have_no_winner_then_one_line_per_family_gives_the_cause():
    trials = [failed("AAPL", i, "RayActorError: the actor died\nTraceback ...") for i in range(3)]
    trials += [failed("MSFT", 0, "DataError: bad")]
    assert cause_lines(SUMMARY, trials) == [
        "NO WINNER bootstrap_returns: 2 of 2 studies (no completed trial); 4 trials failed, "
        "3 with: RayActorError: the actor died"]


def test_when_every_study_has_a_winner_then_there_is_no_cause_line():
    assert cause_lines({**SUMMARY, "studies_without_winner": {}}, []) == []


@pytest.mark.parametrize("command", [["run", "--trials", "2"], ["resume", "sample"]])
def test_when_a_run_leaves_a_study_without_a_winner_then_it_exits_3(monkeypatch, command):
    import tuner.engine.experiment

    def engine(*args, echo, **kwargs):
        echo("NO WINNER bootstrap_returns: 2 of 2 studies (no completed trial)")
        return SUMMARY

    monkeypatch.setattr(tuner.engine.experiment, "run_experiment", engine)
    monkeypatch.setattr(tuner.engine.experiment, "resume_experiment", engine)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == EXIT_NO_WINNER == 3, result.output
    assert result.output.splitlines()[-1].startswith("NO WINNER bootstrap_returns")


def test_when_every_study_has_a_winner_then_run_exits_0(monkeypatch):
    import tuner.engine.experiment

    monkeypatch.setattr(tuner.engine.experiment, "run_experiment",
                        lambda *a, **k: {**SUMMARY, "studies_without_winner": {}})
    assert CliRunner().invoke(main, ["run", "--trials", "2"]).exit_code == 0


@pytest.mark.parametrize("command", ["run", "resume"])
def test_when_help_is_asked_then_the_exit_statuses_are_listed(command):
    text = CliRunner().invoke(main, [command, "--help"]).output
    assert "Exit status:" in text
    for line in ("0  every study has a winner", "1  an error stopped the run", "2  a usage error",
                 "3  the run ended, but some studies have no winner"):
        assert line in text
