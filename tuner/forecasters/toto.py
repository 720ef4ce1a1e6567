"""The ``toto`` family: ``num_samples`` Toto sample paths of the close, reduced by ``aggregate``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.errors import ConfigError
from tuner.forecasters.base import Param, divisor_at_most
from tuner.forecasters.torch_family import TorchFamily
from tuner.windows import WindowBatch

DEFAULT_SAMPLES_PER_BATCH = 256


class TotoFamily(TorchFamily):
    name = "toto"
    model_keys = ("toto",)
    params = {
        "num_samples": Param("int", 1, 65_536, help="sample paths per window"),
        "aggregate": Param("aggregate", help="aggregation spec reducing the paths"),
        "samples_per_batch": Param("int", 1, 65_536, help="memory knob; must divide num_samples"),
    }
    required = frozenset({"num_samples", "aggregate"})

    def complete_params(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        n = params["num_samples"]
        per_batch = params.get("samples_per_batch")
        if per_batch is None:
            per_batch = divisor_at_most(n, DEFAULT_SAMPLES_PER_BATCH)
        elif n % per_batch:
            raise ConfigError(
                f"{where}samples_per_batch: {per_batch} does not divide num_samples {n}"
            )
        return {**params, "samples_per_batch": per_batch}

    def _load_model(self, folder):
        from tuner.models.toto import load_toto

        return load_toto(folder, device=self.device, dtype=self.torch_autocast_dtype())

    def sample(self, batch: WindowBatch, params: Mapping[str, Any], seeds: list[int]) -> np.ndarray:
        import torch

        from tuner.models.toto import sample_toto

        context = torch.tensor(batch.close_context, dtype=torch.float32)
        paths = sample_toto(
            self.model, context, horizon=batch.horizon, num_samples=params["num_samples"],
            seeds=seeds, samples_per_batch=params["samples_per_batch"],
        )
        return paths[..., -1].double().cpu().numpy()
