"""The always-valid sequential test: size under the null over seeds (looked at after every
bar), power against a real edge, verdict directions."""

from __future__ import annotations

import numpy as np
from scipy import stats

from tuner.core.statistics.sequential import always_valid_p, sequential_test

SEEDS, BARS, ALPHA = 300, 250, 0.05


def _upper_band(p: float, n: int) -> float:
    """Largest rejection share consistent with a true size of ``p`` (one-sided 99.9 %)."""
    return stats.binom.ppf(0.999, n, p) / n


def test_when_no_difference_gaussian_then_rejecting_at_any_bar_happens_at_most_alpha_of_seeds():
    hits = sum(always_valid_p(np.random.default_rng(s).normal(0.0, 0.004, BARS)).min() <= ALPHA
               for s in range(SEEDS))
    assert hits / SEEDS <= _upper_band(ALPHA, SEEDS)


def test_when_no_difference_heavy_tailed_then_size_still_within_the_band():
    hits = sum(always_valid_p(0.003 * np.random.default_rng(s).standard_t(3, BARS)).min() <= ALPHA
               for s in range(SEEDS))
    assert hits / SEEDS <= _upper_band(ALPHA, SEEDS)


def test_when_a_fixed_sample_t_test_is_looked_at_every_bar_then_it_rejects_far_more_often():
    # Why the always-valid p-value is needed: peeking at the ordinary t-test inflates its size.
    hits = 0
    for s in range(100):
        d = np.random.default_rng(s).normal(0.0, 1.0, BARS)
        n = np.arange(1, BARS + 1)
        mean = np.cumsum(d) / n
        sd = np.array([d[:k].std(ddof=1) if k > 1 else np.inf for k in n])
        p = 2 * stats.t.sf(np.abs(mean / (sd / np.sqrt(n))), np.maximum(n - 1, 1))
        hits += (p[9:] <= ALPHA).any()
    assert hits / 100 > 0.15


def test_when_the_challenger_is_clearly_better_or_worse_then_the_verdict_says_so():
    rng = np.random.default_rng(1)
    better = sequential_test(rng.normal(0.002, 0.004, BARS))
    worse = sequential_test(rng.normal(-0.002, 0.004, BARS))
    assert (better.verdict, worse.verdict) == ("better", "worse")
    assert better.p_value <= ALPHA and worse.p_value <= ALPHA


def test_when_too_few_bars_or_identical_errors_then_undecided_with_a_reason():
    assert sequential_test(np.array([0.1, 0.2])).reason.startswith("2 bars scored")
    same = sequential_test(np.zeros(30))
    assert same.verdict == "undecided" and "never differ" in same.reason


def test_when_later_bars_are_added_then_earlier_p_values_do_not_change():
    d = np.random.default_rng(3).normal(0.0, 1.0, 100)
    assert np.array_equal(always_valid_p(d[:60]), always_valid_p(d)[:60])
