from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import random_walk_bars
from tuner.core.data import load_bars
from tuner.core.errors import ConfigError, DataError
from tuner.core.windows import WindowSpec, make_periods, series_arrays, window_seeds


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


# ------------------------------------------------------------------------------ auto periods


def test_when_a_6_year_daily_series_is_cut_with_auto_then_both_periods_get_at_least_120_windows(write_csv):
    from tuner.core.windows import AUTO_CAP, AUTO_CONTEXT

    six_years = load_bars(write_csv("SIX.csv", random_walk_bars(6 * 252, seed=1, freq="B")))
    periods = make_periods(six_years, WindowSpec.auto(), context_length=512)
    assert len(periods.validation) == len(periods.test) == AUTO_CAP >= 120
    n = len(six_years)
    assert list(periods.test.target_index) == list(range(n - AUTO_CAP, n))
    assert periods.validation.target_index[0] >= AUTO_CONTEXT  # the context the families need comes first


@pytest.mark.parametrize(("n", "expected"), [(600, 44), (1000, 244), (1512, 250), (5000, 250)])
def test_when_auto_then_periods_split_what_follows_the_context_evenly_up_to_the_cap(n, expected):
    assert WindowSpec.auto().resolve(n) == WindowSpec(expected, expected)


def test_when_the_history_is_short_then_auto_keeps_the_minimum_by_giving_up_context(bars):
    from tuner.core.windows import AUTO_MIN

    periods = make_periods(bars, WindowSpec.auto(), context_length=512)  # 300 bars
    assert len(periods.validation) == len(periods.test) == AUTO_MIN
    assert periods.validation.context_length == 300 - 2 * AUTO_MIN


def test_when_the_history_is_too_short_even_for_the_minimum_then_auto_says_what_it_needs(write_csv):
    bars = load_bars(write_csv("SHORT.csv", random_walk_bars(60)))
    with pytest.raises(DataError, match=r"has 60 bars, needs at least 72 \(context 32 \+ 20 validation \+ 20 "
                                        r"test \(auto periods at their minimum\)\)"):
        make_periods(bars, WindowSpec.auto(), context_length=256)


def test_when_one_period_is_explicit_then_auto_sizes_only_the_other(write_csv):
    long = load_bars(write_csv("LONG.csv", random_walk_bars(700, seed=2)))
    periods = make_periods(long, WindowSpec(val_windows=None, test_windows=60), context_length=256)
    assert len(periods.test) == 60 and len(periods.validation) == 700 - 512 - 60
    assert len(make_periods(long, WindowSpec(30, 40), 256).validation) == 30  # explicit numbers win


def test_when_auto_with_stability_folds_then_each_fold_counts_as_a_validation_period():
    assert WindowSpec.auto(stability_folds=2).resolve(1112) == WindowSpec(150, 150, 1, 2)


def test_when_windows_auto_is_configured_then_it_parses_and_round_trips_through_the_stored_config():
    from tuner.engine.experiment_config import ExperimentConfig, parse_experiment_config

    config = parse_experiment_config({"windows": "auto"})
    assert config.windows == WindowSpec.auto() == ExperimentConfig().windows
    assert config.to_dict()["windows"] == {"val_windows": "auto", "test_windows": "auto", "horizon": 1,
                                           "stability_folds": 0}
    assert parse_experiment_config(config.to_dict()).windows == config.windows
    mixed = parse_experiment_config({"windows": {"val_windows": 50, "test_windows": "auto", "horizon": 2}})
    assert mixed.windows == WindowSpec(50, None, 2)


@pytest.mark.parametrize("value", ["many", {"val_windows": "lots"}, {"val_windows": 0}])
def test_when_windows_is_neither_auto_nor_numbers_then_the_error_names_the_key(value):
    from tuner.engine.experiment_config import parse_experiment_config

    with pytest.raises(ConfigError, match=r"windows"):
        parse_experiment_config({"windows": value})


def test_when_periods_are_cut_then_their_counts_and_target_dates_are_stated(bars):
    from tuner.core.windows import target_dates, window_counts

    periods = make_periods(bars, WindowSpec(5, 4, stability_folds=1), context_length=64)
    assert window_counts(periods) == {"validation": 5, "test": 4, "stability_folds": 1, "fold_windows": 5,
                                      "context_length": 64}
    dates = target_dates(periods.test)
    assert len(dates) == 4 and dates[-1] == str(np.datetime_as_string(bars.timestamps[-1], unit="s"))


def test_when_several_families_cut_one_symbol_then_the_object_store_holds_its_series_once(bars):
    import pickle

    series = series_arrays(bars)
    one = {"a": {"AAA": make_periods(bars, WindowSpec(), 64, series=series)}}
    three = {f: {"AAA": make_periods(bars, WindowSpec(), length, series=series)}
             for f, length in (("a", 64), ("b", 128), ("c", 200))}
    size_one, size_three = len(pickle.dumps(one, protocol=5)), len(pickle.dumps(three, protocol=5))
    bars_bytes = len(bars) * 7 * 8  # six float64 columns and a timestamp
    # A copy of each window's context would be 40 windows x 64..200 bars, ~20-60x the bars.
    assert size_one < 2 * bars_bytes
    assert size_three < size_one + bars_bytes / 2


def test_when_a_forecaster_writes_on_its_context_then_the_data_is_untouched(bars):
    v = make_periods(bars, WindowSpec(), context_length=64).validation
    before = v.context.copy()
    v.context[:] = 0.0  # a fresh array: the batch is unchanged
    np.testing.assert_array_equal(v.context, before)
    with pytest.raises(ValueError):
        v.series[0, 0] = 0.0  # the shared series is read-only


def test_when_a_window_would_reach_its_target_then_the_batch_refuses(bars):
    v = make_periods(bars, WindowSpec(), context_length=64).validation
    with pytest.raises(ValueError, match="outside bars"):
        dataclasses.replace(v, starts=v.starts + 1)
    assert v.end == v.target_index.max()  # horizon 1: nothing at or after the last target is read
