from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.banks import SampleBank, batch_fingerprint
from tuner.core.data import load_bars
from tuner.core.windows import WindowSpec, make_periods


@pytest.fixture
def periods(write_csv):
    return make_periods(load_bars(write_csv("AAA.csv", random_walk_bars(300, seed=5))), WindowSpec(), 128)


def test_when_toto_trials_differ_only_in_aggregate_and_fewer_samples_then_bank_equals_fresh_draws(make_family, periods):
    banked = make_family("toto")
    banked.bank = SampleBank()
    first = banked.forecast(periods.validation, {"num_samples": 256, "aggregate": "mean"}, seed=3)
    second = banked.forecast(periods.validation, {"num_samples": 64, "aggregate": "median"}, seed=3)
    fresh = make_family("toto").forecast(periods.validation, {"num_samples": 64, "aggregate": "median"}, seed=3)
    assert not first.from_bank and second.from_bank
    np.testing.assert_array_equal(second.samples, fresh.samples)
    np.testing.assert_array_equal(second.point, fresh.point)
    assert banked.bank.stats()["hits"] == 1 and banked.bank.stats()["misses"] == 1
    # the reported latency is that of a fresh forecast: the banked draw's time, not the lookup's
    assert second.latency_s >= first.latency_s - first.latency_s * 0.5


def test_when_seed_or_period_changes_then_the_bank_misses(make_family, periods):
    family = make_family("toto")
    family.bank = SampleBank()
    params = {"num_samples": 64, "aggregate": "mean"}
    family.forecast(periods.validation, params, seed=1)
    assert not family.forecast(periods.validation, params, seed=2).from_bank
    assert not family.forecast(periods.test, params, seed=1).from_bank
    assert family.forecast(periods.test, params, seed=1).from_bank


def test_when_any_bar_a_window_sees_differs_then_the_fingerprint_differs_and_only_then(write_csv):
    bars = random_walk_bars(300, seed=5)

    def validation(frame, context_length=128):
        return make_periods(load_bars(write_csv("AAA.csv", frame)), WindowSpec(), context_length).validation

    base = validation(bars)
    first_seen = int(base.starts.min())
    assert first_seen > 0  # there are bars no window sees
    unseen = bars.copy()
    unseen.loc[first_seen - 1, "Volume"] += 1.0
    seen = bars.copy()
    seen.loc[first_seen + 3, "Volume"] += 1.0  # inside every window's context up to the last
    later_seen = bars.copy()
    later_seen.loc[base.end - 1, "Volume"] += 1.0  # only the last window's context reaches it
    assert batch_fingerprint(validation(unseen)) == batch_fingerprint(base)
    assert batch_fingerprint(validation(seen)) != batch_fingerprint(base)
    assert batch_fingerprint(validation(later_seen)) != batch_fingerprint(base)
    assert batch_fingerprint(validation(bars, 127)) != batch_fingerprint(base)


def test_when_kronos_sampling_params_change_then_the_bank_misses(make_family, periods):
    family = make_family("kronos_standard")
    family.bank = SampleBank()
    params = FAMILY_PARAMS["kronos_standard"]
    fresh = family.forecast(periods.validation, params, seed=0)
    again = family.forecast(periods.validation, params, seed=0)
    assert again.from_bank
    np.testing.assert_array_equal(again.point, fresh.point)
    assert not family.forecast(periods.validation, {**params, "clip": 1.5}, seed=0).from_bank
    # Kronos draws are not prefix-stable: a smaller sample_count is a miss, not a prefix
    assert not family.forecast(periods.validation, {**params, "sample_count": 8}, seed=0).from_bank


def test_when_the_bank_is_full_then_least_recently_used_entries_are_evicted():
    bank = SampleBank(max_bytes=3 * 8 * 10)
    for key in "abc":
        bank.store(key, np.zeros((1, 10)), 0.1)
    assert bank.lookup("a", 10, False) is not None  # "a" is now the most recent
    bank.store("d", np.zeros((1, 10)), 0.1)
    stats = bank.stats()
    assert stats["evictions"] == 1 and stats["entries"] == 3 and stats["bytes"] == 240
    assert bank.lookup("b", 10, False) is None and bank.lookup("a", 10, False) is not None


def test_when_an_array_exceeds_the_bound_then_it_is_not_banked():
    bank = SampleBank(max_bytes=100)
    bank.store("big", np.zeros((10, 10)), 0.1)
    assert bank.stats()["entries"] == 0 and bank.lookup("big", 10, True) is None


def test_when_fewer_samples_are_banked_than_asked_then_miss_and_the_larger_draw_replaces_it():
    bank = SampleBank()
    bank.store("k", np.arange(4.0)[None], 0.1)
    assert bank.lookup("k", 8, True) is None
    bank.store("k", np.arange(8.0)[None], 0.2)
    samples, seconds = bank.lookup("k", 2, True)
    np.testing.assert_array_equal(samples, [[0.0, 1.0]])
    assert seconds == 0.2


def test_when_samples_are_banked_then_neither_the_caller_nor_a_hit_can_change_the_bank():
    bank = SampleBank(1 << 20)
    drawn = np.arange(12.0).reshape(2, 6)
    bank.store("k", drawn, 0.1)
    drawn[:] = -1  # the caller reuses its array
    hit, _ = bank.lookup("k", 6, prefix_ok=False)
    assert hit.tolist() == np.arange(12.0).reshape(2, 6).tolist()
    with pytest.raises(ValueError, match="read-only"):
        hit[0, 0] = 5.0
