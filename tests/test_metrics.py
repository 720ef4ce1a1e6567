from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import random_walk_bars
from tuner.core.data import load_bars
from tuner.core.errors import TunerError
from tuner.core.metrics import SKILL_UNDEFINED, Scores, baseline, score, skill
from tuner.core.trial import PeriodResult
from tuner.core.windows import WindowSpec, make_periods


@pytest.fixture
def batch(write_csv):
    bars = load_bars(write_csv("A.csv", random_walk_bars(120)))
    return make_periods(bars, WindowSpec(val_windows=5, test_windows=5), 32).validation


def test_when_forecast_is_exact_then_errors_are_zero(batch):
    s = score(batch.actual_close, batch, latency_s=2.0)
    assert s.pct_return_mae == 0 and s.price_mae == 0
    assert s.latency_per_forecast_s == pytest.approx(2.0 / 5) and s.windows == 5


def test_when_forecast_is_one_percent_above_prev_close_then_pct_error_follows_definition(batch):
    s = score(batch.prev_close * 1.01, batch)
    assert s.pct_return_mae == pytest.approx(np.mean(np.abs(0.01 - batch.actual_return)))
    assert s.price_mae == pytest.approx(np.mean(np.abs(batch.prev_close * 1.01 - batch.actual_close)))


def test_when_baseline_then_its_error_is_the_mean_absolute_return(batch):
    b = baseline(batch)
    assert b.pct_return_mae == pytest.approx(np.mean(np.abs(batch.actual_return)))
    assert b.latency_s == 0


def test_when_model_halves_the_baseline_error_then_skill_is_half():
    m = Scores(0.01, 1.0, 0.0, 0.0, 20)
    ref = Scores(0.02, 2.0, 0.0, 0.0, 20)
    assert skill(m, ref) == pytest.approx(0.5)
    assert skill(ref, m) == pytest.approx(-1.0)


def test_when_forecast_has_nan_then_error_names_the_bar(batch):
    bad = batch.actual_close.copy()
    bad[2] = np.nan
    with pytest.raises(TunerError, match=f"forecast for bar {batch.target_index[2]} is nan"):
        score(bad, batch)


def test_when_forecast_has_wrong_shape_then_error(batch):
    with pytest.raises(TunerError, match=r"forecast shape \(4,\), expected \(5,\)"):
        score(np.ones(4), batch)


def test_when_scores_round_trip_through_dict_then_equal():
    s = Scores(0.01, 1.0, 0.5, 0.025, 20)
    assert Scores.from_dict(s.to_dict()) == s


def test_when_the_baseline_is_exact_and_the_model_is_not_then_skill_is_none_with_a_reason():
    model, flat = Scores(0.01, 1.0, 0.0, 0.0, 20), Scores(0.0, 0.0, 0.0, 0.0, 20)
    assert skill(model, flat) is None
    assert skill(flat, flat) == 0.0  # both exact: a tie
    fields = PeriodResult(model, flat, skill(model, flat)).to_dict()
    assert fields["skill"] is None and fields["skill_reason"] == SKILL_UNDEFINED
    assert SKILL_UNDEFINED == "baseline pct_return_mae is 0 (flat prices), so skill is undefined"


def test_when_scored_then_per_window_errors_are_kept_in_window_order_at_float32_precision(batch):
    forecast = batch.prev_close * (1 + np.linspace(-0.02, 0.02, len(batch)))
    s = score(forecast, batch)
    exact = np.abs(forecast / batch.prev_close - 1 - batch.actual_return)
    assert len(s.errors) == s.windows == 5
    np.testing.assert_allclose(s.errors, exact, rtol=1e-7, atol=0)
    assert np.mean(s.errors) == pytest.approx(s.pct_return_mae, rel=1e-6)
    assert all(len(repr(e)) <= 16 for e in s.errors)  # compact in JSON, not a float64 repr


def test_when_baseline_then_its_per_window_errors_are_the_absolute_returns(batch):
    np.testing.assert_allclose(baseline(batch).errors, np.abs(batch.actual_return), rtol=1e-7)


def test_when_scores_with_errors_round_trip_through_json_then_equal(batch):
    import json

    s = score(batch.prev_close * 1.01, batch)
    assert Scores.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_when_a_stored_score_has_no_errors_then_it_loads_with_none_kept():
    old = {"pct_return_mae": 0.01, "price_mae": 1.0, "latency_s": 0.5, "latency_per_forecast_s": 0.025,
           "windows": 20, "skill": 0.1}
    assert Scores.from_dict(old).errors == ()


def test_when_the_baseline_is_asked_again_then_the_batch_gives_the_scores_it_kept_and_a_cut_its_own(batch):
    first = baseline(batch)
    assert baseline(batch) is first
    assert baseline(batch.rows(slice(0, 3))).windows == 3  # a batch cut from it is scored itself
    assert baseline(batch.rows(slice(0, 3))).errors == first.errors[:3]


def test_when_scores_are_packed_then_unpacking_gives_them_back_exactly():
    scores = Scores(0.1 + 0.2, 1 / 3, 0.0123456789, 0.0123456789 / 7, 7,
                    tuple(float(str(v)) for v in np.float32([0.1, 1e-9, 3.3, 0.0, 2.5, 1 / 7, 9.75])))
    packed = scores.packed()
    assert Scores.unpacked(packed) == scores and type(Scores.unpacked(packed).windows) is int
    assert Scores.unpacked(Scores(0.5, 0.5, 0.0, 0.0, 0).packed()) == Scores(0.5, 0.5, 0.0, 0.0, 0)
    assert len(packed) == 5 + 7
