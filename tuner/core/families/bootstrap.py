"""A weights-free family for tests and dry runs: bootstrap of the context's past returns.

Not one of the three tuned families (``production = False``). Each sample path compounds
``horizon`` one-bar returns drawn with replacement from the last ``lookback`` returns of the
window's own context, so it is leak-free by construction and needs no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.core.families.base import Family, Param
from tuner.core.windows import WindowBatch


class BootstrapReturns(Family):
    name = "bootstrap_returns"
    production = False
    params = {
        "num_samples": Param("int", 1, 1_000_000, help="sample paths per window"),
        "lookback": Param("int", 2, 100_000, help="past returns to resample from"),
        "aggregate": Param("aggregate", help="aggregation spec"),
    }
    required = frozenset({"num_samples", "aggregate"})

    def complete_params(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        return {"lookback": 64, **params}

    def sample(self, batch: WindowBatch, params: Mapping[str, Any], seeds: list[int]) -> np.ndarray:
        closes = batch.close_context
        lookback = min(params["lookback"], closes.shape[1] - 1)
        returns = closes[:, -lookback:] / closes[:, -lookback - 1 : -1] - 1.0
        out = np.empty((len(batch), params["num_samples"]))
        for i, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            picks = rng.integers(0, lookback, size=(params["num_samples"], batch.horizon))
            out[i] = batch.prev_close[i] * np.prod(1.0 + returns[i][picks], axis=-1)
        return out
