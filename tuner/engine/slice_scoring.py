"""Re-scoring weights-free studies on every CPU: Ray tasks over the window slices.

After tuning, each study's winner and default, and each family's pooled config, run again on
both periods (:func:`tuner.engine.experiment._score_winners`, ``_score_pooled``). A model
family's runs go to its model actors, where its weights are loaded. A weights-free family's
(``bootstrap_returns``) need no weights, and on a small machine its one actor re-scored every
study while the other CPUs idled (10,000 × 10 on 2 cores: 90 s of one core, measured). So its
actors are released once tuning ends and its runs go to tasks, a chunk of one window slice's
runs each, on every CPU of the cluster. A task evaluates them in a
:class:`~tuner.engine.actors.ModelServer` over its slice's windows (the same code, seed and
sample-bank size as the actor) and puts the results in the run's result store, as an actor
does; the driver gets their briefs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuner.core.models.weights import FAMILY_MODEL, WeightsSource
from tuner.engine.window_slices import UniverseWindows

SLICE_CHUNK = 200
"""Runs per task: a task's share of a slice, small enough that the last task to finish is short."""
IN_FLIGHT_PER_CPU = 2
"""Tasks submitted at once per CPU; the rest wait in the driver until one finishes."""


def weights_free(families: Any) -> frozenset[str]:
    """Of ``families``, those that load no weights (their runs can go to :class:`SliceScorer`)."""
    return frozenset(f for f in families if f not in FAMILY_MODEL)


@dataclass(frozen=True)
class SliceScorer:
    """Runs of weights-free families on tasks over the window slices.

    Attributes:
        windows: the run's windows (one object-store reference per slice).
        families: the families whose runs go here (:func:`weights_free`).
        weights, device, bank_max_bytes: as the family's model actors are built with.
        task_cpus: the CPUs each task asks for: at most what one released actor held, so that
            a task always fits where the other families' actors still hold theirs.
        cpus: the CPUs the tasks may use (bounds the tasks in flight).
    """

    windows: UniverseWindows
    families: frozenset[str]
    weights: WeightsSource | None
    device: str
    bank_max_bytes: int
    task_cpus: float
    cpus: float

    def run(self, calls: Mapping[Any, tuple[tuple[str, str], str, tuple]],
            on_done: Callable[[int, int], None] | None = None) -> dict:
        """``calls``: key → ((symbol, family), ``evaluate_into``, its arguments), as
        :func:`tuner.engine.experiment._on_live_actors` takes them, every family in
        :attr:`families`. Returns key → brief, in ``calls``' order; a task's error is raised."""
        import ray

        chunks: list[tuple[str, int, list]] = []
        filling: dict[tuple[str, int], list] = {}
        for key, ((symbol, family), method, _) in calls.items():
            if method != "evaluate_into" or family not in self.families:
                raise ValueError(f"{key!r}: slice tasks run evaluate_into of {sorted(self.families)}, "
                                 f"not {method} of {family}")
            where = (family, self.windows.slice_of[symbol])
            chunk = filling.setdefault(where, [])
            chunk.append(key)
            if len(chunk) >= SLICE_CHUNK:
                chunks.append((*where, filling.pop(where)))
        chunks.extend((*where, chunk) for where, chunk in filling.items())
        task = ray.remote(score_chunk).options(num_cpus=self.task_cpus)
        limit = IN_FLIGHT_PER_CPU * max(1, math.ceil(self.cpus / max(self.task_cpus, 0.1)))
        waiting, pending, results = iter(chunks), {}, {}
        while True:
            while len(pending) < limit and (chunk := next(waiting, None)) is not None:
                family, index, keys = chunk
                ref = task.remote(family, self.weights, self.device, self.bank_max_bytes,
                                  self.windows.refs[index], [calls[k][2] for k in keys])
                pending[ref] = keys
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                results.update(zip(pending.pop(ref), ray.get(ref), strict=True))
            if on_done is not None:
                on_done(len(results), len(calls))
        return {key: results[key] for key in calls}


def score_chunk(family: str, weights: WeightsSource | None, device: str, bank_max_bytes: int,
                windows: Mapping[str, Mapping[str, Any]], calls: list[tuple]) -> list:
    """One task: ``calls`` (``ModelServer.evaluate_into``'s arguments) on ``family``'s windows
    of one slice; returns their briefs (the results went to the store)."""
    from tuner.engine.actors import ModelServer

    server = ModelServer(family, weights, windows[family], device=device, threads=1,
                         bank_max_bytes=bank_max_bytes, batch_wait_s=0.0)
    return server.call_many("evaluate_into", calls)
