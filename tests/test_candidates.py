from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import random_walk_bars
from tuner.core.candidates import (
    WinnerForecasts,
    blend,
    label_candidate,
    realised_volatility,
    regime,
)
from tuner.core.data import load_bars
from tuner.core.metrics import score
from tuner.core.windows import WindowSpec, make_periods
from tuner.engine.collate import build_summary


@pytest.fixture
def periods(write_csv):
    frame = random_walk_bars(300, seed=21)
    # calm first half of the validation period, wild second half (and in test)
    rng = np.random.default_rng(0)
    wild = np.exp(np.cumsum(rng.normal(0, 0.05, 40)))
    frame.loc[270:, ["Open", "High", "Low", "Close"]] = (frame.loc[270:, ["Open", "High", "Low", "Close"]].values
                                                       * wild[-30:, None]).round(4)
    return make_periods(load_bars(write_csv("AAA.csv", frame)), WindowSpec(), 64)


def forecasts(periods, family, good_when_volatile: bool, latency: float) -> WinnerForecasts:
    out = {}
    for name in ("validation", "test"):
        batch = getattr(periods, name)
        vol = realised_volatility(batch)
        calm_and_wild = realised_volatility(periods.validation)
        volatile = vol >= (calm_and_wild.min() + calm_and_wild.max()) / 2
        good = volatile if good_when_volatile else ~volatile
        out[name] = np.where(good, batch.actual_close, batch.prev_close * 1.05)
    return WinnerForecasts(family, out["validation"], out["test"], latency)


def test_when_each_member_is_good_in_one_regime_then_the_switch_beats_both(periods):
    fast = forecasts(periods, "toto", good_when_volatile=False, latency=0.01)
    conservative = forecasts(periods, "kronos_ensemble", good_when_volatile=True, latency=0.2)
    doc = regime("AAA", periods, [fast, conservative], seed=1)
    assert doc is not None and doc["config"]["fast"] == "toto" and doc["config"]["conservative"] == "kronos_ensemble"
    members = [score(m.validation, periods.validation).pct_return_mae for m in (fast, conservative)]
    # cross-fitted: a window near the threshold may land on the wrong side out of fold
    assert doc["validation"]["pct_return_mae"] < 0.1 * min(members)
    assert np.isfinite(doc["config"]["volatility_threshold"])
    assert doc["config"]["validation_score"].startswith("cross-fitted")


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_when_volatility_says_nothing_then_an_in_sample_split_is_not_mistaken_for_a_regime(periods, rho):
    """Members whose errors have nothing to do with volatility (20 seeds; AR(1) errors with
    correlation ``rho`` between neighbouring windows, as overlapping windows have): a threshold
    fitted and scored on the same windows nearly always "beats" both; scored on held-out
    blocks it seldom does."""
    val = periods.validation
    in_sample_wins = emitted = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        members = []
        for family, latency in (("toto", 0.01), ("kronos_ensemble", 0.2)):
            error = np.zeros(len(val))
            for i in range(len(val)):
                error[i] = rho * error[i - 1] * (i > 0) + np.sqrt(1 - rho**2) * rng.normal(0, 0.01)
            members.append(WinnerForecasts(family, val.actual_close * (1 + error), periods.test.prev_close, latency))
        errors = [np.abs(m.validation / val.prev_close - val.actual_close / val.prev_close) for m in members]
        vol = realised_volatility(val)
        best_in_sample = min(np.where(vol >= t, errors[1], errors[0]).mean() for t in np.unique(vol))
        in_sample_wins += best_in_sample < min(e.mean() for e in errors)
        emitted += regime("AAA", periods, members, seed=1) is not None
    assert in_sample_wins >= 12  # scored in sample, a split "beats" both members most of the time
    assert emitted <= 4  # cross-fitted on held-out blocks: 2 (rho 0) and 3 (rho 0.9) of 20 here


def test_when_one_member_is_always_better_then_no_regime_is_made(periods):
    perfect = WinnerForecasts("toto", periods.validation.actual_close, periods.test.actual_close, 0.01)
    poor = WinnerForecasts("kronos_ensemble", periods.validation.prev_close * 1.05, periods.test.prev_close * 1.05, 0.2)
    assert regime("AAA", periods, [perfect, poor], seed=1) is None


def test_when_blending_then_weights_are_inverse_validation_error_and_sum_to_one(periods):
    a = WinnerForecasts("toto", periods.validation.prev_close * 1.01, periods.test.prev_close * 1.01, 0.01)
    b = WinnerForecasts("kronos_ensemble", periods.validation.prev_close * 1.03, periods.test.prev_close * 1.03, 0.02)
    doc = blend("AAA", periods, a, b, seed=1)
    w = doc["config"]["weights"]
    assert sum(w) == pytest.approx(1.0) and w[0] > w[1]
    # weights fitted on all validation windows; the validation score is out of fold
    assert w[0] == pytest.approx((1 / 0.01) / (1 / 0.01 + 1 / 0.03), rel=0.2)
    assert doc["config"]["validation_score"].startswith("cross-fitted")
    assert doc["validation"]["latency_per_forecast_s"] == pytest.approx(0.03)


def test_when_validation_is_too_short_to_cross_fit_then_no_candidates_are_made(write_csv):
    short = make_periods(load_bars(write_csv("BBB.csv", random_walk_bars(300, seed=2))),
                         WindowSpec(val_windows=3, test_windows=3), 64)
    a = WinnerForecasts("toto", short.validation.prev_close * 1.01, short.test.prev_close, 0.01)
    b = WinnerForecasts("kronos_ensemble", short.validation.actual_close, short.test.prev_close, 0.2)
    assert blend("BBB", short, a, b, seed=1) is None
    assert regime("BBB", short, [a, b], seed=1) is None


def test_when_a_candidate_ties_its_member_then_the_member_wins():
    doc = {"config": {}, "validation": {"pct_return_mae": 0.01, "latency_per_forecast_s": 0.1, "skill": 0},
           "test": {"pct_return_mae": 0.02, "skill": 0},
           "baseline": {"validation": {"pct_return_mae": 0.02}, "test": {"pct_return_mae": 0.02}}}
    summary = build_summary({("AAA", "regime"): doc, ("AAA", "toto"): doc}, {}, {})
    assert summary["symbols"]["AAA"]["best_family"] == "toto"


def test_when_members_have_test_latencies_then_the_blend_test_latency_is_their_sum(periods):
    a = WinnerForecasts("toto", periods.validation.prev_close * 1.01, periods.test.prev_close * 1.01, 0.01, 0.004)
    b = WinnerForecasts("kronos_ensemble", periods.validation.prev_close * 1.03, periods.test.prev_close * 1.03,
                        0.02, 0.005)
    doc = blend("AAA", periods, a, b, seed=1)
    assert doc["validation"]["latency_per_forecast_s"] == pytest.approx(0.03)
    assert doc["test"]["latency_per_forecast_s"] == pytest.approx(0.009)
    assert doc["test"]["latency_s"] == pytest.approx(0.009 * len(periods.test))


def test_when_a_member_test_latency_is_unknown_then_the_candidate_test_latency_is_none_not_validation(periods):
    a = WinnerForecasts("toto", periods.validation.prev_close * 1.01, periods.test.prev_close * 1.01, 0.01)
    b = WinnerForecasts("kronos_ensemble", periods.validation.prev_close * 1.03, periods.test.prev_close * 1.03, 0.02)
    doc = blend("AAA", periods, a, b, seed=1)
    assert doc["test"]["latency_per_forecast_s"] is None and doc["test"]["latency_s"] is None
    assert doc["validation"]["latency_per_forecast_s"] == pytest.approx(0.03)


def test_when_a_regime_switches_then_its_test_latency_follows_the_members_chosen_on_test(periods):
    fast = forecasts(periods, "toto", good_when_volatile=False, latency=0.01)
    conservative = forecasts(periods, "kronos_ensemble", good_when_volatile=True, latency=0.2)
    fast = WinnerForecasts(fast.family, fast.validation, fast.test, 0.01, 0.001)
    conservative = WinnerForecasts(conservative.family, conservative.validation, conservative.test, 0.2, 0.1)
    doc = regime("AAA", periods, [fast, conservative], seed=1)
    volatile = realised_volatility(periods.test) >= doc["config"]["volatility_threshold"]
    assert doc["test"]["latency_per_forecast_s"] == pytest.approx(np.where(volatile, 0.1, 0.001).mean())
    # the fixture's test period is all wild: conservative's test latency, unlike validation's mix
    assert volatile.all() and doc["validation"]["latency_per_forecast_s"] < 0.2


def test_when_a_candidate_is_labelled_then_it_carries_its_members_weights_trials_and_the_run_facts(periods):
    a = WinnerForecasts("toto", periods.validation.prev_close * 1.01, periods.test.prev_close * 1.01, 0.01, 0.004)
    b = WinnerForecasts("kronos_ensemble", periods.validation.prev_close * 1.03, periods.test.prev_close * 1.03,
                        0.02, 0.005)
    documents = {("AAA", "toto"): {"weights": "toto=/tiny/toto", "tiny_weights": True},
                 ("AAA", "kronos_ensemble"): {"weights": "kronos=K,kronos_tokenizer=T", "tiny_weights": False},
                 ("BBB", "toto"): {"weights": "other", "tiny_weights": False}}
    counts = {("AAA", "toto"): {"completed": 8, "failed": 0, "never_ran": 0, "budget": 8},
              ("AAA", "kronos_ensemble"): {"completed": 7, "failed": 1, "never_ran": 0, "budget": 8}}
    meta = {"experiment": "exp", "created_at": "2026-01-31T12:00:00+00:00", "tiny_weights": False,
            "windows": {"val_windows": 20, "test_windows": 20, "horizon": 1}, "data": "my-bars/"}
    doc = label_candidate(blend("AAA", periods, a, b, seed=1), documents, counts, meta)
    assert doc["weights"] == {"toto": "toto=/tiny/toto", "kronos_ensemble": "kronos=K,kronos_tokenizer=T"}
    assert doc["tiny_weights"] is True  # one member was tiny
    assert doc["trials"] == {"members": {"toto": counts[("AAA", "toto")],
                                         "kronos_ensemble": counts[("AAA", "kronos_ensemble")]}}
    assert (doc["windows"], doc["data"], doc["experiment"], doc["created_at"]) == (
        meta["windows"], "my-bars/", "exp", meta["created_at"])
    assert doc["model_type"] == "blend" and doc["seed"] == 1
