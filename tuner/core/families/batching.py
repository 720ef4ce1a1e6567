"""Dynamic batching: concurrent sample requests to one family merged into fewer model calls.

Threads that call :meth:`RequestBatcher.sample` at about the same time (e.g. trials served by
one model actor) join a group: a leader waits ``wait_s`` for company, then hands the whole group
to ``family.sample_group``, which merges what its model allows (Toto: every window of every
request with the same context length in one forward pass) and returns each request's own
samples. Every window's draws depend only on its own context and seed, so merged results equal
unmerged ones (tested).

A thread leads only while its own request is pending (its group may hold others' requests
too): once its own request is done it hands the lead to a waiting thread instead of serving
later groups. Each request's sampling time is
its own share of the group (``sample_group`` attributes shared work), not the group's total, so
latencies and ``max_latency_s`` stay honest under batching.

Errors stay with their request: when a merged call raises, each request of the group is run
again alone, so one bad request (a symbol whose prices overflow float32) fails only its own
caller; the retries count as model calls in :meth:`RequestBatcher.stats`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from tuner.core.windows import WindowBatch


class GroupSampler(Protocol):
    """What the batcher needs of a family (``Family.sample_group``); a protocol, so the family
    base can hold a batcher without the two modules importing each other."""

    def sample_group(self, requests: list[tuple[WindowBatch, Mapping[str, Any], list[int]]]
                     ) -> list[tuple[np.ndarray, float]]: ...


@dataclass
class SampleRequest:
    batch: WindowBatch
    params: dict[str, Any]
    seeds: list[int]
    done: bool = False
    result: np.ndarray | None = None
    seconds: float = 0.0
    error: BaseException | None = None


class RequestBatcher:
    """Groups concurrent :meth:`sample` calls for ``family`` (leader/follower, no extra thread)."""

    def __init__(self, family: GroupSampler, wait_s: float = 0.005, max_requests: int = 32) -> None:
        self.family = family
        self.wait_s = wait_s
        self.max_requests = max_requests
        self._cond = threading.Condition()
        self._pending: list[SampleRequest] = []
        self._leader_active = False
        self.calls = 0
        self.requests = 0

    def sample(self, batch: WindowBatch, params: dict[str, Any], seeds: list[int]) -> tuple[np.ndarray, float]:
        """``(samples, seconds)``: this request's samples and its share of the model time."""
        request = SampleRequest(batch, params, seeds)
        with self._cond:
            self._pending.append(request)
        while True:
            with self._cond:
                while not request.done and self._leader_active:
                    self._cond.wait()
                if request.done:
                    break
                self._leader_active = True
            try:
                time.sleep(self.wait_s)  # let concurrent requests join
                with self._cond:
                    group = self._pending[: self.max_requests]
                    del self._pending[: self.max_requests]
                self._run(group)
            finally:
                with self._cond:
                    self._leader_active = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.result, request.seconds

    def _run(self, group: list[SampleRequest]) -> None:
        self.requests += len(group)
        try:
            try:
                self._call(group)
            except Exception:
                if len(group) == 1:
                    raise
                # One bad request (e.g. a symbol whose prices overflow) must not fail the
                # others merged with it: run each alone, so only the culprit gets its error.
                for r in group:
                    try:
                        self._call([r])
                    except Exception as e:
                        r.error = e
        except BaseException as e:  # every waiter must wake up, with the error
            for r in group:
                if r.result is None:
                    r.error = e
        finally:
            with self._cond:
                for r in group:
                    r.done = True

    def _call(self, group: list[SampleRequest]) -> None:
        self.calls += 1
        results = self.family.sample_group([(r.batch, r.params, r.seeds) for r in group])
        for r, (samples, seconds) in zip(group, results, strict=True):
            r.result, r.seconds = samples, seconds

    def stats(self) -> dict[str, int]:
        return {"model_calls": self.calls, "requests": self.requests}
