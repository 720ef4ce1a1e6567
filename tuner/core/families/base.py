"""The interface a model family implements, its parameter rules, and the family registry.

A family turns a trial's parameters into sample paths for a batch of windows, then reduces them
to one point forecast per window. Lifecycle (the same in a plain process and in a Ray actor):

1. ``Family(weights=..., device=...)`` is cheap: nothing is loaded;
2. ``load()`` loads the weights once (an actor calls it once and serves every later trial);
3. ``forecast(batch, params, seed)`` any number of times, for any symbol;
4. ``close()`` frees memory (GPU included).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tuner.core import aggregation
from tuner.core.banks import SampleBank, batch_fingerprint
from tuner.core.errors import ConfigError, TunerError
from tuner.core.models.weights import CHECKPOINT_PARAM
from tuner.core.windows import WindowBatch, window_seeds

if TYPE_CHECKING:
    from tuner.core.families.batching import RequestBatcher


@dataclass(frozen=True)
class Param:
    """The intrinsic rule of one parameter (what any value must satisfy, searched or not).

    ``kind`` is ``"int"``, ``"float"`` or ``"aggregate"`` (an aggregation spec). Bounds are
    inclusive unless ``low_open`` (then ``value > low``).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    help: str = ""

    def check(self, name: str, value: Any, where: str) -> Any:
        """Return the value in its canonical type or raise ConfigError naming ``where.name``."""
        path = f"{where}{name}"
        if self.kind == "aggregate":
            aggregation.parse(value)  # raises AggregationError naming the spec
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ConfigError(f"{path}: {value!r} must be an integer")
            value = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{path}: {value!r} must be a finite number")
            value = float(value)
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            op = ">" if self.low_open else ">="
            raise ConfigError(f"{path}: {value!r} must be {op} {self.low:g}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{path}: {value!r} must be <= {self.high:g}")
        return value


@dataclass(frozen=True)
class Forecast:
    """A family's output on one batch.

    Attributes:
        point: (W,) point forecasts of the target close, price units.
        samples: (W, S) the sample paths' target closes the point forecast was reduced from.
        latency_s: wall seconds a fresh forecast of the whole batch takes (sampling +
            reduction). When the samples came from a bank, the sampling part is the time the
            banked draw took (for prefix reuse, the time of the larger draw: an upper bound).
        from_bank: whether the samples came from a sample bank.
    """

    point: np.ndarray
    samples: np.ndarray
    latency_s: float
    from_bank: bool = False


class Family(ABC):
    """A model family. Subclasses set ``name``, ``params`` and implement ``sample``."""

    name: ClassVar[str]
    params: ClassVar[Mapping[str, Param]]
    required: ClassVar[frozenset[str]] = frozenset()
    production: ClassVar[bool] = True
    """False for test-only families, which ``tuner run`` never tunes by default."""
    prefix_stable: ClassVar[bool] = False
    """True when sample ``i`` depends only on the seed and ``i`` (not on how many are drawn), so a
    bank of N samples serves any request for n <= N."""

    _registry: ClassVar[dict[str, type[Family]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract intermediate class
        holder = Family._registry.get(cls.name)
        if holder is not None and holder is not cls:
            raise TypeError(f"family {cls.name!r} already registered by {holder.__module__}.{holder.__name__}")
        Family._registry[cls.name] = cls

    def __init__(self, weights: Any = None, device: str | None = None) -> None:
        self.weights = weights
        self.device = device
        self.loaded = False
        self.bank: SampleBank | None = None
        """Optional shared sample bank (a model actor sets one)."""
        self.batcher: RequestBatcher | None = None
        """Optional request batcher merging concurrent sample calls (a model actor sets one)."""

    # ---------------------------------------------------------------------------- lifecycle
    def load(self) -> None:
        """Load weights once. Families without weights do nothing."""
        self.loaded = True

    def close(self) -> None:
        """Free what ``load`` took."""
        self.loaded = False

    @property
    def weights_id(self) -> str | None:
        """What was loaded, for result files (hub ids/folders); None for weights-free families."""
        return None

    @property
    def tiny_weights(self) -> bool:
        """True when the loaded weights are tiny random-init ones (results are then noise)."""
        return False

    # ---------------------------------------------------------------------------- params
    def check_params(self, params: Mapping[str, Any], where: str = "params.") -> dict[str, Any]:
        """Validate a trial's parameters and fill defaults; ConfigError names the bad key.

        A ``checkpoint`` (the size a trial runs on, when the experiment searches several) is
        checked by :meth:`check_checkpoint` and kept first in the config."""
        if CHECKPOINT_PARAM in params:
            rest = {k: v for k, v in params.items() if k != CHECKPOINT_PARAM}
            size = self.check_checkpoint(params[CHECKPOINT_PARAM], where)
            return {CHECKPOINT_PARAM: size, **self.check_params(rest, where)}
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ConfigError(
                f"{where}{unknown[0]}: unknown parameter for family {self.name}; "
                f"known: {', '.join(sorted(self.params))}"
            )
        missing = sorted(self.required - set(params))
        if missing:
            raise ConfigError(f"{where}{missing[0]}: required by family {self.name}")
        checked = {k: self.params[k].check(k, v, where) for k, v in params.items()}
        return self.complete_params(checked, where)

    def complete_params(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        """Cross-parameter rules and defaults (override in families)."""
        return params

    def check_checkpoint(self, value: Any, where: str) -> str:
        """The trial's ``checkpoint`` (a size name) if this family instance runs it; families
        with checkpoints override this (:class:`~tuner.core.families.torch_family.TorchFamily`)."""
        raise ConfigError(f"{where}{CHECKPOINT_PARAM}: {value!r}: family {self.name} has no checkpoint sizes")

    # ---------------------------------------------------------------------------- forecasting
    @abstractmethod
    def sample(self, batch: WindowBatch, params: Mapping[str, Any], seeds: list[int]) -> np.ndarray:
        """Sample paths' target closes, shape (W, S), for checked ``params``.

        ``seeds`` holds one seed per window; a window's samples must depend only on its own
        context and seed (never on other windows, never on bars at or after its origin).
        """

    def sample_group(self, requests: list[tuple[WindowBatch, Mapping[str, Any], list[int]]]
                     ) -> list[tuple[np.ndarray, float]]:
        """``(samples, seconds)`` for several requests at once; families whose model can merge
        requests into fewer forward passes override this. Samples must equal separate
        :meth:`sample` calls; ``seconds`` is each request's own share of the time (shared work
        split among the requests that shared it)."""
        return [self.timed(self.sample, batch, params, seeds) for batch, params, seeds in requests]

    def timed(self, fn, *args) -> tuple[Any, float]:
        """``(fn(*args), seconds)`` less one-off set-up work done inside it (memory probes), so
        latencies are what a forecast of this config costs."""
        self.setup_seconds()  # drop what a call that failed midway may have left counted
        out, seconds = timed(fn, *args)
        return out, max(0.0, seconds - self.setup_seconds())

    def setup_seconds(self) -> float:
        """Seconds of one-off set-up this thread did since the last call (then reset)."""
        return 0.0

    def sampling_key(self, params: Mapping[str, Any]) -> tuple:
        """The parameters that change the draws, other than their count (for sample banks)."""
        return tuple(sorted((k, v) for k, v in params.items()
                            if k not in ("aggregate", "samples_per_batch", self.count_param)))

    count_param: ClassVar[str] = "num_samples"
    """The parameter holding the number of sample paths."""

    def reduce(self, samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        """(W, S) samples → (W,) point forecasts. Default: the ``aggregate`` parameter."""
        return aggregation.parse(params["aggregate"])(samples)

    def forecast(self, batch: WindowBatch, params: Mapping[str, Any], seed: int) -> Forecast:
        """Point forecasts for every window of ``batch``; ``params`` are checked first."""
        params = self.check_params(params)
        if not self.loaded:
            self.load()
        count = params[self.count_param]
        key = None
        if self.bank is not None:
            key = (self.name, self.weights_id, batch_fingerprint(batch), seed, self.sampling_key(params))
            banked = self.bank.lookup(key, count, self.prefix_stable)
            if banked is not None:
                samples, sampled_s = banked
                start = time.perf_counter()
                point = self.reduce(samples, params)
                return Forecast(point, samples, sampled_s + time.perf_counter() - start, from_bank=True)
        seeds = window_seeds(seed, batch)
        if self.batcher is not None:  # time = this request's share, not the merged group's
            samples, sampled_s = self.batcher.sample(batch, params, seeds)
        else:
            samples, sampled_s = self.timed(self.sample, batch, params, seeds)
        samples = np.asarray(samples, dtype=np.float64)
        if samples.shape != (len(batch), count):
            raise TunerError(f"family {self.name} returned samples of shape {samples.shape}, "
                             f"expected ({len(batch)}, {count}) (never fewer than configured)")
        if key is not None:
            self.bank.store(key, samples, sampled_s)
        start = time.perf_counter()
        point = self.reduce(samples, params)
        return Forecast(point=point, samples=samples, latency_s=sampled_s + time.perf_counter() - start)


def timed(fn, *args) -> tuple[Any, float]:
    """``(fn(*args), wall seconds it took)``."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start
