"""Leak-freeness, for every family: a forecast for bar t never depends on bars >= t, and the test
period never influences validation results."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.data import load_bars
from tuner.core.trial import run_trial
from tuner.core.windows import WindowSpec, make_periods

FAMILIES = list(FAMILY_PARAMS)
SPEC = WindowSpec(val_windows=6, test_windows=4)


def scramble_from(frame, index: int, seed: int = 99):
    """A copy where every price and volume of bars >= index is replaced by something else."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.5, 2.0, len(out) - index)
    for col in ["Open", "High", "Low", "Close"]:
        out.loc[index:, col] = (out.loc[index:, col] * factor).round(4)
    out.loc[index:, "Volume"] = rng.integers(1, 1_000_000, len(out) - index)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_when_bars_at_or_after_t_change_then_forecast_for_t_is_unchanged(family, make_family, write_csv):
    frame = random_walk_bars(200, seed=3)
    forecaster = make_family(family)
    params = FAMILY_PARAMS[family]
    base = make_periods(load_bars(write_csv("A.csv", frame)), SPEC, 128).validation
    reference = forecaster.forecast(base, params, seed=5).point
    for k in (0, 3, 5):  # the first, a middle and the last validation window
        t = int(base.target_index[k])
        changed = make_periods(load_bars(write_csv("A.csv", scramble_from(frame, t))), SPEC, 128).validation
        assert not np.array_equal(changed.actual_close[k:], base.actual_close[k:])
        again = forecaster.forecast(changed, params, seed=5).point
        np.testing.assert_array_equal(again[: k + 1], reference[: k + 1])


@pytest.mark.parametrize("family", FAMILIES)
def test_when_test_period_bars_change_then_validation_results_are_bit_identical(family, make_family, write_csv):
    frame = random_walk_bars(200, seed=4)
    forecaster = make_family(family)
    params = FAMILY_PARAMS[family]
    first = run_trial(forecaster, params, make_periods(load_bars(write_csv("B.csv", frame)), SPEC, 128), seed=1)
    changed = scramble_from(frame, len(frame) - SPEC.test_windows)
    second = run_trial(forecaster, params, make_periods(load_bars(write_csv("B.csv", changed)), SPEC, 128), seed=1)
    a, b = first.validation, second.validation
    assert a.scores.pct_return_mae == b.scores.pct_return_mae
    assert a.scores.price_mae == b.scores.price_mae
    assert a.baseline == b.baseline and a.skill == b.skill
