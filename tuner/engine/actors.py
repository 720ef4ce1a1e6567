"""Model actors: long-lived Ray actors that load a family's weights once and evaluate trials.

Design ("model-server actor, trials call it"): each family gets a pool of :class:`ModelServer`
actors holding the model and every symbol's windows; Tune trials are light CPU-only functions
that call an actor and report its scores. The GPU share is reserved by the actor, where the
model work runs; trials reserve no GPU, so nothing is double-booked. Actors are owned by the
driver (not detached): when the driver exits or dies, they and their GPUs go with it.

Why this design over "fractional-GPU trial actors with a per-process model cache": loads are
exactly one per actor whatever Tune does with its trial actors; several studies share one
loaded model; and the actor is where cross-trial work (sample banks, batching) can live.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.core.banks import DEFAULT_MAX_BYTES, SampleBank
from tuner.core.families.base import Family
from tuner.core.families.batching import RequestBatcher
from tuner.core.families.registry import family_class
from tuner.core.families.torch_family import TorchFamily
from tuner.core.metrics import Scores
from tuner.core.models import registry
from tuner.core.models.weights import CHECKPOINT_PARAM, WeightsSource
from tuner.core.trial import run_trial
from tuner.core.windows import Periods
from tuner.engine.pooled_study import POOLED_SYMBOL, pooled_metrics
from tuner.engine.result_store import ResultBrief

log = logging.getLogger(__name__)


def build_family(name: str, weights: WeightsSource | None, device: str | None,
                 autocast_dtype: str | None = None, gpu_share: float = 1.0,
                 checkpoint: str | None = None) -> Family:
    cls = family_class(name)
    if issubclass(cls, TorchFamily):
        return cls(weights=weights, device=device, autocast_dtype=autocast_dtype, gpu_share=gpu_share,
                   checkpoint=checkpoint)
    return cls(weights=weights, device=device)


def group_key(family: str, checkpoint: str | None = None) -> str:
    """The actors a trial goes to: its family's, or with several sizes its size's
    (``toto2@22m``): each size is held by its own actors, so no trial reloads weights."""
    return family if checkpoint is None else f"{family}@{checkpoint}"


def trial_group(family: str, params: Mapping[str, Any]) -> str:
    """:func:`group_key` of a trial config (its ``checkpoint``, when it names one)."""
    return group_key(family, params.get(CHECKPOINT_PARAM))


class ModelServer:
    """One family's model, loaded once per actor process, serving trials of every symbol.

    Args:
        family: the family name.
        weights: checkpoint sources.
        periods: symbol → validation/test windows for this family's context length.
        device: ``auto`` (CUDA when Ray gave this actor a GPU), ``cpu`` or ``cuda``.
        autocast_dtype: ``bf16``/``fp16`` on CUDA, None for fp32.
        threads: torch CPU threads.
        bank_max_bytes: sample-bank size limit (0 = no bank).
        batch_wait_s: how long a request waits for others to merge with (0 = no batching).
        gpu_share: the fraction of its GPU Ray gave this actor; ``samples_per_batch`` is sized
            to fit in it (:mod:`tuner.core.memory`).
        ledger: ``(namespace, name)`` of the run's :class:`LoadLedger`, told of every load
            (a restarted actor loads again; the ledger counts it).
        name: this actor's name (for the ledger).
        checkpoint: the size this actor holds when the family searches several (None: its one
            checkpoint); ``weights`` then lists the sizes and the actor loads this one's.

    ``periods`` may be ``(namespace, name)`` of a :class:`WindowStore`: the actor fetches its
    windows itself, so its constructor arguments hold no object-store reference (Ray warns that
    a restart fails when those go out of scope) and a restarted actor fetches them again.
    """

    def __init__(self, family: str, weights: WeightsSource | None, periods: Mapping[str, Periods],
                 device: str = "auto", autocast_dtype: str | None = None, threads: int = 1,
                 bank_max_bytes: int = DEFAULT_MAX_BYTES, batch_wait_s: float = 0.005,
                 gpu_share: float = 1.0, ledger: tuple[str, str] | None = None, name: str = "",
                 checkpoint: str | None = None) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.family_name = family
        if isinstance(periods, tuple):
            import ray

            refs = ray.get(_actor(*periods).get.remote())
            periods = {symbol: p for ref in refs for symbol, p in ray.get(ref)[family].items()}
        self.periods = dict(periods)
        self.checkpoint = checkpoint
        self.family = build_family(family, weights, device, autocast_dtype, gpu_share, checkpoint)
        # Trials of this actor share sample banks, and concurrent ones are merged into fewer
        # model calls (the actor runs several evaluate() calls at once in threads).
        self.family.bank = SampleBank(bank_max_bytes) if bank_max_bytes > 0 else None
        # Only a family that can merge requests gains from waiting for company (Toto); for the
        # others the wait is pure latency on every trial.
        merges = type(self.family).sample_group is not Family.sample_group
        self.family.batcher = (RequestBatcher(self.family, wait_s=batch_wait_s)
                               if batch_wait_s > 0 and merges else None)
        start = time.perf_counter()
        self.family.load()
        self.load_s = time.perf_counter() - start
        self.calls = 0
        self.busy_s = 0.0
        self._lock = threading.Lock()
        log.info("actor %s loaded %s in %.1fs on %s", family, self.family.weights_id, self.load_s, device)
        if ledger is not None:
            _actor(*ledger).record.remote(name, os.getpid(), registry.load_count())

    def info(self) -> dict[str, Any]:
        """Where the actor runs and what it loaded (the driver logs and records this)."""
        import warnings

        import ray

        with warnings.catch_warnings():  # Ray deprecates an attribute this property reads
            warnings.simplefilter("ignore")
            restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        return {
            "family": self.family_name,
            **({"checkpoint": self.checkpoint} if self.checkpoint is not None else {}),
            "node": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.family.device),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "weights": self.family.weights_id,
            "tiny_weights": self.family.tiny_weights,
            "model_loads": registry.load_count(),
            "load_s": self.load_s,
            "restarted": restarted,
            "calls": self.calls,
            "busy_s": self.busy_s,
            "bank": self.family.bank.stats() if self.family.bank else None,
            "batching": self.family.batcher.stats() if self.family.batcher else None,
            "samples_per_batch": (self.family.batch_sizer.stats()
                                  if isinstance(self.family, TorchFamily) else None),
        }

    def evaluate(self, symbol: str, params: Mapping[str, Any], seed: int,
                 with_test: bool = False, validation: Sequence[float] | None = None) -> dict[str, Any]:
        """Run one trial; returns ``TrialResult.to_dict()`` plus where and how long it ran.
        ``validation``: the trial's own validation scores (:meth:`Scores.packed
        <tuner.core.metrics.Scores.packed>`), when it has them: that period is not forecast
        again (:func:`~tuner.core.trial.run_trial`)."""
        start = time.perf_counter()
        periods = self.periods.get(symbol)
        if periods is None:
            raise KeyError(f"actor for {self.family_name} has no windows for symbol {symbol!r}")
        result = run_trial(self.family, params, periods, seed, with_test=with_test,
                           validation=None if validation is None else Scores.unpacked(validation))
        elapsed = time.perf_counter() - start
        with self._lock:  # evaluate() runs in several threads at once
            self.calls += 1
            self.busy_s += elapsed
        return {"result": result.to_dict(), "actor_s": elapsed, **_where()}

    def evaluate_many(self, requests: list[tuple[str, Mapping[str, Any]]], seed: int,
                      pooled_symbols: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Run several tuning trials (validation only), one after another in this call; one
        failing does not fail the others: each outcome is ``{"result", "actor_s", ...}`` or
        ``{"error": "<Type>: <message>"}``. ``pooled_symbols``: what a pooled trial is tuned on."""
        outcomes = []
        for symbol, params in requests:
            try:
                if symbol == POOLED_SYMBOL:
                    outcomes.append(self.evaluate_pooled(params, seed, pooled_symbols))
                    continue
                outcomes.append(self.evaluate(symbol, params, seed))
            except Exception as e:  # one bad trial (params, symbol data) must not fail its pack
                outcomes.append({"error": f"{type(e).__name__}: {e}"[:2000]})
        return outcomes

    def evaluate_pooled(self, params: Mapping[str, Any], seed: int,
                        symbols: tuple[str, ...] | None = None) -> dict[str, Any]:
        """One trial of the family's pooled study (:mod:`tuner.engine.pooled_study`): ``params``
        on the validation windows of ``symbols`` (None: every symbol of the actor); its value is
        the mean over them of their validation pct_return_mae. Any symbol failing fails the trial."""
        start = time.perf_counter()
        chosen = sorted(self.periods) if symbols is None else sorted(symbols)
        missing = [s for s in chosen if s not in self.periods]
        if missing:
            raise KeyError(f"actor for {self.family_name} has no windows for pooled symbols {missing[:5]}")
        per_symbol = {symbol: run_trial(self.family, params, self.periods[symbol], seed).to_dict()
                      for symbol in chosen}
        first = next(iter(per_symbol.values()))
        result = {"symbol": POOLED_SYMBOL, "model_type": self.family_name, "config": first["config"],
                  "seed": seed, "weights": first["weights"], "tiny_weights": first["tiny_weights"],
                  **pooled_metrics(per_symbol)}
        elapsed = time.perf_counter() - start
        with self._lock:
            self.calls += 1
            self.busy_s += elapsed
        return {"result": result, "actor_s": elapsed, **_where()}

    def evaluate_into(self, symbol: str, params: Mapping[str, Any], seed: int, with_test: bool,
                      store: tuple[str, str], slot: tuple,
                      validation: Sequence[float] | None = None) -> ResultBrief:
        """``evaluate``, its result put in the run's
        :class:`~tuner.engine.result_store.ResultStore` (``store``: its namespace and name)
        under ``slot``, not sent back: what comes back is the result's brief."""
        return self._evaluate_many_into([(symbol, params, seed, with_test, store, slot, validation)])[0]

    def _evaluate_many_into(self, calls: list[tuple]) -> list[ResultBrief]:
        import ray

        items, briefs = [], []
        for symbol, params, seed, with_test, _, slot, validation in calls:
            result = self.evaluate(symbol, params, seed, with_test, validation)["result"]
            items.append((slot, result))
            briefs.append(ResultBrief.of(result))
        store = calls[0][4]  # every call of a run names the same store
        ray.get(_actor(*store).put_many.remote(items))  # waited for: the brief means it is stored
        return briefs

    def call_many(self, method: str, calls: list[tuple]) -> list[Any]:
        """Several calls of ``method`` (``evaluate``, ``evaluate_into`` or ``point_forecasts``)
        in one actor call, one after another: for weights-free families, whose work costs less
        than a Ray call (``evaluate_into``'s results go to the store in one call)."""
        if method == "evaluate_into":
            return self._evaluate_many_into(calls)
        if method not in ("evaluate", "point_forecasts"):
            raise ValueError(f"call_many runs evaluate, evaluate_into or point_forecasts, not {method!r}")
        return [getattr(self, method)(*args) for args in calls]

    def point_forecasts(self, symbol: str, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """The point forecasts of one config on both periods (for blend/regime candidates)."""
        periods = self.periods[symbol]
        return {period: self.family.forecast(getattr(periods, period), params, seed).point
                for period in ("validation", "test")}


def _where() -> dict[str, Any]:
    """The node (IP and Ray node id: several nodes may share an IP) and process of the caller."""
    import ray

    return {"node": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid()}


WEIGHTS_FREE_CHUNK = 64
"""Optuna trials (or re-scoring calls) per actor call for weights-free families (a call costs
more than their work). Smaller calls with twice the packs in flight, so that packs overlap more,
measured slower on 2 cores (33.7 vs 18.6 ms per trial at 100 studies x 10): more processes
competing."""


@dataclass(frozen=True)
class Routing:
    """What a trial needs to find its family's actors (names, not handles: names survive a
    driver restart, where new actors take the same role under new names).

    Attributes:
        namespace: Ray namespace of the actors.
        actors: actor group (:func:`group_key`: the family, or ``family@size``) → actor names.
        seed: the experiment seed every trial runs with.
        chunk: family → Optuna trials sent to an actor in one call: many for a weights-free
            family (a call costs more than its work), one for model families (each result is
            reported, and saved, as soon as it exists).
        board: name of the :class:`PackBoard` actor holding the packs (None: packs travel in
            the Tune config itself).
        pooled_symbols: family → the symbols its pooled study is tuned on (missing: all the
            actor's symbols; :func:`tuner.engine.pooled_study.tuning_symbols`).
    """

    namespace: str
    actors: Mapping[str, tuple[str, ...]]
    seed: int
    chunk: Mapping[str, int] = field(default_factory=dict)
    board: str | None = None
    pooled_symbols: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def pick(self, family: str, key: str, params: Mapping[str, Any] | None = None) -> str:
        import zlib

        group = trial_group(family, params or {})
        if group not in self.actors:
            raise KeyError(f"no model actors for {group} (actor groups: {', '.join(sorted(self.actors))})")
        names = self.actors[group]
        return names[zlib.crc32(key.encode()) % len(names)]


class PackBoard:
    """The packs in flight, by Tune trial id: the searcher puts a pack here and the Tune trial
    carries only its id, so Tune's copies of the config (trial state, evaluated params,
    experiment tag, last result: four per trial, in memory and in every checkpoint) stay a few
    bytes whatever the pack size. A pack stays until its Tune trial completes (Tune may retry
    a failed trial with the same config)."""

    def __init__(self) -> None:
        self.packs: dict[str, list[dict[str, Any]]] = {}
        self.started: set[str] = set()

    def put(self, pack_id: str, pack: list[dict[str, Any]]) -> None:
        self.packs[pack_id] = pack

    def get(self, pack_id: str) -> list[dict[str, Any]]:
        if pack_id not in self.packs:
            raise KeyError(f"pack {pack_id} is not on the board (its searcher is gone?)")
        return self.packs[pack_id]

    def start(self, pack_id: str) -> list[dict[str, Any]]:
        """``get``, noting that the pack's Tune trial now runs (see :func:`pack_trial`)."""
        pack = self.get(pack_id)
        self.started.add(pack_id)
        return pack

    def not_started(self) -> int:
        """Packs on the board whose Tune trial has not started yet."""
        return len(self.packs.keys() - self.started)

    def drop(self, pack_id: str) -> None:
        self.packs.pop(pack_id, None)
        self.started.discard(pack_id)

    def size(self) -> int:
        return len(self.packs)


class WindowStore:
    """Every family's windows, as references to them in the object store: each object holds
    family → symbol → Periods for a slice of the symbols (the driver owns the objects; the store
    only hands the references to model actors, at start and at a restart)."""

    def __init__(self) -> None:
        self.refs: list = []

    def put(self, refs: list) -> None:
        self.refs = refs  # [ObjectRef, ...]: in a list, so Ray passes references, not values

    def get(self) -> list:
        return self.refs


class LoadLedger:
    """Every model actor start of a run: (actor name, pid, model loads). A restarted actor is a
    new process that loads its weights again, which the actor itself cannot count (its counters
    start from zero), so each start reports here."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, int, int]] = []

    def record(self, name: str, pid: int, loads: int) -> None:
        self.starts.append((name, pid, loads))

    def totals(self) -> dict[str, Any]:
        """``model_loads`` (all starts), ``actor_restarts`` (starts beyond each actor's first),
        ``restarts_by_actor``."""
        per_actor: dict[str, int] = {}
        for name, _, _ in self.starts:
            per_actor[name] = per_actor.get(name, 0) + 1
        return {"model_loads": sum(loads for _, _, loads in self.starts),
                "actor_restarts": sum(n - 1 for n in per_actor.values()),
                "restarts_by_actor": {k: n - 1 for k, n in per_actor.items() if n > 1}}


_handles: dict[tuple[str, str], Any] = {}
"""Actor handles by (namespace, name), per trial process (Tune reuses it for many trials)."""


def _actor(namespace: str, name: str):
    import ray

    if (namespace, name) not in _handles:
        _handles[(namespace, name)] = ray.get_actor(name, namespace=namespace)
    return _handles[(namespace, name)]


def _wait_for_the_others(board: Any) -> None:
    """Wait (at most :data:`START_WAIT_S`) until every pack on the board has started. A pack
    that ends while another's Tune trial actor is still starting hands that trial its own
    cached actor, and Tune kills the one starting; the first pack of a run can end before the
    others' actors are up (its trials take under a second when it runs alone), and from then
    on each new pack's actor start is killed in turn: one pack in four always PENDING and an
    actor start (about a CPU-second) wasted per pack. Measured at 1,000 × 10 on 2 cores: 5 of
    ~38 runs tuned in 42-53 s instead of 13-18 s that way; none of 9 since this wait."""
    import ray

    deadline = time.monotonic() + START_WAIT_S
    while ray.get(board.not_started.remote()) and time.monotonic() < deadline:
        time.sleep(0.05)


START_WAIT_S = 30.0
"""The longest a pack waits for the other packs in flight to start (their trial actors:
started once per Tune run and then reused)."""
PACK_METRIC = "trials_done"
"""What a pack reports to Tune itself: how many of its Optuna trials finished so far."""
REPORT_INTERVAL_S = 0.5
"""A pack reports its finished Optuna trials at most this often (and once at its end)."""


def quiet_exit_in_callbacks() -> None:
    """Have this process not report a ``SystemExit`` raised where Python can only ignore it (a
    weakref callback, a ``__del__``); every other such exception is reported as before.

    Tune stops a trial's actor at tuning's end by dropping its references; the raylet then
    SIGTERMs it, and Ray's handler raises ``SystemExit``. Landing inside a weakref callback, that
    exception is ignored (the actor is SIGKILLed 0.2 s later) but printed as
    ``Exception ignored in: <function WeakSet…> Traceback … SystemExit: 1``, which Ray forwards to
    the user's terminal (seen in 5 of ~20 runs at 1,000 × 10 on 2 cores; raylet.out:
    ``KillLocalActor``, then ``DisconnectClient: sending SIGTERM``)."""
    previous = sys.unraisablehook
    if getattr(previous, "quiet_exit", False):
        return

    def hook(unraisable) -> None:
        if unraisable.exc_type is not SystemExit:
            previous(unraisable)

    hook.quiet_exit = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def pack_trial(config: dict[str, Any], routing: Routing) -> None:
    """The Tune trainable: evaluate a pack of Optuna trials (see :mod:`tuner.engine.search`) on the
    model actors, concurrently, and report each one's validation scores as it finishes."""
    import ray
    from ray import tune

    quiet_exit_in_callbacks()  # this runs in the trial's actor process: its hook, not the driver's
    start = time.perf_counter()
    pack = config.get("pack")
    if pack is None:
        board = _actor(routing.namespace, routing.board)
        pack = ray.get(board.start.remote(config["pack_id"]))
        _wait_for_the_others(board)
    calls: dict[Any, tuple[str, list[dict[str, Any]]]] = {}
    by_actor: dict[str, list[dict[str, Any]]] = {}
    for slot in pack:
        by_actor.setdefault(routing.pick(slot["family"], slot["slot"], slot["params"]), []).append(slot)
    finished: list[dict[str, Any]] = []
    for name, slots in by_actor.items():
        size = routing.chunk.get(slots[0]["family"], 1)
        try:
            actor = _actor(routing.namespace, name)
        except Exception as e:  # an actor dead for good is no longer listed: its slots fail, the others run
            gone = {"error": f"model actor {name} could not be found (dead for good?): {type(e).__name__}: {e}"[:2000]}
            finished += [_slot_result(s, gone, name, routing.seed, time.perf_counter() - start) for s in slots]
            continue
        for i in range(0, len(slots), size):
            chunk = slots[i:i + size]
            ref = actor.evaluate_many.remote([(s["symbol"], s["params"]) for s in chunk], routing.seed,
                                             routing.pooled_symbols.get(chunk[0]["family"]))
            calls[ref] = (name, chunk)
    pending, done = list(calls), 0
    last_report = time.monotonic()
    while pending or finished:
        wait_s = max(0.01, REPORT_INTERVAL_S - (time.monotonic() - last_report))
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=wait_s) if pending else ([], [])
        for ref in ready:
            name, chunk = calls.pop(ref)
            try:
                outcomes = ray.get(ref)
            except Exception as e:  # the actor died for good, or the call could not run
                outcomes = [{"error": f"{type(e).__name__}: {e}"[:2000]}] * len(chunk)
            wall = time.perf_counter() - start
            finished += [_slot_result(s, out, name, routing.seed, wall) for s, out in zip(chunk, outcomes, strict=True)]
        if finished and (not pending or time.monotonic() - last_report >= REPORT_INTERVAL_S):
            done += len(finished)
            tune.report({PACK_METRIC: done, "slots": finished})
            finished, last_report = [], time.monotonic()


def _slot_result(slot: Mapping[str, Any], out: Mapping[str, Any], actor: str, seed: int,
                 wall: float) -> dict[str, Any]:
    """One Optuna trial's outcome as the searcher and the journal take it."""
    if "error" in out:
        return {"slot": slot["slot"], "study": slot["study"], "ok": False, "error": out["error"],
                "metrics": {"actor": actor, "seed": seed}}
    result = out["result"]
    validation, baseline = result["validation"], result["baseline"]["validation"]
    return {
        "slot": slot["slot"], "study": slot["study"], "ok": True,
        "value": validation["pct_return_mae"], "config": result["config"],
        "metrics": {
            "pct_return_mae": validation["pct_return_mae"],
            "price_mae": validation["price_mae"],
            "latency_s": validation["latency_s"],
            "latency_per_forecast_s": validation["latency_per_forecast_s"],
            "windows": validation["windows"],
            "skill": validation["skill"],
            "errors": validation.get("errors"),  # per window: significance tests, PBO
            "baseline_pct_return_mae": baseline["pct_return_mae"],
            "seed": seed,
            "actor": actor,
            "node": out["node"],
            "node_id": out["node_id"],
            "actor_s": out["actor_s"],
            "wait_s": max(0.0, wall - out["actor_s"]),
            "trial_wall_s": wall,
            "tiny_weights": result["tiny_weights"],
            # A pooled trial: each symbol it was tuned on, with its own validation score.
            **({"per_symbol": validation["per_symbol"]} if "per_symbol" in validation else {}),
        },
    }


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default packs the whole config in)."""
    return f"pack_{trial.trial_id}"
