from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import random_walk_bars
from tuner.core.data import load_bars
from tuner.core.errors import ConfigError, DataError
from tuner.core.windows import WindowSpec, make_periods, window_seeds


@pytest.fixture
def bars(write_csv):
    return load_bars(write_csv("AAA.csv", random_walk_bars(300)))


def test_when_default_spec_then_test_is_last_20_and_validation_the_20_before(bars):
    periods = make_periods(bars, WindowSpec(), context_length=64)
    n = len(bars)
    assert list(periods.test.target_index) == list(range(n - 20, n))
    assert list(periods.validation.target_index) == list(range(n - 40, n - 20))


def test_when_horizon_1_then_context_ends_just_before_the_target(bars):
    v = make_periods(bars, WindowSpec(), context_length=64).validation
    t = v.target_index[0]
    np.testing.assert_array_equal(v.context[0], bars.values[t - 64 : t])
    assert v.prev_close[0] == bars.close[t - 1] and v.actual_close[0] == bars.close[t]
    assert v.future_times[0, 0] == bars.timestamps[t]
    np.testing.assert_allclose(v.actual_return, bars.close[v.target_index] / bars.close[v.target_index - 1] - 1)


def test_when_horizon_3_then_origin_is_two_bars_before_the_target(bars):
    v = make_periods(bars, WindowSpec(horizon=3), context_length=64).validation
    t = v.target_index[0]
    np.testing.assert_array_equal(v.context[0], bars.values[t - 2 - 64 : t - 2])
    np.testing.assert_array_equal(v.future_times[0], bars.timestamps[t - 2 : t + 1])
    assert v.prev_close[0] == bars.close[t - 3]


def test_when_history_is_shorter_than_the_cap_then_every_window_gets_the_same_shorter_context(bars):
    periods = make_periods(bars, WindowSpec(), context_length=10_000)
    assert periods.validation.context_length == len(bars) - 40 == periods.test.context_length


def test_when_too_few_bars_then_error_says_how_many_are_needed(write_csv):
    bars = load_bars(write_csv("SHORT.csv", random_walk_bars(60)))
    with pytest.raises(DataError, match=r"has 60 bars, needs at least 72 \(context 32 \+ 20 validation \+ 20 test\)"):
        make_periods(bars, WindowSpec(), context_length=256)


@pytest.mark.parametrize("field", ["val_windows", "test_windows", "horizon"])
def test_when_spec_value_is_not_positive_then_error_names_it(field):
    with pytest.raises(ConfigError, match=f"windows.{field}: 0 must be an integer >= 1"):
        WindowSpec(**{field: 0})


def test_when_truncated_then_only_the_latest_bars_remain(bars):
    v = make_periods(bars, WindowSpec(), context_length=64).validation
    short = v.truncated(16)
    np.testing.assert_array_equal(short.context, v.context[:, -16:])
    assert v.truncated(100) is v


def test_when_windows_change_around_a_window_then_its_seed_does_not(bars):
    v = make_periods(bars, WindowSpec(), context_length=64).validation
    fewer = make_periods(bars, WindowSpec(val_windows=5), context_length=64).validation
    assert window_seeds(7, v)[-5:] == window_seeds(7, fewer)
    assert window_seeds(7, v) != window_seeds(8, v)
    assert len(set(window_seeds(7, v))) == len(v)


def test_when_stability_folds_are_asked_then_they_sit_just_before_validation_with_their_own_context(bars):
    spec = WindowSpec(stability_folds=2)
    periods = make_periods(bars, spec, context_length=64)
    n = len(bars)
    assert [f.period for f in periods.folds] == ["fold1", "fold2"]
    assert list(periods.folds[0].target_index) == list(range(n - 60, n - 40))
    assert list(periods.folds[1].target_index) == list(range(n - 80, n - 60))
    assert spec.bars_needed() == 32 + 60 + 20
    # validation is the same with or without folds
    plain = make_periods(bars, WindowSpec(), context_length=64).validation
    np.testing.assert_array_equal(periods.validation.context, plain.context)
