"""The ``kronos_standard`` family: ``sample_count`` Kronos paths at one temperature, averaged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.core.families.base import Param
from tuner.core.families.kronos_family import KRONOS_PARAMS, KronosFamily


class KronosStandard(KronosFamily):
    name = "kronos_standard"
    count_param = "sample_count"
    params = {**KRONOS_PARAMS, "sample_count": Param("int", 1, 1 << 20, help="paths averaged")}
    required = frozenset({"temperature", "top_p", "top_k", "sample_count", "max_context", "clip"})

    def temperatures(self, params: Mapping[str, Any]) -> np.ndarray:
        return np.full(params["sample_count"], params["temperature"])

    def reduce(self, samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        return samples.mean(axis=-1)  # Kronos's own procedure: the mean of its sample paths
