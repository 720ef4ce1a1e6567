"""The multiplexing searcher: packs, per-study concurrency, budgets, results per slot, rebuilding
every study from the journal (no pickle)."""

from __future__ import annotations

import pickle
from collections import Counter

import optuna
import pytest
from ray.tune.search import Searcher

from tuner.core.config import load_family_config
from tuner.core.storage import Storage
from tuner.engine.journal import TrialJournal, read_journal, records_by_study
from tuner.engine.search import StudyMultiplexer, auto_pack_size

SPACE = load_family_config("bootstrap_returns").space


def spaces(n: int) -> dict:
    return {f"S{i}/bootstrap_returns": (f"S{i}", "bootstrap_returns", SPACE) for i in range(n)}


def ok(slot: dict, value: float = 0.01) -> dict:
    return {"slot": slot["slot"], "study": slot["study"], "ok": True, "value": value,
            "config": slot["params"], "metrics": {"pct_return_mae": value, "baseline_pct_return_mae": 0.02}}


def finish(searcher: StudyMultiplexer, trial_id: str, pack: list[dict], value: float = 0.01) -> None:
    searcher.on_trial_result(trial_id, {"slots": [ok(s, value) for s in pack]})
    searcher.on_trial_complete(trial_id, {"slots": []})


class FakeBoard:
    def __init__(self) -> None:
        self.packs: dict = {}

    def put(self, pack_id, pack) -> None:
        self.packs[pack_id] = pack

    def drop(self, pack_id) -> None:
        del self.packs[pack_id]


def test_when_many_studies_then_a_pack_holds_one_suggestion_from_each_of_several():
    searcher = StudyMultiplexer(spaces(10), trials_per_study=3, max_concurrent=1, pack_size=4, max_packs=10)
    pack = searcher.suggest("a")["pack"]
    assert len(pack) == 4 and len({s["study"] for s in pack}) == 4
    assert {s["slot"] for s in pack} == {"a.0", "a.1", "a.2", "a.3"}
    assert all(set(s["params"]) >= {"num_samples", "lookback", "aggregate"} for s in pack)


def test_when_packs_are_suggested_then_no_study_has_more_than_max_concurrent_in_flight():
    searcher = StudyMultiplexer(spaces(3), trials_per_study=10, max_concurrent=2, pack_size=5, max_packs=10)
    packs = [searcher.suggest(f"t{i}") for i in range(5)]
    issued = [s for p in packs if isinstance(p, dict) for s in p["pack"]]
    assert max(Counter(s["study"] for s in issued).values()) == 2
    assert len(issued) == 6  # 3 studies x 2 slots, then the searcher waits
    assert packs[-1] is None


def test_when_max_packs_are_in_flight_then_the_searcher_waits_until_one_completes():
    searcher = StudyMultiplexer(spaces(20), trials_per_study=5, pack_size=2, max_packs=2)
    first = searcher.suggest("a")["pack"]
    assert searcher.suggest("b") is not None and searcher.suggest("c") is None
    finish(searcher, "a", first)
    assert searcher.suggest("c") is not None


def test_when_every_budget_is_issued_then_finished_and_each_study_ran_exactly_its_budget():
    searcher = StudyMultiplexer(spaces(4), trials_per_study=3, max_concurrent=2, pack_size=3, max_packs=3)
    told: Counter = Counter()
    for step in range(100):
        config = searcher.suggest(f"t{step}")
        if config == Searcher.FINISHED:
            break
        if config is None:
            continue
        finish(searcher, f"t{step}", config["pack"], value=0.01 + step / 1000)
        told.update(s["study"] for s in config["pack"])
    assert config == Searcher.FINISHED and searcher.done
    assert told == {key: 3 for key in spaces(4)}
    for study in searcher.studies.values():
        assert [t.state for t in study._ot_study.trials] == [optuna.trial.TrialState.COMPLETE] * 3


def test_when_one_slot_fails_then_only_its_optuna_trial_fails(tmp_path):
    journal = TrialJournal(Storage(str(tmp_path), "e"), session=1)
    searcher = StudyMultiplexer(spaces(2), trials_per_study=2, pack_size=2, journal=journal)
    pack = searcher.suggest("a")["pack"]
    searcher.on_trial_result("a", {"slots": [ok(pack[0]), {"slot": pack[1]["slot"], "ok": False,
                                                            "error": "DataError: bad bar"}]})
    searcher.on_trial_complete("a", {"slots": []})
    journal.flush()
    by_status = {r.status: r for r in read_journal(journal.storage)}
    assert by_status["completed"].study == pack[0]["study"]
    assert by_status["failed"].study == pack[1]["study"] and by_status["failed"].error == "DataError: bad bar"
    states = {k: [t.state.name for t in s._ot_study.trials] for k, s in searcher.studies.items()}
    assert states == {pack[0]["study"]: ["COMPLETE"], pack[1]["study"]: ["FAIL"]}


def test_when_a_tune_trial_errors_before_reporting_then_its_unreported_slots_fail_and_free_their_studies():
    searcher = StudyMultiplexer(spaces(2), trials_per_study=2, max_concurrent=1, pack_size=2)
    pack = searcher.suggest("a")["pack"]
    searcher.on_trial_result("a", {"slots": [ok(pack[0])]})
    searcher.on_trial_complete("a", error=True)
    assert searcher.slots == {} and set(searcher.in_flight.values()) == {0}
    states = sorted(t.state.name for s in searcher.studies.values() for t in s._ot_study.trials)
    assert states == ["COMPLETE", "FAIL"]
    assert searcher.suggest("b") is not None  # both studies can take their next trial


def test_when_a_result_is_repeated_on_completion_then_it_is_told_once(tmp_path):
    journal = TrialJournal(Storage(str(tmp_path), "e"), session=1)
    searcher = StudyMultiplexer(spaces(1), trials_per_study=2, pack_size=1, journal=journal)
    pack = searcher.suggest("a")["pack"]
    result = {"slots": [ok(pack[0])]}
    searcher.on_trial_result("a", result)
    searcher.on_trial_complete("a", result)  # Tune hands the last result over again
    journal.flush()
    assert len(read_journal(journal.storage)) == 1


def test_when_rebuilt_from_the_journal_then_studies_keep_their_history_and_retry_failures(tmp_path):
    storage = Storage(str(tmp_path), "e")
    journal = TrialJournal(storage, session=1)
    first = StudyMultiplexer(spaces(2), trials_per_study=3, max_concurrent=2, pack_size=4, journal=journal)
    pack = first.suggest("a")["pack"]  # S0, S1, S0, S1 (round robin)
    assert [s["study"][:2] for s in pack] == ["S0", "S1", "S0", "S1"]
    outcomes = [ok(pack[0], 0.03), ok(pack[1], 0.02), ok(pack[2], 0.05),
                {"slot": pack[3]["slot"], "ok": False, "error": "boom"}]
    first.on_trial_result("a", {"slots": outcomes})
    first.suggest("b")  # asked, never finished: lost with the driver
    journal.flush()

    history = records_by_study(read_journal(storage))
    second = StudyMultiplexer(spaces(2), trials_per_study=3, max_concurrent=2, pack_size=4,
                              history=history, session=2)
    s0, s1 = second.studies["S0/bootstrap_returns"], second.studies["S1/bootstrap_returns"]
    assert [t.value for t in s0._ot_study.trials] == [0.03, 0.05]
    assert s0._ot_study.best_value == 0.03
    assert [t.state.name for t in s1._ot_study.trials] == ["COMPLETE", "FAIL"]
    # budget: S0 has 1 trial left, S1 2 (its failure is retried)
    assert second.issued == {"S0/bootstrap_returns": 2, "S1/bootstrap_returns": 1}
    pack = second.suggest("c")["pack"]
    assert Counter(s["study"] for s in pack) == {"S0/bootstrap_returns": 1, "S1/bootstrap_returns": 2}
    # the rebuilt trials keep their params; numbering continues after them
    assert s0._ot_study.trials[0].params == dict(history["S0/bootstrap_returns"][0].params)
    second.on_trial_result("c", {"slots": [ok(s) for s in pack]})
    assert second.finished == {"S0/bootstrap_returns": 3, "S1/bootstrap_returns": 4}


def test_when_rebuilt_then_warm_start_points_already_run_are_not_enqueued_again(tmp_path):
    storage = Storage(str(tmp_path), "e")
    journal = TrialJournal(storage, session=1)
    point = {"num_samples": 64, "lookback": 20, "aggregate": "mean"}
    first = StudyMultiplexer(spaces(1), trials_per_study=3, pack_size=1, journal=journal,
                             points_to_evaluate={"S0/bootstrap_returns": [point]})
    pack = first.suggest("a")["pack"]
    assert pack[0]["params"] == point
    first.on_trial_result("a", {"slots": [ok(pack[0])]})
    journal.flush()
    second = StudyMultiplexer(spaces(1), trials_per_study=3, pack_size=1,
                              points_to_evaluate={"S0/bootstrap_returns": [point]},
                              history=records_by_study(read_journal(storage)), session=2)
    assert second.suggest("b")["pack"][0]["params"] != point


def test_when_a_board_is_given_then_the_tune_config_carries_only_the_pack_id():
    board = FakeBoard()
    searcher = StudyMultiplexer(spaces(5), trials_per_study=2, pack_size=5, board=board)
    config = searcher.suggest("a")
    assert config == {"pack_id": "a", "trials": 5}
    assert [s["slot"] for s in board.packs["a"]] == [f"a.{i}" for i in range(5)]
    assert searcher.suggest("a") == config  # Tune asking again for the same trial
    finish(searcher, "a", board.packs["a"])
    assert board.packs == {}


def test_when_tune_pickles_the_searcher_then_it_gets_a_small_stub_not_the_history():
    searcher = StudyMultiplexer(spaces(50), trials_per_study=5, pack_size=50, max_packs=1)
    finish(searcher, "a", searcher.suggest("a")["pack"])
    blob = pickle.dumps(searcher)
    assert len(blob) < 1000
    assert not hasattr(pickle.loads(blob), "studies")


@pytest.mark.parametrize(("studies", "per_study", "packs", "expected"),
                         [(1, 2, 4, 1), (9, 2, 12, 2), (100, 2, 4, 50), (1000, 2, 8, 250), (1500, 2, 4, 256)])
def test_when_pack_size_is_auto_then_packs_hold_every_slot_up_to_the_limit(studies, per_study, packs, expected):
    assert auto_pack_size(studies, per_study, packs) == expected


def test_when_the_journal_cannot_be_written_then_the_searcher_starts_nothing_new(tmp_path):
    from tests.test_journal import FullDisk

    storage = FullDisk(str(tmp_path), "e")
    journal = TrialJournal(storage, session=1, flush_interval_s=0)
    searcher = StudyMultiplexer(spaces(4), trials_per_study=5, pack_size=2, max_packs=4, journal=journal)
    first, second = searcher.suggest("a")["pack"], searcher.suggest("b")["pack"]
    storage.full = True
    finish(searcher, "a", first)
    assert searcher.suggest("c") == Searcher.FINISHED and not searcher.done  # "b" still runs
    finish(searcher, "b", second)
    assert searcher.done and len(journal.pending) == 4


def _drive(hot: int, studies: int = 12, trials: int = 8, active: int = 10_000,
           max_concurrent: int = 2, first: tuple[str, ...] = ()) -> tuple[list, StudyMultiplexer]:
    """Run every study to its budget with values that depend on the params (so TPE has a
    signal), packs finishing out of order; return every suggestion in order."""
    searcher = StudyMultiplexer(spaces(studies), trials_per_study=trials, max_concurrent=max_concurrent,
                                seed=3, pack_size=5, max_packs=3, hot_studies=hot, active_studies=active,
                                first=first)
    suggested, open_packs, n = [], [], 0
    while not searcher.done:
        config = searcher.suggest(f"t{n}")
        if isinstance(config, dict):
            open_packs.append((f"t{n}", config["pack"]))
            suggested += [(s["study"], sorted(s["params"].items())) for s in config["pack"]]
            n += 1
        if not isinstance(config, dict) or len(open_packs) == 3:
            trial_id, pack = open_packs.pop(len(open_packs) // 2)  # not first in, first out
            finish(searcher, trial_id, pack, value=0.01 + 1e-4 * pack[0]["params"]["lookback"])
    return suggested, searcher


def _by_study(suggested: list) -> dict:
    """Each study's suggestions, in order (what _drive returned, split by study)."""
    out: dict = {}
    for key, params in suggested:
        out.setdefault(key, []).append(params)
    return out


def test_when_idle_studies_are_kept_compressed_then_tpe_suggests_exactly_what_live_studies_would():
    live, kept_live = _drive(hot=10_000)
    compressed, kept_small = _drive(hot=2)
    assert kept_live.studies.stats()["compressions"] == 0
    assert kept_small.studies.stats()["revivals"] > 40  # the cache really did swap studies out
    assert len(kept_small.studies.live) <= 2 + sum(v > 0 for v in kept_small.in_flight.values())
    assert compressed == live and len(live) == 12 * 8


def test_when_studies_wait_or_finish_then_the_driver_holds_no_optuna_objects_for_them():
    searcher = StudyMultiplexer(spaces(12), trials_per_study=2, max_concurrent=1, pack_size=2, max_packs=1,
                                hot_studies=2, active_studies=2)
    assert searcher.studies.stats()["built"] == 0 and len(searcher.studies) == 0  # built on first use
    finish(searcher, "a", searcher.suggest("a")["pack"])
    assert searcher.studies.stats()["built"] == 2  # the two admitted, not the ten waiting
    n = 1
    while not searcher.done:
        config = searcher.suggest(f"t{n}")
        finish(searcher, f"t{n}", config["pack"])
        n += 1
    stats = searcher.studies.stats()
    # Finished studies beyond the hot two are dropped, not compressed: nothing asks them again.
    assert stats["built"] == 12 and stats["retired"] == 10 and stats["compressed"] == 0
    assert len(searcher.studies.live) == 2
    with pytest.raises(KeyError, match="finished and was dropped"):
        searcher.studies.get(next(iter(searcher.studies.retired)))


def test_when_studies_are_admitted_in_turn_then_each_suggests_what_it_would_have_and_few_are_revived():
    # One trial in flight per study: each suggestion then follows only from the study's own history.
    all_at_once, _ = _drive(hot=10_000, max_concurrent=1)
    in_turn, searcher = _drive(hot=6, active=3, max_concurrent=1)
    assert _by_study(in_turn) == _by_study(all_at_once) and len(in_turn) == 12 * 8
    first_seen = list(dict.fromkeys(key for key, _ in in_turn))
    assert first_seen == list(spaces(12))  # admitted in order, three at a time
    assert searcher.studies.stats()["revivals"] <= 12  # round robin over 12 would revive ~96 times


def test_when_a_tune_run_ends_with_a_pack_never_completed_then_abandoning_it_fails_its_slots_and_ends_the_search(
        tmp_path):
    journal = TrialJournal(Storage(str(tmp_path), "e"), session=1)
    searcher = StudyMultiplexer(spaces(2), trials_per_study=1, pack_size=2, journal=journal)
    pack = searcher.suggest("a")["pack"]
    searcher.on_trial_result("a", {"slots": [ok(pack[0])]})  # the other slot never reports
    assert searcher.suggest("b") == Searcher.FINISHED and not searcher.done  # what kept the loop going
    assert searcher.abandon_packs() == 1 and searcher.done and searcher.abandon_packs() == 0
    journal.flush()
    assert sorted(r.status for r in read_journal(journal.storage)) == ["completed", "failed"]


def test_when_a_study_goes_first_then_it_finishes_early_and_every_study_suggests_what_it_would_have():
    last = "S11/bootstrap_returns"  # admitted last of all, three at a time
    in_turn, _ = _drive(hot=6, active=3, max_concurrent=1)
    with_first, searcher = _drive(hot=6, active=3, max_concurrent=1, first=(last,))
    assert _by_study(with_first) == _by_study(in_turn) and len(with_first) == 12 * 8
    where = [i for i, (key, _) in enumerate(with_first) if key == last]
    before = [i for i, (key, _) in enumerate(in_turn) if key == last]
    assert max(where) < len(with_first) // 3 < min(before)
    # Every study admitted at once: it still takes its next trial before the others take theirs.
    searcher = StudyMultiplexer(spaces(12), trials_per_study=8, max_concurrent=1, pack_size=5, max_packs=1,
                                first=(last,))
    for n in range(8):
        pack = searcher.suggest(f"t{n}")["pack"]
        assert pack[0]["study"] == last  # then four of the other eleven, in turn
        finish(searcher, f"t{n}", pack)
    assert searcher.study_done(last) and not searcher.study_done("S0/bootstrap_returns")


def test_when_a_pack_ends_a_study_then_a_listener_hears_it_done_with_its_last_record_only():
    searcher = StudyMultiplexer(spaces(1), trials_per_study=2, max_concurrent=2, pack_size=2)
    heard: list = []
    searcher.listeners.append(lambda record: heard.append((record.trial_id, searcher.study_done(record.study))))
    pack = searcher.suggest("a")["pack"]
    assert len(pack) == 2  # both of the study's trials in one pack, told together
    finish(searcher, "a", pack)
    assert heard == [("a.0", False), ("a.1", True)]
