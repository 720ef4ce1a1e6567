"""Dynamic batching: concurrent sample requests to one family merged into fewer model calls.

Threads that call :meth:`RequestBatcher.sample` at about the same time (e.g. trials served by
one model actor) join a group: the first waits ``wait_s`` for company, then hands the whole group
to ``family.sample_group``, which merges what its model allows (Toto: every window of every
request with the same context length in one forward pass) and returns each request's own
samples. Every window's draws depend only on its own context and seed, so merged results equal
unmerged ones (tested).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tuner.forecasters.base import Family
    from tuner.windows import WindowBatch


@dataclass
class SampleRequest:
    batch: WindowBatch
    params: dict[str, Any]
    seeds: list[int]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class RequestBatcher:
    """Groups concurrent :meth:`sample` calls for ``family`` (leader/follower, no extra thread)."""

    def __init__(self, family: Family, wait_s: float = 0.005, max_requests: int = 32) -> None:
        self.family = family
        self.wait_s = wait_s
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._pending: list[SampleRequest] = []
        self._leader_active = False
        self.calls = 0
        self.requests = 0

    def sample(self, batch: WindowBatch, params: dict[str, Any], seeds: list[int]) -> np.ndarray:
        request = SampleRequest(batch, params, seeds)
        with self._lock:
            self._pending.append(request)
            lead = not self._leader_active
            if lead:
                self._leader_active = True
        if lead:
            time.sleep(self.wait_s)  # let concurrent requests join
            while True:
                with self._lock:
                    group, self._pending = self._pending[: self.max_requests], self._pending[self.max_requests :]
                    if not group:
                        self._leader_active = False
                        break
                self._run(group)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _run(self, group: list[SampleRequest]) -> None:
        self.calls += 1
        self.requests += len(group)
        try:
            results = self.family.sample_group([(r.batch, r.params, r.seeds) for r in group])
            for r, out in zip(group, results, strict=True):
                r.result = out
        except BaseException as e:  # every waiter must wake up, with the error
            for r in group:
                r.error = e
        finally:
            for r in group:
                r.done.set()

    def stats(self) -> dict[str, int]:
        return {"model_calls": self.calls, "requests": self.requests}
