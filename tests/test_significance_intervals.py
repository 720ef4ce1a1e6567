"""The interval and the minimum detectable edge agree with the Diebold–Mariano test they report
beside (issue 18 items 2 and 5): same standard error, same t distribution; coverage and power
checked by simulation at the default window count within binomial bands."""

from __future__ import annotations

import numpy as np
from scipy import stats

from tuner.core.statistics.significance import (
    ALPHA,
    CI_LEVEL,
    SPA_MIN_WINDOWS,
    _dm_from,
    diebold_mariano,
    dm_statistic,
    hln_standard_error,
    minimum_detectable_edge,
    spa_test,
    t_interval,
)

WINDOWS = 20
SEEDS = 400


def band(n: int, p: float, mass: float = 0.999) -> tuple[float, float]:
    low, high = stats.binom.interval(mass, n, p)
    return low / n, high / n


def test_when_differences_are_simulated_at_the_default_window_count_then_the_t_interval_covers_at_its_level():
    rng = np.random.default_rng(5)
    truth = 0.3
    covered = 0
    for _ in range(SEEDS):
        d = truth + rng.standard_normal(WINDOWS)
        low, high = t_interval(d)
        covered += low <= truth <= high
    low, high = band(SEEDS, CI_LEVEL)
    assert low <= covered / SEEDS <= high


def test_when_horizon_two_differences_overlap_then_the_interval_still_covers_within_the_band():
    rng = np.random.default_rng(6)
    covered = 0
    for _ in range(SEEDS):
        e = rng.standard_normal(WINDOWS + 1)
        d = e[1:] + e[:-1]  # MA(1), as 2-bar forecasts' errors are
        low, high = t_interval(d, horizon=2)
        covered += low <= 0 <= high
    # The HLN test's own size at h = 2 is ~6-9 %: the interval inherits it, no worse.
    assert covered / SEEDS >= band(SEEDS, CI_LEVEL - 0.05)[0]


def test_when_any_comparison_is_made_then_p_below_alpha_exactly_when_the_interval_is_below_zero():
    rng = np.random.default_rng(7)
    for seed in range(300):
        other = np.abs(rng.normal(0, 0.01, WINDOWS))
        winner = np.abs(other - rng.normal(0.0005 * (seed % 5), 0.004, WINDOWS))
        c = diebold_mariano(winner, other, horizon=1 + seed % 2)
        assert (c.p_value < ALPHA) == (c.ci[1] < 0), (seed, c)


def test_when_the_edge_equals_the_minimum_detectable_edge_then_the_test_finds_it_in_eighty_percent():
    rng = np.random.default_rng(8)
    sd = 1.0
    se = sd / np.sqrt(WINDOWS)
    edge = minimum_detectable_edge(se, WINDOWS)
    d = -edge + sd * rng.standard_normal((SEEDS * 2, WINDOWS))
    _, p = dm_statistic(d)
    low, high = band(SEEDS * 2, 0.80)
    assert low <= np.mean(p < ALPHA) <= high
    # Half the edge is seen far less often: the number is a real threshold, not a formality.
    _, p_half = dm_statistic(d + edge / 2)
    assert np.mean(p_half < ALPHA) < 0.45


def test_when_a_comparison_is_made_then_it_states_the_minimum_detectable_edge_as_a_share_of_the_other_error():
    rng = np.random.default_rng(9)
    other = np.abs(rng.normal(0, 0.01, WINDOWS))
    winner = np.abs(other + rng.normal(0, 0.003, WINDOWS))
    c = diebold_mariano(winner, other).to_dict()
    se = float(hln_standard_error(winner - other)[1])
    assert np.isclose(c["min_detectable_edge"], minimum_detectable_edge(se, WINDOWS))
    assert np.isclose(c["min_detectable_edge_pct"], 100 * c["min_detectable_edge"] / other.mean())
    assert c["ci_level"] == CI_LEVEL
    # More windows, same noise: a smaller edge is visible.
    more = diebold_mariano(np.tile(winner, 6), np.tile(other, 6)).to_dict()
    assert more["min_detectable_edge_pct"] < c["min_detectable_edge_pct"] / 2


def test_when_validation_has_fewer_windows_than_spa_is_calibrated_for_then_spa_is_null_with_the_reason():
    rng = np.random.default_rng(10)
    base = np.abs(rng.normal(0, 0.01, WINDOWS))
    out = spa_test(base, np.abs(rng.normal(0, 0.01, (WINDOWS, 5))))
    assert out.spa_p_value is None and out.reality_check_p_value is None
    assert f"below {SPA_MIN_WINDOWS} windows" in out.reason
    n = SPA_MIN_WINDOWS
    ok = spa_test(np.abs(rng.normal(0, 0.01, n)), np.abs(rng.normal(0, 0.01, (n, 5))), reps=200)
    assert ok.spa_p_value is not None and ok.reason is None


def test_the_comparison_reports_exactly_the_t_test_interval_and_edge_of_its_standard_error():
    """diebold_mariano computes the standard error once and Student t's CDF directly (for
    speed): every number must be what the separate functions and scipy.stats.t give."""
    rng = np.random.default_rng(11)
    for seed in range(60):
        horizon = 1 + seed % 3
        winner, other = np.abs(rng.normal(0, 0.01, (2, WINDOWS)))
        c = diebold_mariano(winner, other, horizon=horizon)
        d = winner - other
        statistic, p = dm_statistic(d, horizon)
        mean, se = hln_standard_error(d, horizon)
        assert c.statistic == float(statistic) == float(mean / se)
        assert c.p_value == float(p) == float(stats.t.cdf(mean / se, df=WINDOWS - 1))
        assert c.ci == t_interval(d, horizon=horizon)
        assert c.min_detectable_edge == minimum_detectable_edge(float(se), WINDOWS)
    means = np.array([-np.inf, -3.0, 0.0, 1.5, np.inf, np.nan])
    _, p = _dm_from(means, np.ones(len(means)), WINDOWS)
    assert np.array_equal(p, stats.t.cdf(means, df=WINDOWS - 1), equal_nan=True)
