"""How many sample paths go into one model call: ``samples_per_batch`` from free GPU memory.

``samples_per_batch`` never changes a forecast (every path's draws depend only on its seed and
index; tested bit-identical), only memory and speed, so a family may choose it per call:

- a trial that sets it gets exactly that (it must divide the path count);
- on CPU, the largest divisor of the path count up to :data:`CPU_SAMPLES_PER_BATCH` (RAM is
  not the limit there, and bigger calls stop paying off);
- on CUDA, the family measures what the call costs at the shape at hand (two small probe calls,
  read from the allocator's peak statistics: a fixed part plus a part per path) and takes the
  largest divisor of the path count that fits the budget: the device's free memory, capped at
  the actor's GPU share (actors sharing a GPU all see the same free memory), with headroom.

If a call still runs out of memory (fragmentation, a neighbour grew), the family retries it with
the next smaller divisor; the results are the same, only slower.

On a GPU, "the same" holds up to the last bits: CUDA libraries may pick other kernels for other
batch shapes. The chunk is chosen once per (shape, path count) and kept for the actor's life, so
one run is consistent; to pin it across runs and machines, set ``samples_per_batch`` under
``fixed`` in the family's search space.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CPU_SAMPLES_PER_BATCH = 256
"""Paths per model call on CPU when a trial does not say."""

HEADROOM = 0.8
"""Fraction of the budget a chosen call may fill (the allocator fragments; neighbours grow)."""

PROBE_PATHS = (8, 32)
"""Path counts of the two probe calls that split a call's memory into fixed and per-path parts
(families whose sampler pads small calls probe above the padding; see ``TorchFamily``)."""


def divisors_descending(n: int) -> list[int]:
    """Every divisor of ``n``, largest first."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)}, reverse=True)


def divisor_at_most(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is ``<= cap`` (at least 1)."""
    return next((d for d in divisors_descending(n) if d <= cap), 1)


def next_smaller_divisor(n: int, chunk: int) -> int | None:
    """The largest divisor of ``n`` below ``chunk``, or None when ``chunk`` is already 1."""
    return next((d for d in divisors_descending(n) if d < chunk), None)


@dataclass(frozen=True)
class CallCost:
    """Peak device memory of one sampling call: ``fixed_bytes + paths * bytes_per_path``.

    The fixed part is what the call needs whatever its path count (the context encoding, the
    first forward pass); the per-path part grows with the paths decoded together (KV caches,
    logits, the draws themselves). Both are measured, never guessed from the architecture.
    """

    fixed_bytes: int
    bytes_per_path: int

    @classmethod
    def from_probes(cls, small: tuple[int, int], large: tuple[int, int]) -> CallCost:
        """From two ``(paths, peak_bytes)`` measurements (a line through both)."""
        (n1, p1), (n2, p2) = small, large
        if n2 <= n1 or p2 <= p1:  # one usable point (or noise): charge everything per path
            return cls(0, max(1, -(-p2 // n2)))
        per_path = max(1, -(-(p2 - p1) // (n2 - n1)))
        return cls(max(0, p1 - n1 * per_path), per_path)

    def fit(self, n_paths: int, budget_bytes: float) -> int:
        """The largest divisor of ``n_paths`` whose call fits ``budget_bytes`` (at least 1)."""
        room = (budget_bytes - self.fixed_bytes) // self.bytes_per_path
        return divisor_at_most(n_paths, max(1, int(room)))


class MemoryMeter(ABC):
    """What the device says about its memory (CUDA in production; fakes in tests)."""

    @abstractmethod
    def budget_bytes(self) -> float:
        """Bytes one sampling call may use now, headroom already taken off."""

    @abstractmethod
    def peak_bytes(self, run: Callable[[], Any]) -> int:
        """Run ``run()`` and return the most memory it held above what was held before."""

    @abstractmethod
    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` means the device ran out of memory."""

    def release(self) -> None:  # noqa: B027 - optional hook: a device with no cache has nothing to do
        """Hand cached blocks back after an out-of-memory error."""


class CudaMemoryMeter(MemoryMeter):
    """CUDA memory of one device, capped at this actor's ``share`` of the GPU.

    Free memory is read with ``torch.cuda.mem_get_info`` (all processes) plus what this
    process's caching allocator holds unused; the cap is ``share`` of the card less what this
    process already holds (its weights), so fractional-GPU actors do not take each other's room.
    """

    def __init__(self, device: Any, share: float = 1.0, headroom: float = HEADROOM) -> None:
        import torch

        self.device = torch.device(device)
        self.share = min(max(float(share), 0.0), 1.0) or 1.0  # 0 = not set by Ray: whole card
        self.headroom = headroom

    def budget_bytes(self) -> float:
        import torch

        free, total = torch.cuda.mem_get_info(self.device)
        held = torch.cuda.memory_allocated(self.device)
        cached_unused = torch.cuda.memory_reserved(self.device) - held
        usable = free + cached_unused
        mine = total * self.share - held
        return self.headroom * max(0.0, min(usable, mine))

    def peak_bytes(self, run: Callable[[], Any]) -> int:
        import torch

        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        run()
        torch.cuda.synchronize(self.device)
        return max(0, torch.cuda.max_memory_allocated(self.device) - before)

    def is_out_of_memory(self, error: BaseException) -> bool:
        import torch

        return isinstance(error, torch.cuda.OutOfMemoryError)

    def release(self) -> None:
        import torch

        torch.cuda.empty_cache()


class SamplesPerBatch:
    """Chooses ``samples_per_batch`` for calls whose trial did not set it (see module doc).

    ``meter`` None means CPU: the fixed cap. Costs are measured once per ``shape`` (e.g. window
    count, context length, horizon) and the chunk chosen for a (shape, path count) is kept, so
    an actor probes each shape once and runs it the same way every time; a shape that ran out
    of memory is capped below the chunk that failed from then on. Path counts up to the first
    probe size are drawn in one call without probing (small calls are what probes cost).
    """

    def __init__(self, meter: MemoryMeter | None = None, cpu_cap: int = CPU_SAMPLES_PER_BATCH,
                 probe_paths: tuple[int, int] = PROBE_PATHS) -> None:
        self.meter = meter
        self.cpu_cap = cpu_cap
        self.probe_paths = probe_paths
        self.costs: dict[Hashable, CallCost] = {}
        self.chosen: dict[tuple[Hashable, int], int] = {}
        self.ceilings: dict[Hashable, int] = {}
        self.probes = 0
        self.choices = 0
        self.oom_retries = 0
        self._measuring = threading.Lock()  # probes read process-wide peak statistics
        self._local = threading.local()

    def sample(self, n_paths: int, shape: Hashable, draw: Callable[[int, int], Any],
               given: int | None = None) -> Any:
        """``draw(n_paths, chunk)`` with ``given`` or a chosen chunk, retried with smaller
        divisors of ``n_paths`` when the device runs out of memory.

        ``draw(count, per_batch)`` must run the same call with ``count`` paths, ``per_batch``
        at a time; probes call it with ``count == per_batch`` small.
        """
        chunk = given if given is not None else self.choose(n_paths, shape, draw)
        while True:
            try:
                return draw(n_paths, chunk)
            except Exception as error:
                smaller = next_smaller_divisor(n_paths, chunk)
                if self.meter is None or not self.meter.is_out_of_memory(error) or smaller is None:
                    raise
            self.meter.release()  # outside the except block: the traceback no longer pins tensors
            self.oom_retries += 1
            self.ceilings[shape] = min(self.ceilings.get(shape, chunk), smaller)
            self.chosen = {k: v for k, v in self.chosen.items() if k[0] != shape}
            log.warning("out of memory with samples_per_batch=%d; retrying with %d", chunk, smaller)
            chunk = smaller

    def choose(self, n_paths: int, shape: Hashable, draw: Callable[[int, int], Any]) -> int:
        """The chunk for ``n_paths`` paths of ``shape`` (probing the shape on first sight)."""
        self.choices += 1
        if self.meter is None:
            return divisor_at_most(n_paths, self.cpu_cap)
        ceiling = self.ceilings.get(shape, n_paths)
        if n_paths <= self.probe_paths[0]:
            return divisor_at_most(n_paths, ceiling)
        chunk = self.chosen.get((shape, n_paths))
        if chunk is None:
            cost = self.costs.get(shape)
            if cost is None:
                cost = self.costs[shape] = self._measure(draw)
            chunk = divisor_at_most(n_paths, min(cost.fit(n_paths, self.meter.budget_bytes()), ceiling))
            self.chosen[(shape, n_paths)] = chunk
        return chunk

    def _measure(self, draw: Callable[[int, int], Any]) -> CallCost:
        start = time.perf_counter()
        points: list[tuple[int, int]] = []
        try:
            with self._measuring:
                for k in self.probe_paths:
                    self.probes += 1
                    points.append((k, self.meter.peak_bytes(lambda k=k: draw(k, k))))
        except Exception as error:
            if not self.meter.is_out_of_memory(error):
                raise
        finally:
            self._local.probe_s = getattr(self._local, "probe_s", 0.0) + time.perf_counter() - start
        if len(points) < len(self.probe_paths):  # a probe ran out of memory
            self.meter.release()
            log.warning("a memory probe ran out of memory; sizing from %s", points or "nothing")
            if not points:
                return CallCost(0, 1 << 62)  # fits nothing: one path per call
            return CallCost.from_probes(points[0], points[0])
        cost = CallCost.from_probes(points[0], points[-1])
        log.info("sampling call cost measured: %d fixed + %d per path (bytes)",
                 cost.fixed_bytes, cost.bytes_per_path)
        return cost

    def take_probe_seconds(self) -> float:
        """Seconds this thread spent probing since the last call (kept out of latencies)."""
        seconds = getattr(self._local, "probe_s", 0.0)
        self._local.probe_s = 0.0
        return seconds

    def stats(self) -> dict[str, int]:
        """Counters for the experiment summary."""
        return {"choices": self.choices, "probes": self.probes, "oom_retries": self.oom_retries}
