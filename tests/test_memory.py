"""samples_per_batch from free GPU memory (tuner/core/memory.py), with the device's memory faked.

A fake meter stands in for CUDA: the patched model samplers "allocate" ``fixed + paths_in_call
* per_path`` bytes per call (and raise out-of-memory above a limit), so the choice, the probes
and the retries run through the real family code on CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.data import load_bars
from tuner.core.memory import (
    CallCost,
    CudaMemoryMeter,
    MemoryMeter,
    SamplesPerBatch,
    divisor_at_most,
    divisors_descending,
    next_smaller_divisor,
)
from tuner.core.windows import WindowSpec, make_periods


class FakeOutOfMemory(RuntimeError):
    pass


class FakeDevice(MemoryMeter):
    """Memory of a pretend GPU: each sampling call holds ``fixed + windows * paths * per_path``."""

    def __init__(self, budget: float, fixed: int = 1000, per_path: int = 10, limit: float | None = None):
        self.budget, self.fixed, self.per_path, self.limit = budget, fixed, per_path, limit
        self.peak = 0
        self.calls: list[tuple[int, int]] = []  # (count, samples_per_batch) of every call
        self.released = 0

    def allocate(self, windows: int, count: int, per_batch: int) -> None:
        self.calls.append((count, per_batch))
        need = self.fixed + windows * per_batch * self.per_path
        if self.limit is not None and need > self.limit:
            raise FakeOutOfMemory(f"fake device out of memory: {need} > {self.limit}")
        self.peak = max(self.peak, need)

    def budget_bytes(self) -> float:
        return self.budget

    def peak_bytes(self, run) -> int:
        self.peak = 0
        run()
        return self.peak

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, FakeOutOfMemory)

    def release(self) -> None:
        self.released += 1


@pytest.fixture
def validation(write_csv):
    return make_periods(load_bars(write_csv("AAA.csv", random_walk_bars(300, seed=3))), WindowSpec(), 128).validation


def on_fake_device(monkeypatch, family, device: FakeDevice):
    """Route the family's model sampler through ``device`` (same results, pretend memory)."""
    import tuner.core.models.kronos as kronos
    import tuner.core.models.toto as toto

    module, name = (toto, "sample_toto") if family.name == "toto" else (kronos, "sample_kronos")
    real = getattr(module, name)

    def sampler(*args, **kwargs):
        context = args[1] if family.name == "toto" else args[2]
        count = kwargs["num_samples"] if family.name == "toto" else len(kwargs["temperatures"])
        device.allocate(context.shape[0], count, kwargs["samples_per_batch"])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, sampler)
    family.load()
    family.batch_sizer.meter = device


def test_divisor_helpers():
    assert divisors_descending(12) == [12, 6, 4, 3, 2, 1]
    assert divisors_descending(1) == [1]
    assert divisor_at_most(2048, 256) == 256
    assert divisor_at_most(160, 100) == 80
    assert divisor_at_most(15, 4) == 3
    assert divisor_at_most(7, 0) == 1
    assert next_smaller_divisor(192, 192) == 96
    assert next_smaller_divisor(15, 5) == 3
    assert next_smaller_divisor(8, 1) is None


def test_when_two_probes_are_linear_then_cost_recovers_fixed_and_per_path_parts():
    cost = CallCost.from_probes((2, 1000 + 2 * 48), (8, 1000 + 8 * 48))
    assert cost == CallCost(1000, 48)
    # budget 1000 + 100 paths' worth: the largest divisor of 2048 not above 100 is 64
    assert cost.fit(2048, 1000 + 100 * 48) == 64
    assert cost.fit(2048, 10**12) == 2048
    assert cost.fit(2048, 10) == 1  # never below one path per call


def test_when_only_one_probe_fits_then_everything_is_charged_per_path():
    assert CallCost.from_probes((2, 500), (2, 500)) == CallCost(0, 250)


def test_when_no_meter_then_cpu_default_is_the_largest_divisor_up_to_256():
    sizer = SamplesPerBatch()
    calls = []
    sizer.sample(2048, "shape", lambda count, per_batch: calls.append((count, per_batch)))
    sizer.sample(160, "shape", lambda count, per_batch: calls.append((count, per_batch)))
    sizer.sample(160, "shape", lambda count, per_batch: calls.append((count, per_batch)), given=32)
    assert calls == [(2048, 256), (160, 160), (160, 32)]
    assert sizer.stats() == {"choices": 2, "probes": 0, "oom_retries": 0}


def test_when_cpu_call_fails_then_error_is_not_retried():
    sizer = SamplesPerBatch()

    def draw(count, per_batch):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        sizer.sample(64, "shape", draw)


@pytest.mark.parametrize("family_name", ["toto", "kronos_standard", "kronos_ensemble"])
def test_when_trial_leaves_samples_per_batch_unset_then_it_is_the_largest_divisor_that_fits(
        monkeypatch, make_family, validation, family_name):
    params = {k: v for k, v in FAMILY_PARAMS[family_name].items() if k != "samples_per_batch"}
    count_param = make_family(family_name).count_param
    params[count_param] = 48  # more than the first probe: probed
    windows = len(validation)
    # room for the fixed part plus 13 paths per window: the largest divisor of 48 up to 13 is 12
    device = FakeDevice(budget=1000 + windows * 13 * 10 + 5)
    want = make_family(family_name).forecast(validation, {**params, "samples_per_batch": 48}, seed=5)
    family = make_family(family_name)
    on_fake_device(monkeypatch, family, device)

    got = family.forecast(validation, params, seed=5)

    probes, real = device.calls[:2], device.calls[2:]
    assert probes == [(k, k) for k in family.probe_paths]
    assert real == [(48, 12)]
    assert family.batch_sizer.stats() == {"choices": 1, "probes": 2, "oom_retries": 0}
    # a memory knob only: the same as all 48 paths in one call
    np.testing.assert_array_equal(got.samples, want.samples)
    np.testing.assert_array_equal(got.point, want.point)

    # the shape is measured once; a second trial of it does not probe again
    before = len(device.calls)
    family.forecast(validation, {**params, count_param: 24}, seed=6)
    assert device.calls[before:] == [(24, 12)]


def test_when_trial_sets_samples_per_batch_then_it_is_used_without_probing(monkeypatch, make_family, validation):
    device = FakeDevice(budget=10**12)
    family = make_family("toto")
    on_fake_device(monkeypatch, family, device)
    family.forecast(validation, {"num_samples": 64, "aggregate": "mean", "samples_per_batch": 16}, seed=1)
    assert device.calls == [(64, 16)]


def test_when_a_chunk_runs_out_of_memory_then_smaller_divisors_give_the_same_forecast(
        monkeypatch, make_family, validation):
    windows = len(validation)
    # the measured cost says 64 paths fit, but the device only has room for 40 (probes: 8, 32)
    device = FakeDevice(budget=10**12, limit=1000 + windows * 40 * 10)
    params = {"num_samples": 64, "aggregate": "median"}
    want = make_family("toto").forecast(validation, {**params, "samples_per_batch": 64}, seed=2)
    family = make_family("toto")
    on_fake_device(monkeypatch, family, device)

    got = family.forecast(validation, params, seed=2)

    assert device.calls[2:] == [(64, 64), (64, 32)]
    assert family.batch_sizer.stats()["oom_retries"] == 1 and device.released == 1
    np.testing.assert_array_equal(got.samples, want.samples)
    # later calls of that shape start below the chunk that failed
    family.forecast(validation, {**params, "num_samples": 128}, seed=3)
    assert device.calls[-1] == (128, 32)


def test_when_paths_are_few_then_they_are_drawn_in_one_call_without_probing(monkeypatch, make_family, validation):
    device = FakeDevice(budget=10**12)
    family = make_family("kronos_ensemble")
    on_fake_device(monkeypatch, family, device)
    params = {k: v for k, v in FAMILY_PARAMS["kronos_ensemble"].items() if k != "samples_per_batch"}
    family.forecast(validation, {**params, "num_samples": 12}, seed=1)
    assert device.calls == [(12, 12)]
    assert family.batch_sizer.stats()["probes"] == 0


def test_when_kronos_is_probed_then_probes_are_not_below_its_padding():
    from tuner.core.families import family_class
    from tuner.core.models.kronos import MIN_SAMPLE_ROWS

    for name in ("kronos_standard", "kronos_ensemble"):
        assert family_class(name).probe_paths[0] >= MIN_SAMPLE_ROWS


def test_when_probing_then_its_time_is_not_part_of_the_forecast_latency(monkeypatch, make_family, validation):
    import time

    clock = {"now": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])
    device = FakeDevice(budget=10**12)
    real_allocate = device.allocate

    def allocate(windows, count, per_batch):  # a probe takes 100 s, the real call 1 s
        clock["now"] += 100.0 if count == per_batch and count in (8, 32) else 1.0
        real_allocate(windows, count, per_batch)

    device.allocate = allocate
    family = make_family("toto")
    on_fake_device(monkeypatch, family, device)
    got = family.forecast(validation, {"num_samples": 64, "aggregate": "mean"}, seed=1)
    assert family.batch_sizer.stats()["probes"] == 2
    assert got.latency_s == 1.0


def test_when_one_path_does_not_fit_then_the_out_of_memory_error_is_raised(monkeypatch, make_family, validation):
    device = FakeDevice(budget=10**12, limit=10)
    family = make_family("toto")
    family.load()
    family.batch_sizer.meter = device
    with pytest.raises(FakeOutOfMemory):
        family.batch_sizer.sample(4, "shape", lambda count, per_batch: device.allocate(3, count, per_batch),
                                  given=4)
    assert device.calls == [(4, 4), (4, 2), (4, 1)]


def test_when_gpu_is_shared_then_budget_is_capped_at_this_actors_share(monkeypatch):
    import torch

    gib = 1024**3
    state = {"free": 60 * gib, "total": 80 * gib, "allocated": 2 * gib, "reserved": 3 * gib}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], state["total"]))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state["reserved"])

    whole = CudaMemoryMeter("cuda:0", share=1.0, headroom=1.0)
    assert whole.budget_bytes() == 61 * gib  # free + this process's cached-but-unused block
    third = CudaMemoryMeter("cuda:0", share=1 / 3, headroom=1.0)
    assert third.budget_bytes() == pytest.approx(80 * gib / 3 - 2 * gib)  # its share less its weights
    assert CudaMemoryMeter("cuda:0", share=1 / 3).budget_bytes() == pytest.approx(0.8 * (80 * gib / 3 - 2 * gib))
    state["free"] = 1 * gib  # neighbours filled the card: free memory is the limit
    assert third.budget_bytes() == 2 * gib
    assert CudaMemoryMeter("cuda:0", share=0.0, headroom=1.0).share == 1.0  # unset share: whole card


def test_when_a_merged_toto_pass_runs_out_of_memory_then_requests_are_served_one_by_one(
        monkeypatch, make_family, write_csv):
    import tuner.core.models.toto as toto

    batches = [make_periods(load_bars(write_csv(f"S{i}.csv", random_walk_bars(300, seed=i))), WindowSpec(), 128)
               .validation for i in range(3)]
    params = {"num_samples": 16, "aggregate": "mean", "samples_per_batch": 16}
    requests = [(b, params, [7 + i] * len(b)) for i, b in enumerate(batches)]
    plain = make_family("toto")
    plain.load()
    want = [plain.sample(*r) for r in requests]
    real = toto.first_patch_distribution

    def one_window_set_at_most(model, contexts):
        if contexts.shape[0] > len(batches[0]):
            raise FakeOutOfMemory("merged pass too large")
        return real(model, contexts)

    monkeypatch.setattr(toto, "first_patch_distribution", one_window_set_at_most)
    family = make_family("toto")
    family.load()
    device = FakeDevice(budget=10**12)
    family.batch_sizer.meter = device
    got = family.sample_group(requests)
    assert device.released == 1
    for (samples, seconds), expected in zip(got, want, strict=True):
        np.testing.assert_array_equal(samples, expected)
        assert seconds >= 0


def test_when_even_a_probe_runs_out_of_memory_then_paths_are_drawn_one_per_call(monkeypatch, make_family, validation):
    device = FakeDevice(budget=10**12, limit=1000 + len(validation) * 5 * 10)  # room for 5 paths
    family = make_family("toto")
    on_fake_device(monkeypatch, family, device)
    family.forecast(validation, {"num_samples": 64, "aggregate": "mean"}, seed=1)
    assert device.calls == [(8, 8), (64, 1)]
    assert device.released == 1


def test_when_the_large_probe_runs_out_of_memory_then_the_small_one_sizes_the_call(
        monkeypatch, make_family, validation):
    windows = len(validation)
    room = 1000 + windows * 20 * 10  # 20 paths fit
    device = FakeDevice(budget=room, limit=room)
    family = make_family("toto")
    on_fake_device(monkeypatch, family, device)
    family.forecast(validation, {"num_samples": 64, "aggregate": "mean"}, seed=1)
    # charged per path from the 8-path probe alone: (1000 + 8·W·10) / 8 bytes, so 8 paths fit
    assert device.calls == [(8, 8), (32, 32), (64, 8)]


def test_when_probes_are_noisy_then_the_cost_errs_on_the_safe_side():
    # the larger probe read less than the smaller one (a neighbour freed memory meanwhile)
    assert CallCost.from_probes((8, 1000), (32, 900)) == CallCost(0, 29)


def test_when_a_probe_fails_then_its_time_is_not_taken_off_a_later_forecast(monkeypatch, make_family, validation):
    import time

    clock = {"now": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])
    device = FakeDevice(budget=10**12)
    real_allocate = device.allocate

    def allocate(windows, count, per_batch):
        clock["now"] += 1.0
        if count == per_batch == 8:
            clock["now"] += 100.0
            raise ValueError("bad probe input")
        real_allocate(windows, count, per_batch)

    device.allocate = allocate
    family = make_family("toto")
    on_fake_device(monkeypatch, family, device)
    with pytest.raises(ValueError, match="bad probe input"):
        family.forecast(validation, {"num_samples": 64, "aggregate": "mean"}, seed=1)
    got = family.forecast(validation, {"num_samples": 64, "aggregate": "mean", "samples_per_batch": 64}, seed=1)
    assert got.latency_s == 1.0
