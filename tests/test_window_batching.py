"""Many windows in one model call: a window's forecast does not depend on how many windows (or
which) share its call, so auto periods (up to 250 windows, one call per period) score every
window as smaller periods would."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.data import load_bars
from tuner.core.windows import WindowSpec, make_periods


@pytest.mark.parametrize("family_name", [
    pytest.param(f, marks=pytest.mark.slow) if f.startswith("kronos") else f for f in FAMILY_PARAMS])
def test_when_a_periods_windows_share_one_call_then_each_forecast_equals_its_own_smaller_calls(
        family_name, make_family, write_csv):
    bars = load_bars(write_csv("AAA.csv", random_walk_bars(300, seed=5)))
    batch = make_periods(bars, WindowSpec(14, 20), 128).validation
    family = make_family(family_name)
    params = FAMILY_PARAMS[family_name]
    merged = family.forecast(batch, params, seed=3).point
    pieces = np.concatenate([family.forecast(batch.rows(slice(lo, lo + 7)), params, seed=3).point
                             for lo in range(0, len(batch), 7)])
    if family_name == "toto":
        # Toto's one forward pass over all windows: GEMM shapes differ, so the last bits may.
        np.testing.assert_allclose(merged, pieces, rtol=1e-5)
    else:
        np.testing.assert_array_equal(merged, pieces)
