"""The family defaults scored beside tuning (tuner/engine/rescoring.py: DefaultScores) are what
scoring each default after tuning gave: same windows, seed and per-window errors."""

from __future__ import annotations

from functools import partial

import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.config import load_family_config
from tuner.core.data import load_bars
from tuner.core.families import family_class
from tuner.core.trial import run_trial
from tuner.core.windows import WindowSpec, make_periods
from tuner.engine.actors import ModelServer
from tuner.engine.collate import TrialRecord, pick_winners
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.journal import JournalRecord
from tuner.engine.pooled_study import pooled_key
from tuner.engine.rescoring import (
    DefaultScores,
    PooledScores,
    WinnerScores,
    score_pooled,
    score_winners,
)
from tuner.engine.result_store import ResultBrief, ResultStore, StoredResults, open_results
from tuner.engine.trial_store import trial_record, validation_scores

FAMILY = "bootstrap_returns"
SYMBOLS = ("AAA", "BBB", "CCC")
SEED = 7


@pytest.fixture
def periods(write_csv):
    return {s: make_periods(load_bars(write_csv(f"{s}.csv", random_walk_bars(400, seed=n))), WindowSpec(), 128)
            for n, s in enumerate(SYMBOLS)}


@pytest.fixture
def actors_and_store(local_ray, periods):
    actor = local_ray.remote(ModelServer).options(num_cpus=0, max_concurrency=4).remote(FAMILY, None, periods)
    store = open_results("defaults-test", "forecast-tuner")
    yield {FAMILY: [("defaults-test-actor", actor)]}, store
    local_ray.kill(actor)
    local_ray.kill(store)


def test_when_defaults_are_scored_beside_tuning_then_each_is_the_default_run_on_both_periods(
        local_ray, periods, actors_and_store):
    actors, store = actors_and_store
    studies = [(s, FAMILY) for s in SYMBOLS]
    job = DefaultScores(studies, actors, SEED, store, ("forecast-tuner", "defaults-test")).start()
    with_winner = studies[:2]  # the third study has no winner: its default is not handed on
    briefs = job.result(with_winner)
    assert sorted(briefs) == sorted(with_winner)
    family = family_class(FAMILY)()
    default = load_family_config(FAMILY).default
    held = local_ray.get(store.of_symbols.remote("default", list(SYMBOLS)))
    assert sorted(held) == sorted(studies)  # the store has all three
    for symbol, _ in with_winner:
        expected = run_trial(family, default, periods[symbol], SEED, with_test=True)
        assert briefs[(symbol, FAMILY)].objective == expected.validation.scores.pct_return_mae
        got = held[(symbol, FAMILY)]
        assert got.config == expected.config and got.seed == SEED
        for period in ("validation", "test"):
            assert list(getattr(got, period).scores.errors) == list(getattr(expected, period).scores.errors)


def test_when_the_family_actors_are_dead_then_no_default_is_handed_on_and_nothing_raises(
        local_ray, actors_and_store):
    actors, store = actors_and_store
    local_ray.kill(actors[FAMILY][0][1], no_restart=True)
    studies = [(s, FAMILY) for s in SYMBOLS]
    job = DefaultScores(studies, actors, SEED, store, ("forecast-tuner", "defaults-test")).start()
    assert len(job.result(studies)) == 0


def test_when_winners_come_with_their_validation_scores_then_only_their_test_period_is_forecast(
        local_ray, periods, actors_and_store):
    actors, store = actors_and_store
    family = family_class(FAMILY)()
    params = dict(FAMILY_PARAMS[FAMILY])
    tuned = {s: run_trial(family, params, periods[s], SEED) for s in SYMBOLS}
    winners = {(s, FAMILY): TrialRecord(f"t-{s}", s, FAMILY, "completed", params,
                                        {"pct_return_mae": tuned[s].objective}) for s in SYMBOLS}
    given = {(s, FAMILY): tuned[s].validation.scores.packed() for s in SYMBOLS[:2]}  # CCC has none
    finals, unscored = score_winners(winners, actors, SEED, store, ("forecast-tuner", "defaults-test"),
                                     validation=given)
    assert unscored == {} and sorted(finals) == sorted(winners)
    bank = local_ray.get(actors[FAMILY][0][1].info.remote())["bank"]
    folds = len(periods["AAA"].folds)
    # Test period and folds for each winner; the validation period again for CCC only.
    assert bank["hits"] + bank["misses"] == 3 * (1 + folds) + 1
    held = local_ray.get(store.of_symbols.remote("winner", list(SYMBOLS)))
    for symbol in SYMBOLS:
        expected = run_trial(family, params, periods[symbol], SEED, with_test=True)
        got = held[(symbol, FAMILY)]
        assert list(got.validation.scores.errors) == list(expected.validation.scores.errors)
        assert list(got.test.scores.errors) == list(expected.test.scores.errors)
        assert got.validation.baseline == expected.validation.baseline
    assert held[("AAA", FAMILY)].validation.scores.latency_s == tuned["AAA"].validation.scores.latency_s


def _pooled_records(configs_and_values) -> list[JournalRecord]:
    return [JournalRecord(study=pooled_key(FAMILY), number=i, trial_id=f"p{i}", status="completed", params={},
                          distributions={}, config=config, value=value, metrics={"pct_return_mae": value})
            for i, (config, value) in enumerate(configs_and_values)]


@pytest.mark.parametrize("same_best", [True, False])
def test_when_the_pooled_study_finishes_during_tuning_then_its_best_config_is_scored_beside_it(
        local_ray, periods, actors_and_store, same_best):
    actors, store = actors_and_store
    store_at = ("forecast-tuner", "defaults-test")
    studies = [(s, FAMILY) for s in SYMBOLS]
    params = dict(FAMILY_PARAMS[FAMILY])
    better = {**params, "lookback": 20}
    told = _pooled_records([(params, 0.02), (better, 0.01)])
    heard = {"n": 0}
    job = PooledScores(studies, actors, SEED, store, store_at, None, done=lambda key: heard["n"] == len(told))
    for record in told:  # what the searcher's listener hears; done with the last one
        heard["n"] += 1
        job.record(record)
    # After tuning, the journal's pooled records say which config won (the same, unless changed here).
    later = {**params, "lookback": 30}
    final = told if same_best else _pooled_records([(params, 0.02), (better, 0.01), (later, 0.005)])
    job.result(pick_winners([trial_record(r) for r in told]))  # what was scored beside tuning is in
    pooled_records = [trial_record(r) for r in final]
    actor = actors[FAMILY][0][1]
    before = local_ray.get(actor.info.remote())["bank"]
    outcome = score_pooled(pooled_records, studies, actors, ExperimentConfig(seed=SEED), store, store_at,
                           beside=job)[FAMILY]
    after = local_ray.get(actor.info.remote())["bank"]
    lookups = (after["hits"] + after["misses"]) - (before["hits"] + before["misses"])
    folds = len(periods["AAA"].folds)
    assert lookups == (0 if same_best else 3 * (2 + folds))  # scored once, beside tuning, when it was the best
    assert outcome.config == (better if same_best else later)
    held = local_ray.get(store.pooled_of.remote(FAMILY, list(SYMBOLS)))
    assert sorted(held) == sorted(SYMBOLS) == sorted(outcome.results)
    for symbol in SYMBOLS:
        expected = run_trial(family_class(FAMILY)(), outcome.config, periods[symbol], SEED, with_test=True)
        assert list(held[symbol].test.scores.errors) == list(expected.test.scores.errors)
        assert list(held[symbol].validation.scores.errors) == list(expected.validation.scores.errors)


def test_when_studies_finish_during_tuning_then_their_winners_are_scored_beside_it_and_only_the_rest_after(
        local_ray, periods, actors_and_store, monkeypatch):
    monkeypatch.setattr("tuner.engine.rescoring.WINNERS_PER_BATCH", 1)  # each winner as soon as its study ends
    actors, store = actors_and_store
    store_at = ("forecast-tuner", "defaults-test")
    family = family_class(FAMILY)()
    params = dict(FAMILY_PARAMS[FAMILY])
    configs = [{**params, "lookback": n} for n in (20, 30)]
    heard: dict[str, int] = {}
    told = []
    for symbol in SYMBOLS:
        for number, config in enumerate(configs):
            scores = run_trial(family, config, periods[symbol], SEED).validation.scores
            told.append(JournalRecord(study=f"{symbol}/{FAMILY}", number=number, trial_id=f"{symbol}-{number}",
                                      status="completed", params={}, distributions={}, config=config,
                                      value=scores.pct_return_mae, metrics=scores.to_dict()))
    job = WinnerScores(actors, SEED, store_at, None, done=lambda study: heard[study] == len(configs))
    for record in told:  # what the searcher's listener hears; a study is done with its second trial
        heard[record.study] = heard.get(record.study, 0) + 1
        job.record(record)
    # The journal's winners, read back after tuning; CCC's is a trial the listener never heard
    # (an earlier session's), so the one scored beside tuning is not used.
    read_back = [trial_record(JournalRecord.from_json(r.to_json())) for r in told]
    earlier = TrialRecord("CCC-earlier", "CCC", FAMILY, "completed", {**params, "lookback": 40}, {"pct_return_mae": 0.0})
    winners = pick_winners([*read_back, earlier])
    assert winners[("AAA", FAMILY)].trial_id in {"AAA-0", "AAA-1"}
    actor = actors[FAMILY][0][1]
    job.result(winners)  # every winner heard is scored by now
    before = local_ray.get(actor.info.remote())["bank"]
    validation = {key: validation_scores(w.metrics) for key, w in winners.items() if key[0] != "CCC"}
    finals, unscored = score_winners(winners, actors, SEED, store, store_at, validation=validation, beside=job)
    after = local_ray.get(actor.info.remote())["bank"]
    folds = len(periods["AAA"].folds)
    # After tuning only CCC's winner, which has no validation scores: both periods and the folds.
    assert (after["hits"] + after["misses"]) - (before["hits"] + before["misses"]) == 2 + folds
    assert unscored == {} and list(finals) == list(winners)
    held = local_ray.get(store.of_symbols.remote("winner", list(SYMBOLS)))
    for (symbol, _), winner in winners.items():
        expected = run_trial(family, dict(winner.config), periods[symbol], SEED, with_test=True)
        got = held[(symbol, FAMILY)]
        assert got.config == expected.config and got.seed == SEED
        for period in ("validation", "test"):
            assert list(getattr(got, period).scores.errors) == list(getattr(expected, period).scores.errors)
        assert got.validation.baseline == expected.validation.baseline


def test_when_the_store_holds_a_result_the_run_did_not_keep_then_no_task_is_handed_it(periods):
    # A winner scored beside tuning that was not the journal's winner, whose scoring after tuning
    # then failed: its result stays in the store, but the run has no brief for it.
    family = family_class(FAMILY)()
    result = run_trial(family, dict(FAMILY_PARAMS[FAMILY]), periods["AAA"], SEED, with_test=True)
    store = ResultStore()
    store.put_many([(("winner", ("AAA", FAMILY)), result.to_dict()), (("winner", ("BBB", FAMILY)), result.to_dict()),
                    (("pooled", ("AAA", FAMILY)), result.to_dict()), (("pooled", ("BBB", FAMILY)), result.to_dict())])
    brief = ResultBrief.of(result.to_dict())
    winners = StoredResults({("BBB", FAMILY): brief}, partial(store.of_keys, "winner"))
    assert sorted(winners.ref_of(["AAA", "BBB"])) == [("BBB", FAMILY)]
    pooled = StoredResults({"AAA": brief}, partial(store.pooled_of, FAMILY), symbol_of=str)
    assert sorted(pooled.ref_of(["AAA", "BBB"])) == ["AAA"]
