"""The trial store reads the journal's chunks as the run saves them (tuner/engine/trial_store.py):
what it then loads is what reading the whole journal at the end gives, and a chunk it could
not read beside tuning still stops the load with the journal's own error."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.test_journal import chunk_files, record
from tuner.core.metrics import Scores
from tuner.core.storage import Storage
from tuner.engine.journal import JournalError, TrialJournal
from tuner.engine.trial_store import TrialStore


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path), "exp")


def test_when_chunks_are_read_as_they_are_saved_then_load_gives_what_reading_at_the_end_gives(storage):
    store = TrialStore((storage.base, storage.name), None)
    journal = TrialJournal(storage, session=1)
    told: list[str] = []
    journal.on_saved = lambda name: told.append(name) or store.read_new()
    journal.append([record(0), record(1, value=0.005), record(0, study="MSFT/toto")])
    journal.flush()
    journal.append([record(2, value=0.02), record(1, value=0.005)])  # trial t1.0 saved twice: kept once
    journal.flush()
    journal.on_saved = None
    journal.append([record(3, value=0.001, study="MSFT/toto")])  # saved after the last read: load reads it
    journal.flush()
    assert told == [f.name for f in chunk_files(storage)[:2]]
    assert sorted(store._chunks) == told  # both read beside "tuning", the third not

    fresh = TrialStore((storage.base, storage.name), None).load(None)
    digest = store.load(None)
    assert digest == fresh
    assert digest.records == 5  # 6 records saved, one of them twice
    assert {k: r.trial_id for k, r in digest.winners.items()} == {("AAPL", "toto"): "t1.0", ("MSFT", "toto"): "t3.0"}
    assert [r.trial_id for r in store.records_of(["AAPL"])] == ["t0.0", "t1.0", "t2.0"]
    assert store._chunks == {}  # nothing kept twice once loaded


def test_when_a_chunk_read_beside_tuning_is_damaged_then_load_raises_the_journals_error(storage):
    store = TrialStore((storage.base, storage.name), None)
    journal = TrialJournal(storage, session=1)
    journal.append([record(0)])
    journal.flush()
    journal.append([record(1)])
    journal.flush()
    second = chunk_files(storage)[1]
    second.write_text(second.read_text() + "{not json\n")
    assert store.read_new() == 1  # the good chunk; the damaged one is left for load, which says why
    with pytest.raises(JournalError, match=rf"{second.name}: line 2 is not a trial record"):
        store.load(None)


def test_when_a_chunk_is_saved_then_the_journal_tells_its_name_and_a_failing_listener_loses_nothing(storage):
    journal = TrialJournal(storage, session=1)

    def listener(name: str) -> None:
        raise RuntimeError("the store is gone")

    journal.on_saved = listener
    journal.append([record(0)])
    journal.flush()  # the listener's error is logged, not raised: the chunk is saved
    assert [f.name for f in chunk_files(storage)] == ["0001-000001.jsonl"]
    assert TrialStore((storage.base, storage.name), None).load(None).records == 1


def test_when_winners_have_their_validation_scores_then_the_store_hands_them_on_and_leaves_out_the_rest(storage):
    scores = {"pct_return_mae": 0.004, "price_mae": 0.3, "latency_s": 0.02, "latency_per_forecast_s": 0.001,
              "windows": 3, "errors": [0.003, 0.004, 0.005]}
    full = replace(record(1, value=0.004), metrics={**scores, "actor": "a0"})
    old = replace(record(1, study="MSFT/toto", value=0.004),  # a journal from before the errors were kept
                  metrics={k: v for k, v in scores.items() if k != "errors"})
    journal = TrialJournal(storage, session=1)
    journal.append([record(0, value=0.01), full, old])
    journal.flush()
    store = TrialStore((storage.base, storage.name), None)
    digest = store.load(None)
    assert list(digest.winners) == [("AAPL", "toto"), ("MSFT", "toto")]
    found = store.winner_validation()  # in the digest's order of winners
    assert found[1] is None
    assert Scores.unpacked(found[0]) == Scores.from_dict(scores)
    assert list(Scores.unpacked(found[0]).errors) == scores["errors"]
