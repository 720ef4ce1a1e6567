"""Backtest arithmetic against hand-computed cases: positions, costs, a long/short flip,
performance numbers and annualisation per bar frequency."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tuner.core.trading.bar_frequency import bar_frequency
from tuner.core.trading.strategy_rules import past_volatility, positions, strategy_returns
from tuner.core.trading.trading_metrics import performance


def test_when_long_then_short_with_costs_then_net_returns_match_hand_computation():
    # Long 1, then a flip to short 1 (trades 2 units), then flat (trades 1 unit); 10 bps a unit.
    res = strategy_returns(np.array([1.0, -1.0, 0.0]), np.array([0.02, 0.01, -0.03]), costs_bps=10)
    assert res.traded.tolist() == [1.0, 2.0, 1.0]
    assert np.allclose(res.gross, [0.02, -0.01, 0.0])
    assert np.allclose(res.costs, [0.001, 0.002, 0.001])
    assert np.allclose(res.net, [0.019, -0.012, -0.001])


def test_when_hand_computed_series_then_performance_numbers_match():
    res = strategy_returns(np.array([1.0, -1.0, 0.0, 1.0]), np.array([0.02, 0.01, -0.03, 0.05]), costs_bps=10)
    perf = performance(res, bars_per_year=252)
    net = np.array([0.019, -0.012, -0.001, 0.049])
    assert perf.total_return == pytest.approx(np.prod(1 + net) - 1)
    assert perf.sharpe == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252))
    # Peak after bar 1 (1.019), trough after bar 3 (1.019 * 0.988 * 0.999).
    assert perf.max_drawdown == pytest.approx(0.988 * 0.999 - 1)
    assert perf.hit_rate == pytest.approx(2 / 3)  # long +2 % hit, short into +1 % missed, long +5 % hit
    assert perf.turnover == pytest.approx((1 + 2 + 1 + 1) / 4)
    assert perf.costs == pytest.approx(0.005)


def test_when_annualising_then_sharpe_scales_with_square_root_of_bars_per_year():
    res = strategy_returns(np.ones(5), np.array([0.01, -0.005, 0.02, 0.0, 0.01]), costs_bps=0)
    daily, hourly = performance(res, 252).sharpe, performance(res, 252 * 7).sharpe
    assert hourly / daily == pytest.approx(math.sqrt(7))


@pytest.mark.parametrize("freq, expected_label, expected", [
    ("B", "daily", 252), ("D", "daily-7", 365), ("W", "weekly", 52), ("MS", "monthly", 12),
])
def test_when_bars_have_a_frequency_then_bars_per_year_follow_it(freq, expected_label, expected):
    times = pd.date_range("2024-01-01", periods=120, freq=freq).to_numpy()
    f = bar_frequency(times)
    assert (f.label, f.bars_per_year) == (expected_label, expected)


def test_when_hourly_bars_of_a_7_hour_session_then_252_times_7_bars_a_year():
    days = pd.bdate_range("2024-01-01", periods=30)
    times = np.concatenate([(d + pd.to_timedelta(np.arange(7), "h")).to_numpy() for d in days])
    f = bar_frequency(times)
    assert (f.label, f.bars_per_year) == ("intraday", 252 * 7)


def test_when_scaled_rule_then_position_is_prediction_over_volatility_capped():
    pos = positions("scaled", np.array([0.01, -0.05, 0.002, 0.01]), np.array([0.02, 0.02, 0.0, 0.005]))
    assert pos.tolist() == [0.5, -1.0, 0.0, 1.0]
    assert positions("sign", np.array([0.3, -0.1, 0.0])).tolist() == [1.0, -1.0, 0.0]
    with pytest.raises(ValueError, match="unknown rule 'momentum'"):
        positions("momentum", np.zeros(2))


def test_when_future_closes_change_then_past_volatility_does_not():
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 80)))
    targets = np.arange(40, 80)
    before = past_volatility(closes, targets)
    changed = closes.copy()
    changed[60:] *= 3.0
    after = past_volatility(changed, targets)
    assert np.array_equal(before[targets < 60], after[targets < 60])  # bar 60 reads closes < 60
    assert not np.array_equal(before[targets > 61], after[targets > 61])
    rets = closes[1:] / closes[:-1] - 1
    assert before[0] == pytest.approx(np.std(rets[19:39], ddof=1))  # the 20 returns into bars 20..39
