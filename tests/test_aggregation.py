from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tuner.core.aggregation import aggregate, parse
from tuner.core.errors import AggregationError

samples_2d = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 60)),
                    elements=st.floats(-1e6, 1e6, allow_nan=False))


def test_when_trimmed_mean_10_of_20_samples_then_two_dropped_each_side():
    x = np.arange(20.0)
    assert aggregate(x, "trimmed_mean_10") == pytest.approx(np.arange(2.0, 18.0).mean())
    assert aggregate(x, "trimmed_mean_0.1") == aggregate(x, "trimmed_mean_10")


def test_when_lower_and_upper_trimmed_then_drop_one_side():
    x = np.array([1.0, 2, 3, 4, 100])
    assert aggregate(x, "lower_trimmed_mean_20") == pytest.approx(2.5)
    assert aggregate(x, "upper_trimmed_mean_20") == pytest.approx((2 + 3 + 4 + 100) / 4)


@pytest.mark.parametrize("spec, expected", [
    ("mean", 2.5), ("median", 2.5), ("p50", 2.5), ("p0", 1.0), ("p100", 4.0),
    ("quantile_0.25", 1.75), ("quantile_25", 1.75),
    ("mean_minus_std_1", 2.5 - np.std([1, 2, 3, 4])), ("mean_plus_std_0.5", 2.5 + 0.5 * np.std([1, 2, 3, 4])),
    ("mean_quantile_mix_0.25_0.5", 0.5 * 2.5 + 0.5 * 1.75),
    ("mean_quantile_mix_25_50", 0.5 * 2.5 + 0.5 * 1.75),
    ("quantile_plus_std_0.5_-1", 2.5 - np.std([1, 2, 3, 4])),
])
def test_when_spec_is_known_then_value_matches_definition(spec, expected):
    assert aggregate(np.array([4.0, 1, 3, 2]), spec) == pytest.approx(expected)


def test_when_batched_then_each_row_reduced_independently():
    x = np.random.default_rng(0).normal(size=(5, 3, 64))
    out = aggregate(x, "trimmed_mean_15")
    assert out.shape == (5, 3)
    assert out[2, 1] == aggregate(x[2, 1], "trimmed_mean_15")


@pytest.mark.parametrize("spec", ["mode", "trimmed_mean", "trimmed_mean_50", "trimmed_mean_0.5",
                                  "p101", "quantile_150", "mean_minus_std_-1",
                                  "lower_trimmed_mean_100", "mean_quantile_mix_0.5_150", "", "TRIM"])
def test_when_spec_is_unknown_or_out_of_range_then_error_names_it(spec):
    with pytest.raises(AggregationError, match=repr(spec).replace("[", r"\[")):
        parse(spec)


def test_when_no_samples_then_error_names_spec():
    with pytest.raises(AggregationError, match="'median': needs at least one sample"):
        aggregate(np.empty((3, 0)), "median")


def test_when_trimming_the_maximum_share_then_one_sample_is_kept():
    assert aggregate(np.arange(100.0), "lower_trimmed_mean_0.99") == 0.0
    assert aggregate(np.arange(5.0), "trimmed_mean_0.49") == 2.0  # floor(5·0.49)=2 each side


@settings(max_examples=60, deadline=None)
@given(samples_2d)
def test_property_trimmed_mean_0_equals_mean(x):
    np.testing.assert_allclose(aggregate(x, "trimmed_mean_0"), x.mean(axis=-1), rtol=1e-12, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(samples_2d)
def test_property_quantiles_are_monotone(x):
    levels = [aggregate(x, f"quantile_{q}") for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
    for lo, hi in zip(levels, levels[1:], strict=False):
        assert (lo <= hi + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(samples_2d, st.sampled_from([5, 10, 20, 40]))
def test_property_lower_trimmed_le_mean_le_upper_trimmed(x, share):
    lower = aggregate(x, f"lower_trimmed_mean_{share}")
    upper = aggregate(x, f"upper_trimmed_mean_{share}")
    mean = x.mean(axis=-1)
    assert (lower <= mean + 1e-6).all() and (mean <= upper + 1e-6).all()


@settings(max_examples=60, deadline=None)
@given(samples_2d, st.sampled_from(["median", "trimmed_mean_20", "quantile_0.3", "mean"]))
def test_property_aggregate_lies_within_sample_range(x, spec):
    out = aggregate(x, spec)
    assert (x.min(axis=-1) - 1e-6 <= out).all() and (out <= x.max(axis=-1) + 1e-6).all()
