from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.data import load_bars
from tuner.core.errors import DataError
from tuner.core.families.batching import RequestBatcher
from tuner.core.windows import WindowSpec, make_periods


@pytest.fixture
def batches(write_csv):
    out = []
    for i, name in enumerate(["AAA", "BBB", "CCC"]):
        periods = make_periods(load_bars(write_csv(f"{name}.csv", random_walk_bars(300, seed=i))), WindowSpec(), 128)
        out += [periods.validation, periods.test]
    return out


def run_concurrently(family, batches, params_list):
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(batches))

    def work(i):
        barrier.wait()
        results[i] = family.forecast(batches[i], params_list[i], seed=11)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[i] for i in range(len(batches))]


@pytest.mark.parametrize("family_name", ["toto", "kronos_ensemble", "bootstrap_returns"])
def test_when_concurrent_requests_are_batched_then_results_equal_unbatched(make_family, batches, family_name):
    base = FAMILY_PARAMS[family_name]
    params = [dict(base, **({"num_samples": 32 * (1 + i % 3)} if family_name == "toto" else {}))
              for i in range(len(batches))]
    batched = make_family(family_name)
    batched.batcher = RequestBatcher(batched, wait_s=0.05)
    merged = run_concurrently(batched, batches, params)
    plain = make_family(family_name)
    for batch, p, got in zip(batches, params, merged, strict=True):
        want = plain.forecast(batch, p, seed=11)
        np.testing.assert_array_equal(got.samples, want.samples)
        np.testing.assert_array_equal(got.point, want.point)
    stats = batched.batcher.stats()
    assert stats["requests"] == len(batches)
    assert stats["model_calls"] < len(batches)  # some requests were merged


def test_when_a_merged_request_fails_then_its_caller_gets_the_error(make_family, batches):
    family = make_family("toto")
    family.load()
    family.batcher = RequestBatcher(family)
    with pytest.raises(Exception, match="num_samples"):
        family.batcher.sample(batches[0], {"num_samples": 0, "samples_per_batch": 1}, [1] * len(batches[0]))
    # the batcher still works afterwards
    ok = family.forecast(batches[0], FAMILY_PARAMS["toto"], seed=1)
    assert ok.samples.shape == (20, 64)


class RecordingFamily:
    """Stands in for a family: each request's samples are its owner's id; records who ran what."""

    def __init__(self):
        self.finished: set[str] = set()
        self.runs: list[tuple[str, list[str], bool]] = []  # (runner, owners, runner already done)
        self.lock = threading.Lock()

    def sample_group(self, requests):
        runner = threading.current_thread().name
        owners = [params["owner"] for _, params, _ in requests]
        with self.lock:
            self.runs.append((runner, owners, runner in self.finished))
        time.sleep(0.01)
        with self.lock:
            self.finished.update(owners)
        return [(np.full(2, float(params["id"])), 0.5 + params["id"]) for _, params, _ in requests]


def test_when_a_leader_is_done_then_it_hands_over_and_each_request_gets_its_own_time():
    family = RecordingFamily()
    batcher = RequestBatcher(family, wait_s=0.02, max_requests=1)  # one request per group
    results = {}
    barrier = threading.Barrier(6)

    def work(i):
        barrier.wait()
        results[i] = batcher.sample(None, {"owner": f"t{i}", "id": i}, [])

    threads = [threading.Thread(target=work, args=(i,), name=f"t{i}") for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        samples, seconds = results[i]
        assert samples.tolist() == [i, i] and seconds == 0.5 + i
    assert sorted(o for _, owners, _ in family.runs for o in owners) == [f"t{i}" for i in range(6)]
    # no thread ran a group after its own request was done (it would delay its own trial)
    assert not any(done for _, _, done in family.runs), family.runs


def concurrent_samples(batcher, requests):
    """Each ``(batch, params, seeds)`` sampled from its own thread; (samples, error) per request."""
    out: dict[int, tuple] = {}
    barrier = threading.Barrier(len(requests))

    def work(i):
        barrier.wait()
        try:
            out[i] = (batcher.sample(*requests[i])[0], None)
        except Exception as e:  # the caller's own error is what the test checks
            out[i] = (None, e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [out[i] for i in range(len(requests))]


class PickyFamily(RecordingFamily):
    """A merged call fails as a whole when any of its requests is marked bad."""

    def sample_group(self, requests):
        out = super().sample_group(requests)
        bad = [params["owner"] for _, params, _ in requests if params.get("bad")]
        if bad:
            raise DataError(f"{bad[0]}: prices beyond float32 range")
        return out


def test_when_a_merged_call_fails_then_only_the_bad_request_gets_the_error():
    family = PickyFamily()
    batcher = RequestBatcher(family, wait_s=0.2, max_requests=3)
    requests = [(None, {"owner": "good1", "id": 1}, []), (None, {"owner": "bad", "id": 2, "bad": True}, []),
                (None, {"owner": "good3", "id": 3}, [])]
    (good1, error1), (bad, error2), (good3, error3) = concurrent_samples(batcher, requests)
    assert any(len(owners) > 1 for _, owners, _ in family.runs), family.runs  # they were merged
    assert error1 is None and good1.tolist() == [1.0, 1.0]
    assert error3 is None and good3.tolist() == [3.0, 3.0]
    assert bad is None and str(error2) == "bad: prices beyond float32 range"


def test_when_a_toto_request_with_overflowing_prices_is_merged_then_the_good_one_still_gets_samples(
        make_family, batches):
    family = make_family("toto")
    family.load()
    family.batcher = RequestBatcher(family, wait_s=0.2)
    good = batches[0]
    huge = dataclasses.replace(batches[2], series=batches[2].series * 1e300)  # inf in float32
    params = family.check_params(FAMILY_PARAMS["toto"])
    seeds = [1] * len(good)
    (samples, error), (_, bad_error) = concurrent_samples(
        family.batcher, [(good, params, seeds), (huge, params, seeds)])
    assert error is None
    np.testing.assert_array_equal(samples, family.sample(good, params, seeds))
    assert isinstance(bad_error, DataError)
    assert str(bad_error) == "context holds NaN or infinite closes; Toto needs finite prices"
