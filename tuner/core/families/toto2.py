"""The ``toto2`` family: Toto 2.0's nine quantiles of the target close, reduced to a point forecast.

Toto 2.0 outputs fixed quantiles (levels 0.1 … 0.9) in one deterministic forward pass, not
sample paths: there is nothing to sample, no seed, and so no sample bank (a bank saves re-drawing
samples; here a trial's cost is the one pass itself). Concurrent requests are still merged into
one pass over all their windows (:meth:`Toto2Family.sample_group`). A :class:`Forecast`'s
``samples`` are the nine quantiles, (W, 9).

Searched: ``max_context`` (bars the model sees) and ``point`` (how the nine quantiles become one
forecast, see :data:`POINT_GRAMMAR`). Nothing else changes the forecast: upstream's block decoding
and KV cache only matter for horizons beyond one pass (refused), and Flash vs masked attention is
chosen from the data (identical results).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.core.errors import ConfigError
from tuner.core.families.base import Forecast, Param, timed
from tuner.core.families.torch_family import TorchFamily
from tuner.core.windows import MIN_CONTEXT, WindowBatch

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # tuner.core.models.toto2.QUANTILE_LEVELS (torch-free here)
POINT_GRAMMAR = ("median; mean (of the nine quantiles: the quantile curve's mean); trimmed_mean_K "
                 "(mean without the K lowest and K highest, K in 1..3); quantile_Q (Q one of "
                 "0.1 … 0.9: that quantile alone)")


def point_reducer(spec: str):
    """``spec`` → a function (W, 9) sorted quantiles → (W,) point forecasts.

    Raises:
        ConfigError: an unknown spec, naming it and :data:`POINT_GRAMMAR`.
    """
    text = str(spec)
    if text == "median":
        return lambda q: q[:, LEVELS.index(0.5)]
    if text == "mean":
        return lambda q: q.mean(axis=1)
    match = re.fullmatch(r"trimmed_mean_([123])", text)
    if match:
        k = int(match.group(1))
        return lambda q: q[:, k : len(LEVELS) - k].mean(axis=1)
    match = re.fullmatch(r"quantile_(0\.[1-9])", text)
    if match:
        index = LEVELS.index(float(match.group(1)))
        return lambda q: q[:, index]
    raise ConfigError(f"point {spec!r}: unknown; one of {POINT_GRAMMAR}")


@dataclass(frozen=True)
class PointParam(Param):
    """A ``point`` spec (:func:`point_reducer`); categorical only."""

    def check(self, name: str, value: Any, where: str) -> Any:
        try:
            point_reducer(value)
        except ConfigError as e:
            raise ConfigError(f"{where}{name}: {e}") from e
        return str(value)


class Toto2Family(TorchFamily):
    name = "toto2"
    model_keys = ("toto2",)
    params = {
        "max_context": Param("int", MIN_CONTEXT, 8192, help="context bars the model sees"),
        "point": PointParam("point", help="how the nine quantiles become the forecast"),
    }
    required = frozenset({"max_context", "point"})
    count_param = "point"  # not a count: Toto 2.0 has no sample paths (see complete_params)

    def complete_params(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        return params  # no samples_per_batch rule: nothing is sampled

    def _load_model(self, folder):
        from tuner.core.models.toto2 import load_toto2

        if self.torch_autocast_dtype() is not None:
            raise ConfigError(f"autocast dtype {self.autocast_dtype}: family toto2 runs in float32 only "
                              "(reduced precision is not implemented for it); use fp32 or leave it unset")

        return load_toto2(folder, device=self.device)

    def sampling_key(self, params: Mapping[str, Any]) -> tuple:
        return (("max_context", params["max_context"]),)

    def reduce(self, samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        return point_reducer(params["point"])(samples)

    def sample(self, batch: WindowBatch, params: Mapping[str, Any], seeds: list[int]) -> np.ndarray:
        """(W, 9) quantiles of the target close (``seeds`` unused: the pass is deterministic)."""
        return self._quantiles([batch.truncated(params["max_context"])])[0]

    def _quantiles(self, batches: list[WindowBatch]) -> list[np.ndarray]:
        """One forward pass over every window of ``batches`` (same context length and horizon)."""
        import torch

        from tuner.core.models.toto2 import forecast_toto2

        context = torch.tensor(np.concatenate([b.close_context for b in batches]), dtype=torch.float32)
        out = forecast_toto2(self.model, context, horizon=batches[0].horizon)[:, :, -1].double().cpu().numpy()
        return np.split(out, np.cumsum([len(b) for b in batches])[:-1])

    def sample_group(self, requests):
        """One pass for all requests whose windows see the same context length and horizon; a
        request's time is its windows' share of that pass."""
        out: list = [None] * len(requests)
        groups: dict[tuple[int, int], list[int]] = {}
        seen = [batch.truncated(params["max_context"]) for batch, params, _ in requests]
        for i, batch in enumerate(seen):
            groups.setdefault((batch.context_length, batch.horizon), []).append(i)
        for members in groups.values():
            parts, seconds = timed(self._quantiles, [seen[i] for i in members])
            rows = sum(len(seen[i]) for i in members)
            for i, part in zip(members, parts, strict=True):
                out[i] = (part, seconds * len(seen[i]) / rows)
        return out

    def forecast(self, batch: WindowBatch, params: Mapping[str, Any], seed: int) -> Forecast:
        """Point forecasts from the nine quantiles; ``seed`` is unused (nothing is sampled), and no
        sample bank is used (there are no samples to reuse)."""
        params = self.check_params(params)
        if not self.loaded:
            self.load()
        if self.batcher is not None:
            quantiles, seconds = self.batcher.sample(batch, params, [])
        else:
            quantiles, seconds = self.timed(self.sample, batch, params, [])
        quantiles = np.asarray(quantiles, dtype=np.float64)
        point, reduce_s = timed(self.reduce, quantiles, params)
        return Forecast(point=point, samples=quantiles, latency_s=seconds + reduce_s)
