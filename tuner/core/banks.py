"""Shared sample banks: reuse sample paths across trials whose draws would be identical.

Trials of a study that differ only in parameters that do not change the draws (Toto's
``aggregate``, its ``samples_per_batch``, and ``num_samples`` up to what is banked) get the same
samples from a fresh draw with the same seed, because every window's random numbers derive from
(seed, symbol, bar time) and, for prefix-stable families, sample ``i`` depends on ``i`` alone.
So the first such trial draws and the later ones only aggregate; results are bit-identical to
fresh draws (tested), and configs are compared on common random numbers, which lowers the noise
of their differences.

Memory is bounded: least-recently-used entries are evicted past ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from tuner.core.windows import WindowBatch

DEFAULT_MAX_BYTES = 512 * 1024**2


def batch_fingerprint(batch: WindowBatch) -> tuple:
    """What identifies a batch's inputs: symbol, period, shape and a hash of every input value.

    Kept on the batch after the first call: a model actor scores every trial of a symbol on the
    same batch objects, and hashing their arrays was a third of a weights-free trial's cost. A
    batch's arrays are never modified after it is cut (``windows.make_periods``).

    The contexts are hashed as what they are cut from (the bars from the first window's start
    to ``end``, and each window's start): W overlapping windows of L bars gathered and hashed
    one by one were ~W times those bars (20 × 256 for 276 at 20 windows), most of a fingerprint's
    cost. Equal series slices and starts give equal contexts."""
    return batch.kept("_fingerprint", _fingerprint)


def _fingerprint(batch: WindowBatch) -> tuple:
    first = int(batch.starts.min()) if len(batch.starts) else batch.end
    digest = hashlib.blake2b(digest_size=16)
    for array in (batch.target_index, batch.starts, batch.series[first:batch.end],
                  batch.series_times[first:batch.end], batch.future_times):
        digest.update(np.ascontiguousarray(array).tobytes())
    return (batch.symbol, batch.period, batch.horizon, (len(batch), batch.length, batch.series.shape[1]),
            digest.hexdigest())


@dataclass
class _Entry:
    samples: np.ndarray  # (W, S)
    sampled_s: float  # wall seconds the draw took (reported as the latency of a fresh forecast)


class SampleBank:
    """A thread-safe LRU of sample arrays.

    Args:
        max_bytes: memory bound of the banked arrays; older entries are evicted past it, and an
            array larger than the bound is never banked.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def lookup(self, key: Hashable, count: int, prefix_ok: bool) -> tuple[np.ndarray, float] | None:
        """The first ``count`` samples banked under ``key`` (prefix-stable families may take fewer
        than were banked; others need the exact count), with the time their draw took."""
        with self._lock:
            entry = self._entries.get(key)
            banked = entry.samples.shape[-1] if entry else 0
            if entry is None or banked < count or (banked != count and not prefix_ok):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.samples[:, :count], entry.sampled_s

    def store(self, key: Hashable, samples: np.ndarray, sampled_s: float) -> None:
        size = samples.nbytes
        if size > self.max_bytes:
            return
        # A read-only copy: the caller keeps its array, and no later trial can alter the bank.
        samples = np.array(samples, copy=True)
        samples.setflags(write=False)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                if old.samples.shape[-1] >= samples.shape[-1]:
                    self._entries[key] = old  # keep the larger bank
                    return
                self.bytes -= old.samples.nbytes
            self._entries[key] = _Entry(samples, sampled_s)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.samples.nbytes
                self.evictions += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                    "entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes}
