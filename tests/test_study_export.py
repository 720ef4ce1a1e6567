"""`tuner export-optuna` is all or nothing (an export interrupted midway leaves no study of it
behind, in a database or a journal file), and each trial keeps its own start and finish times."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.test_report import make_experiment
from tests.test_studies import records
from tuner.cli import main
from tuner.decisions import study_export
from tuner.engine.collate import trials_table
from tuner.engine.journal import JournalRecord

FINISHED = 1_765_000_000.0


@pytest.fixture
def stored(tmp_path):
    """A finished experiment `exp` (9 studies of 3 trials) as test_studies builds it."""
    root = make_experiment(tmp_path / "results")
    trials_table(records()).to_parquet(root / "trials.parquet", index=False)
    return tmp_path / "results"


def journal_storage(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def urls(tmp_path, kind: str) -> tuple[str, object]:
    """The --storage-url of a fresh storage and what optuna.load_study takes for it."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'tuning.db'}"
        return url, url
    return str(tmp_path / "tuning.log"), None


def reader(kind: str, url: str):
    return url if kind == "sqlite" else journal_storage(url)


def export(experiment_root, url, *extra):
    return CliRunner().invoke(main, ["export-optuna", "exp", "--storage", str(experiment_root),
                                     "--storage-url", url, *extra])


def names_in(kind: str, url: str) -> list[str]:
    return sorted(s.study_name for s in optuna.get_all_study_summaries(reader(kind, url)))


def other_study(kind: str, url: str) -> None:
    """A study of someone else's in the target storage, with one trial."""
    study = optuna.create_study(study_name="theirs", storage=reader(kind, url))
    study.add_trial(optuna.trial.create_trial(value=1.0, params={"x": 0.5},
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 1)}))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_when_an_export_fails_midway_then_no_study_of_it_is_left_and_others_are_kept(stored, tmp_path,
                                                                                      monkeypatch, kind):
    url, _ = urls(tmp_path, kind)
    other_study(kind, url)
    before = open(url.removeprefix("sqlite:///"), "rb").read()
    calls = {"n": 0}

    if kind == "sqlite":
        real = study_export._insert_trials

        def failing(*args):  # the 5th study's trials: four studies are already inserted
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt  # Ctrl-C
            return real(*args)

        monkeypatch.setattr(study_export, "_insert_trials", failing)
    else:
        real = os.fsync

        def failing(fd):  # the new file is fully written but not yet renamed over the old one
            calls["n"] += 1
            raise KeyboardInterrupt

        monkeypatch.setattr(study_export.os, "fsync", failing)
    result = export(stored, url)
    assert result.exit_code == 1 and calls["n"] >= 1
    assert "Aborted!" in result.output
    assert names_in(kind, url) == ["theirs"]
    assert len(optuna.load_study(study_name="theirs", storage=reader(kind, url)).trials) == 1
    if kind == "journal":
        assert open(url, "rb").read() == before  # byte for byte
        assert sorted(os.listdir(tmp_path)) == ["results", "tuning.log"]  # no temporary or lock file left
    monkeypatch.undo()
    done = export(stored, url)
    assert done.exit_code == 0, done.output
    assert names_in(kind, url) == sorted(["theirs", *(f"exp/{s}/{f}" for s in ("AAA", "BBB", "CCC")
                                                      for f in ("kronos_ensemble", "kronos_standard", "toto"))])


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_when_a_replacing_export_fails_midway_then_the_old_studies_stand(stored, tmp_path, monkeypatch, kind):
    url, _ = urls(tmp_path, kind)
    assert export(stored, url).exit_code == 0
    old = {n: len(optuna.load_study(study_name=n, storage=reader(kind, url)).trials) for n in names_in(kind, url)}

    def failing(*args, **kwargs):
        raise RuntimeError("disk gone")

    if kind == "sqlite":
        monkeypatch.setattr(study_export, "_insert_trials", failing)
    else:
        monkeypatch.setattr(study_export.os, "replace", failing)
    result = export(stored, url, "--replace")
    assert result.exit_code != 0
    assert {n: len(optuna.load_study(study_name=n, storage=reader(kind, url)).trials)
            for n in names_in(kind, url)} == old
    assert len(old) == 9 and set(old.values()) == {3}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_when_exported_then_each_trial_keeps_its_own_start_and_finish(stored, tmp_path, kind):
    table = trials_table(records())
    table["finished_at"] = [FINISHED + 60 * i for i in range(len(table))]
    table["trial_wall_s"] = [2.5] * len(table)
    table.to_parquet(stored / "exp" / "trials.parquet", index=False)
    url, _ = urls(tmp_path, kind)
    assert export(stored, url).exit_code == 0
    for name in names_in(kind, url):
        for trial in optuna.load_study(study_name=name, storage=reader(kind, url)).trials:
            row = table[table["trial_id"] == trial.user_attrs["trial_id"]].iloc[0]
            assert trial.datetime_complete == datetime.fromtimestamp(row["finished_at"])
            assert trial.datetime_start == datetime.fromtimestamp(row["finished_at"]) - timedelta(seconds=2.5)


def test_when_the_table_has_no_finish_times_then_the_export_takes_them_from_the_journal(stored, tmp_path):
    table = pd.read_parquet(stored / "exp" / "trials.parquet").drop(columns=["timestamp", "time_total_s"])
    table.to_parquet(stored / "exp" / "trials.parquet", index=False)
    journal = stored / "exp" / "journal"
    journal.mkdir()
    lines = [JournalRecord(study=f"{r['symbol']}/{r['family']}", number=0, trial_id=r["trial_id"],
                           status="completed", params={}, distributions={}, value=0.01,
                           metrics={"actor_s": 1.25}, finished_at=FINISHED + i).to_json()
             for i, r in enumerate(table.to_dict("records"))]
    (journal / "0001-compact.jsonl").write_text("\n".join(lines) + "\n")
    url = f"sqlite:///{tmp_path / 'tuning.db'}"
    assert export(stored, url).exit_code == 0
    study = optuna.load_study(study_name="exp/AAA/toto", storage=url)
    rows = {r["trial_id"]: (i, r) for i, r in enumerate(table.to_dict("records"))}
    for trial in study.trials:
        i, row = rows[trial.user_attrs["trial_id"]]
        end = datetime.fromtimestamp(FINISHED + i)
        took = 0.0 if pd.isna(row["actor_s"]) else row["actor_s"]  # a failed trial has no duration
        assert trial.datetime_complete == end
        assert trial.datetime_start == end - timedelta(seconds=took)


def test_when_the_journal_folder_does_not_exist_then_the_export_says_so_and_writes_nothing(stored, tmp_path):
    url = str(tmp_path / "missing" / "tuning.log")
    result = export(stored, url)
    assert result.exit_code == 1
    assert result.output == (f"Error: --storage-url {url}: folder {tmp_path / 'missing'} does not exist; "
                             "nothing was written\n")
    assert not (tmp_path / "missing").exists()
