"""The ``kronos_ensemble`` family: ``num_samples`` Kronos paths whose temperatures climb a ladder
from ``temperature`` to ``temp_max``; every path is kept and reduced by ``aggregate``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.core.errors import ConfigError
from tuner.core.families.base import Param
from tuner.core.families.kronos_family import KRONOS_PARAMS, KronosFamily


class KronosEnsemble(KronosFamily):
    name = "kronos_ensemble"
    count_param = "num_samples"
    params = {
        **KRONOS_PARAMS,
        "temp_max": Param("float", 0.0, 10.0, low_open=True, help="highest rung of the ladder"),
        "num_samples": Param("int", 1, 1 << 20, help="paths, one per ladder rung"),
        "aggregate": Param("aggregate", help="aggregation spec reducing the paths"),
    }
    required = frozenset({"temperature", "temp_max", "top_p", "top_k", "num_samples",
                          "max_context", "clip", "aggregate"})

    def complete_params(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        if params["temp_max"] < params["temperature"]:
            raise ConfigError(
                f"{where}temp_max: {params['temp_max']:g} must be >= temperature "
                f"{params['temperature']:g}"
            )
        return super().complete_params(params, where)

    def temperatures(self, params: Mapping[str, Any]) -> np.ndarray:
        return np.linspace(params["temperature"], params["temp_max"], params["num_samples"])
