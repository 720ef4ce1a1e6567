"""The trial journal: incremental atomic chunks, strict reading, compaction, no NaN."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

import tuner.engine.journal as journal_module
from tuner.core.storage import Storage
from tuner.engine.journal import (
    JOURNAL_DIR,
    JournalError,
    JournalRecord,
    StorageFault,
    TrialJournal,
    chunk_names,
    chunk_records,
    compact,
    last_session,
    read_journal,
)


def record(i: int, study: str = "AAPL/toto", value: float | None = 0.01, status: str = "completed") -> JournalRecord:
    return JournalRecord(study=study, number=i, trial_id=f"t{i}.0", status=status, params={"x": i},
                         distributions={"x": '{"name": "IntDistribution", "attributes": '
                                             '{"log": false, "step": 1, "low": 0, "high": 100}}'},
                         value=value, metrics={"pct_return_mae": value})


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path), "exp")


def chunk_files(storage: Storage) -> list:
    return sorted((storage._local(JOURNAL_DIR)).glob("*.jsonl"))


def chunk_each(storage: Storage, count: int) -> None:
    """Trials 0 .. count - 1 of session 1, a journal chunk each."""
    journal = TrialJournal(storage, session=1)
    for i in range(count):
        journal.append([record(i)])
        journal.flush()


def test_when_flushed_twice_then_the_second_chunk_holds_only_the_new_trials(storage):
    journal = TrialJournal(storage, session=1)
    journal.append([record(0), record(1)])
    journal.flush()
    journal.append([record(2)])
    journal.flush()
    first, second = chunk_files(storage)
    assert len(first.read_text().splitlines()) == 2 and len(second.read_text().splitlines()) == 1
    assert journal.stats()["flushes"] == 2
    assert journal.stats()["bytes"] == first.stat().st_size + second.stat().st_size
    assert [r.number for r in read_journal(storage)] == [0, 1, 2]


def test_when_nothing_is_pending_then_flush_writes_no_chunk(storage):
    journal = TrialJournal(storage, session=1)
    journal.flush()
    assert chunk_files(storage) == [] and journal.stats()["flushes"] == 0


def test_when_the_interval_has_not_passed_then_maybe_flush_waits(storage):
    journal = TrialJournal(storage, session=1, flush_interval_s=3600)
    journal.append([record(0)])
    journal.maybe_flush()
    assert chunk_files(storage) == []
    journal.flush_interval_s = 0
    journal.maybe_flush()
    assert len(chunk_files(storage)) == 1


def test_when_a_value_is_not_finite_then_the_record_is_strict_json_with_null(storage):
    bad = record(0, value=float("nan"), status="failed")
    line = bad.to_json()
    assert "NaN" not in line
    data = json.loads(line)
    assert data["value"] is None and data["metrics"]["pct_return_mae"] is None


def test_when_a_chunk_is_truncated_then_reading_names_the_file_and_line_and_the_way_out(storage):
    journal = TrialJournal(storage, session=1)
    journal.append([record(0), record(1)])
    journal.flush()
    (chunk,) = chunk_files(storage)
    chunk.write_text(chunk.read_text()[:-40])
    with pytest.raises(JournalError) as e:
        read_journal(storage)
    message = str(e.value)
    assert str(chunk) in message and "line 2 is not a trial record" in message
    assert "nothing was overwritten" in message and "move it out of" in message


def test_when_compaction_was_cut_short_then_duplicates_are_read_once(storage):
    journal = TrialJournal(storage, session=1)
    journal.append([record(0)])
    journal.flush()
    journal.append([record(1)])
    journal.flush()
    # the merged file written, the merged-from chunks not yet deleted (a kill in between)
    storage.write_bytes(f"{JOURNAL_DIR}/0001-compact.jsonl",
                        (record(0).to_json() + "\n" + record(1).to_json() + "\n").encode())
    assert [r.trial_id for r in read_journal(storage)] == ["t0.0", "t1.0"]


def test_when_compacted_then_one_file_holds_every_record(storage):
    for session in (1, 2):
        journal = TrialJournal(storage, session=session)
        for i in range(3):
            journal.append([record(10 * session + i)])
            journal.flush()
    before = read_journal(storage)
    assert last_session(storage) == 2
    compact(storage, 2)
    assert [p.name for p in chunk_files(storage)] == ["0002-compact.jsonl"]
    assert read_journal(storage) == before
    assert last_session(storage) == 2


def test_when_a_compaction_cut_short_is_compacted_again_then_each_trial_is_kept_once_as_first_written(storage):
    chunk_each(storage, 3)
    # a kill between writing the merged file and deleting the merged-from chunks; the merged
    # file sorts after those chunks, so the chunks' lines are the first written
    storage.write_bytes(f"{JOURNAL_DIR}/0001-compact.jsonl",
                        "".join(record(i).to_json() + "\n" for i in (0, 1)).encode())
    before = read_journal(storage)
    compact(storage, 2)
    assert [p.name for p in chunk_files(storage)] == ["0002-compact.jsonl"]
    assert storage.read_bytes(f"{JOURNAL_DIR}/0002-compact.jsonl") == (
        "\n".join(r.to_json() for r in before) + "\n").encode()
    assert [r.trial_id for r in read_journal(storage)] == ["t0.0", "t1.0", "t2.0"]


def test_when_a_line_names_no_trial_then_compaction_stops_naming_it_and_deletes_nothing(storage):
    chunk_each(storage, 2)
    first, second = chunk_files(storage)
    second.write_text(second.read_text() + json.dumps({"study": "AAPL/toto"}) + "\n")
    with pytest.raises(JournalError) as e:
        compact(storage, 1)
    assert str(second) in str(e.value) and "line 2 is not a trial record" in str(e.value)
    assert chunk_files(storage) == [first, second]


def test_when_the_reader_hands_on_its_keys_then_compaction_uses_them_and_parses_only_a_chunk_that_changed(
        storage, monkeypatch):
    chunk_each(storage, 3)
    first, second, third = chunk_files(storage)
    # a cut-short compaction's copy of trial 0, which first_written drops, parsed or not
    storage.write_bytes(f"{JOURNAL_DIR}/0001-compact.jsonl", (record(0).to_json() + "\n").encode())
    before = read_journal(storage)
    parsed: list[str] = []
    real = journal_module._trial_key
    monkeypatch.setattr(journal_module, "_trial_key", lambda s, path, n, line: parsed.append(path) or real(s, path, n, line))
    keys = {name: [(r.study, r.trial_id) for r in chunk_records(storage, name)] for name in chunk_names(storage)}
    keys[third.name] = []  # read when it held no line: its line count has changed since
    compact(storage, 2, read=keys)
    assert parsed == [f"{JOURNAL_DIR}/{third.name}"]
    assert storage.read_bytes(f"{JOURNAL_DIR}/0002-compact.jsonl") == (
        "\n".join(r.to_json() for r in before) + "\n").encode()
    assert read_journal(storage) == before


def test_when_the_reader_names_two_lines_one_trial_then_compaction_keeps_the_first(storage):
    chunk_each(storage, 2)
    keys = {name: [("AAPL/toto", "same")] for name in chunk_names(storage)}
    compact(storage, 1, read=keys)  # the keys are what decides, not a parse of the lines
    assert [r.trial_id for r in read_journal(storage)] == ["t0.0"]


def test_when_compacted_in_pieces_then_the_file_is_what_one_piece_would_be_and_a_failure_keeps_the_chunks(
        storage, monkeypatch):
    chunk_each(storage, 5)
    before = read_journal(storage)
    monkeypatch.setattr("tuner.engine.journal.COMPACT_LINES", 2)  # three pieces

    class Broken(Exception):
        pass

    class FailsOnSecondPiece:
        def __init__(self, out) -> None:
            self.out, self.pieces = out, 0

        def write(self, data: bytes) -> None:
            self.pieces += 1
            if self.pieces == 2:
                raise Broken()
            self.out.write(data)

    real = Storage.write_stream

    @contextlib.contextmanager
    def fails_after_one_piece(self, relative):
        with real(self, relative) as out:
            yield FailsOnSecondPiece(out)

    monkeypatch.setattr(Storage, "write_stream", fails_after_one_piece)
    with pytest.raises(Broken):
        compact(storage, 1)
    assert len(chunk_files(storage)) == 5 and read_journal(storage) == before  # nothing lost or half-written
    assert not [name for name in os.listdir(storage.path(JOURNAL_DIR)) if name.endswith(".tmp")]

    monkeypatch.setattr(Storage, "write_stream", real)
    compact(storage, 1)
    assert [p.name for p in chunk_files(storage)] == ["0001-compact.jsonl"]
    assert storage.read_bytes(f"{JOURNAL_DIR}/0001-compact.jsonl") == (
        "\n".join(r.to_json() for r in before) + "\n").encode()


def test_when_no_journal_exists_then_it_reads_empty(storage):
    assert read_journal(storage) == [] and last_session(storage) == 0


class FullDisk(Storage):
    """A storage whose writes fail while ``full`` (ENOSPC), like a disk that fills mid-run."""

    full = False

    def write_bytes(self, relative: str, data: bytes) -> str:
        if self.full:
            raise OSError(28, "No space left on device")
        return super().write_bytes(relative, data)


def test_when_the_storage_fills_then_records_stay_pending_and_are_written_once_it_has_room(tmp_path):
    storage = FullDisk(str(tmp_path), "exp")
    journal = TrialJournal(storage, session=1)
    journal.append([record(0)])
    journal.flush()
    storage.full = True
    journal.append([record(1), record(2)])
    journal.flush()
    assert isinstance(journal.failure, OSError) and len(journal.pending) == 2
    assert not list((tmp_path / "exp" / JOURNAL_DIR).glob(".*.tmp"))
    storage.full = False
    with pytest.raises(StorageFault, match="the run stopped with every finished trial saved"):
        journal.close()
    assert [r.number for r in read_journal(storage)] == [0, 1, 2]


def test_when_the_storage_stays_full_then_close_saves_a_rescue_file_and_says_how_to_bring_it_back(
        tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_RESCUE_DIR", str(tmp_path / "rescue"))
    storage = FullDisk(str(tmp_path), "exp")
    journal = TrialJournal(storage, session=3)
    storage.full = True
    journal.append([record(5), record(6)])
    with pytest.raises(StorageFault) as e:
        journal.close()
    (rescue,) = (tmp_path / "rescue" / "exp").iterdir()
    message = str(e.value)
    assert "No space left on device" in message and "2 finished trials" in message
    assert str(rescue) in message and f"`tuner resume exp --storage {tmp_path}`" in message
    # following the message brings every trial back
    storage.full = False
    storage.write_bytes(f"{JOURNAL_DIR}/{rescue.name}", rescue.read_bytes())
    assert [r.number for r in read_journal(storage)] == [5, 6]


def test_a_read_record_shares_its_strings_with_the_others_and_keeps_its_numbers():
    def line(i: int) -> str:
        r = record(i)
        metrics = {"pct_return_mae": 0.5 + i, "errors": [0.1 * i, 2, None], "node": "10.0.0." + "7",
                   "windows": [{"kind": "val" + "idation", "n": i}]}
        return JournalRecord(**{**r.__dict__, "metrics": metrics}).to_json()

    a, b = JournalRecord.from_json(line(1)), JournalRecord.from_json(line(2))
    assert a.metrics["node"] is b.metrics["node"]
    assert a.metrics["windows"][0]["kind"] is b.metrics["windows"][0]["kind"]
    assert a.distributions["x"] is b.distributions["x"]
    assert a.metrics["errors"] == [0.1, 2, None] and b.metrics["windows"][0]["n"] == 2
    assert a.metrics["pct_return_mae"] == 1.5


def test_records_sharing_a_distribution_are_each_checked_against_it():
    inside, outside = record(5).to_json(), record(101).to_json()  # the distribution's high is 100
    assert JournalRecord.from_json(inside).params == {"x": 5}
    with pytest.raises(ValueError, match="outside its distribution"):
        JournalRecord.from_json(outside)
    assert JournalRecord.from_json(record(6).to_json()).params == {"x": 6}
