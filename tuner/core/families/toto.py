"""The ``toto`` family: ``num_samples`` Toto sample paths of the close, reduced by ``aggregate``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.core.families.base import Param, timed
from tuner.core.families.torch_family import TorchFamily
from tuner.core.windows import WindowBatch


class TotoFamily(TorchFamily):
    name = "toto"
    model_keys = ("toto",)
    prefix_stable = True  # counter-based draws: sample i depends on (seed, i) only
    params = {
        "num_samples": Param("int", 1, 65_536, help="sample paths per window"),
        "aggregate": Param("aggregate", help="aggregation spec reducing the paths"),
        "samples_per_batch": Param("int", 1, 65_536, help="memory knob; must divide num_samples"),
    }
    required = frozenset({"num_samples", "aggregate"})


    def _load_model(self, folder):
        from tuner.core.models.toto import load_toto

        return load_toto(folder, device=self.device, dtype=self.torch_autocast_dtype())

    def sample(self, batch: WindowBatch, params: Mapping[str, Any], seeds: list[int]) -> np.ndarray:
        import torch

        context = torch.tensor(batch.close_context, dtype=torch.float32)
        return self._draw_closes(batch, params, seeds, context)

    def _draw_closes(self, batch, params, seeds, context, first_patch=None) -> np.ndarray:
        from tuner.core.models.toto import sample_toto

        def draw(count: int, per_batch: int):
            return sample_toto(self.model, context, horizon=batch.horizon, num_samples=count,
                               seeds=seeds, samples_per_batch=per_batch, first_patch=first_patch)

        variant = "" if first_patch is None else "first patch given"
        return self.draw_in_chunks(batch, params, draw, variant)[..., -1].double().cpu().numpy()

    def sample_group(self, requests):
        """One forward pass for every window of every request (same context length, horizon
        within one patch); each request then draws from its own windows' distributions. A
        request's time is its own draws plus its windows' share of the merged pass."""
        import torch

        from tuner.core.models.toto import TotoOutput, first_patch_distribution

        out: list = [None] * len(requests)
        groups: dict[int, list[int]] = {}
        for i, (batch, _, _) in enumerate(requests):
            if batch.horizon <= self.model.config.patch_size:
                groups.setdefault(batch.context_length, []).append(i)
            else:
                out[i] = self.timed(self.sample, *requests[i])
        for members in groups.values():
            contexts = torch.cat([torch.tensor(requests[i][0].close_context, dtype=torch.float32)
                                  for i in members])
            first = None
            try:
                first, shared_s = timed(first_patch_distribution, self.model, contexts)
            except Exception as error:
                meter = self.batch_sizer.meter
                if meter is None or not meter.is_out_of_memory(error) or len(members) == 1:
                    raise
            if first is None:  # the merged pass did not fit: serve the requests one by one
                self.batch_sizer.meter.release()
                for i in members:
                    out[i] = self.timed(self.sample, *requests[i])
                continue
            row = 0
            for i in members:
                batch, params, seeds = requests[i]
                mine = TotoOutput(*(t[row : row + len(batch)] for t in first))
                row += len(batch)
                samples, own_s = self.timed(self._draw_closes, batch, params, seeds,
                                            torch.tensor(batch.close_context, dtype=torch.float32), mine)
                out[i] = (samples, own_s + shared_s * len(batch) / len(contexts))
        return out
