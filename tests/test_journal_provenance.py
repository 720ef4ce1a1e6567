"""Journal records are checked field by field, and against the experiment they are read for
(its id, families, symbols, studies); numbers never repeat after a chunk is moved aside; the
timer writes a record within the flush interval whatever arrives next."""

from __future__ import annotations

import json
import time

import pytest

from tests.test_search import finish, spaces
from tuner.core.storage import Storage
from tuner.engine.journal import (
    FLUSH_INTERVAL_S,
    JOURNAL_DIR,
    JournalError,
    JournalRecord,
    TrialJournal,
    read_journal,
    records_by_study,
)
from tuner.engine.provenance import Provenance, experiment_identity
from tuner.engine.search import StudyMultiplexer

DIST = '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 0, "high": 100}}'
EXP = "a" * 32


def line(**changes) -> str:
    data = {"study": "AAPL/bootstrap_returns", "number": 0, "trial_id": "t0.0", "status": "completed",
            "params": {"x": 3}, "distributions": {"x": DIST}, "config": {"x": 3}, "value": 0.01,
            "metrics": {}, "error": None, "session": 1, "finished_at": 1.7e9, "experiment": EXP}
    data.update(changes)
    return json.dumps(data)


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path), "exp")


def write_chunk(storage: Storage, *lines: str, name: str = "0001-000001.jsonl") -> str:
    storage.write_bytes(f"{JOURNAL_DIR}/{name}", ("\n".join(lines) + "\n").encode())
    return storage.path(JOURNAL_DIR, name)


PROVENANCE = Provenance(EXP, 1, families=("bootstrap_returns",), symbols=("AAPL",))


@pytest.mark.parametrize(("changes", "field", "shown"), [
    ({"value": "abc"}, "value", '"abc"'),
    ({"value": -1}, "value", "-1"),
    ({"value": float("nan")}, "value", "NaN"),
    ({"params": [3]}, "params", "[3]"),
    ({"status": "exploded"}, "status", '"exploded"'),
    ({"number": -1}, "number", "-1"),
    ({"number": 1.5}, "number", "1.5"),
    ({"session": 0}, "session", "0"),
    ({"finished_at": -5}, "finished_at", "-5"),
    ({"status": "completed", "value": None}, "value", "null"),
    ({"params": {"x": 500}}, "params", '{"x": 500}'),
    ({"params": {"y": 1}}, "params", '{"y": 1}'),
    ({"surprise": 1}, "surprise", "1"),
])
def test_when_a_record_field_is_not_allowed_then_reading_names_the_file_line_field_and_value(
        storage, changes, field, shown):
    path = write_chunk(storage, line(), line(**{"trial_id": "t1.0", "number": 1, **changes}))
    with pytest.raises(JournalError) as e:
        read_journal(storage)
    message = str(e.value)
    assert message.startswith(f"{path}: line 2: field {field!r} is {shown}"), message


def test_when_a_chunk_comes_from_another_experiment_then_it_is_refused_naming_file_and_line(storage):
    write_chunk(storage, line())
    path = write_chunk(storage, line(trial_id="x0.0", experiment="b" * 32), name="0001-000002.jsonl")
    with pytest.raises(JournalError) as e:
        read_journal(storage, PROVENANCE)
    message = str(e.value)
    assert message.startswith(f"{path}: line 1 (trial x0.0 of AAPL/bootstrap_returns) is not this experiment's")
    assert "another experiment" in message and "b" * 32 in message


@pytest.mark.parametrize(("study", "why"), [
    ("MSFT/bootstrap_returns", "symbol 'MSFT' is not one of this experiment's symbols"),
    ("AAPL/toto", "family 'toto' is not one of this experiment's"),
])
def test_when_a_record_is_of_a_study_outside_the_experiment_then_it_is_refused(storage, study, why):
    path = write_chunk(storage, line(), line(study=study, trial_id="t9.0"))
    with pytest.raises(JournalError, match="line 2") as e:
        read_journal(storage, PROVENANCE)
    assert str(e.value).startswith(path) and why in str(e.value)


def test_when_a_study_is_not_run_this_session_then_its_records_are_refused_saying_why(storage):
    write_chunk(storage, line())
    provenance = Provenance(EXP, 1, families=("bootstrap_returns",), studies=frozenset(),
                            skipped={"AAPL": "too few bars"})
    with pytest.raises(JournalError, match="skipped: too few bars"):
        read_journal(storage, provenance)


def test_when_records_predate_experiment_ids_then_only_earlier_sessions_may_lack_one(storage):
    legacy = Provenance(EXP, since_session=3, families=("bootstrap_returns",))
    write_chunk(storage, line(experiment=None, session=2), line(trial_id="t1.0", number=1))
    assert len(read_journal(storage, legacy)) == 2
    write_chunk(storage, line(trial_id="t2.0", number=2, experiment=None, session=3), name="0003-000001.jsonl")
    with pytest.raises(JournalError, match="carries no experiment id"):
        read_journal(storage, legacy)


def test_when_an_experiment_has_no_id_then_one_is_made_and_a_stored_one_is_kept():
    new_id, since = experiment_identity(None, 1)
    assert len(new_id) == 32 and since == 1
    legacy_id, since = experiment_identity({"name": "old"}, 4)
    assert legacy_id != new_id and since == 4
    assert experiment_identity({"experiment_id": EXP, "experiment_id_since_session": 4}, 9) == (EXP, 4)


def test_when_the_journal_writes_then_every_record_carries_the_experiment_id(storage):
    journal = TrialJournal(storage, session=1, experiment=EXP)
    journal.append([JournalRecord.from_json(line(experiment=None))])
    journal.flush()
    assert [r.experiment for r in read_journal(storage, PROVENANCE)] == [EXP]


def test_when_a_chunk_was_moved_aside_then_new_trial_numbers_do_not_repeat_kept_ones(storage):
    key = "S0/bootstrap_returns"
    kept = [JournalRecord.from_json(line(study=key, number=n, trial_id=f"t{n}.0", params={}, distributions={}))
            for n in (0, 1, 3)]  # number 2's chunk moved aside
    searcher = StudyMultiplexer(spaces(1), trials_per_study=5, max_concurrent=1, history=records_by_study(kept),
                                journal=TrialJournal(storage, session=2))
    for i in range(2):
        config = searcher.suggest(f"n{i}")
        finish(searcher, f"n{i}", config["pack"])
    searcher.journal.flush()
    numbers = [r.number for r in read_journal(storage)]
    assert numbers == [4, 5]


def test_when_a_trial_finishes_then_the_timer_writes_it_within_the_interval_with_nothing_after_it(storage):
    journal = TrialJournal(storage, session=1, flush_interval_s=FLUSH_INTERVAL_S)
    journal.start()
    try:
        record = JournalRecord.from_json(line(finished_at=time.time()))
        journal.append([record])
        folder = storage._local(JOURNAL_DIR)
        deadline = time.monotonic() + 60  # generous: waits on the chunk, not on a speed
        while not (folder.is_dir() and list(folder.glob("*.jsonl"))) and time.monotonic() < deadline:
            time.sleep(0.02)
        (chunk,) = folder.glob("*.jsonl")
        # the bound, from timestamps: the chunk was written within the interval of the finish
        assert chunk.stat().st_mtime - record.finished_at <= FLUSH_INTERVAL_S
    finally:
        journal.close()
    assert journal._timer is None and not journal.pending
    assert [r.trial_id for r in read_journal(storage)] == ["t0.0"]


def test_when_trials_parquet_lists_a_moved_chunk_then_new_numbers_come_after_it_too(storage):
    import pandas as pd

    from tuner.engine.experiment import _numbers_seen

    key = "S0/bootstrap_returns"
    storage.write_parquet("trials.parquet", pd.DataFrame({"study": [key, key], "number": [0, 7]}))
    seen = _numbers_seen(storage)
    assert seen == {key: 7}
    searcher = StudyMultiplexer(spaces(1), trials_per_study=5, max_concurrent=1, numbers_seen=seen,
                                journal=TrialJournal(storage, session=2))
    config = searcher.suggest("n0")
    finish(searcher, "n0", config["pack"])
    searcher.journal.flush()
    assert [r.number for r in read_journal(storage)] == [8]
