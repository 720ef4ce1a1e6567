"""What both Kronos families share: loading Kronos + tokenizer, and sampling with a temperature per path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.core.families.base import Param
from tuner.core.families.torch_family import TorchFamily
from tuner.core.memory import CPU_SAMPLES_PER_BATCH
from tuner.core.windows import MIN_CONTEXT, WindowBatch

KRONOS_PARAMS = {
    "temperature": Param("float", 0.0, 10.0, low_open=True, help="sampling temperature"),
    "top_p": Param("float", 0.0, 1.0, low_open=True, help="nucleus mass kept (1 = off)"),
    "top_k": Param("int", 0, 1 << 20, help="tokens kept (0 = off)"),
    "max_context": Param("int", MIN_CONTEXT, 4096, help="context bars the model sees"),
    "clip": Param("float", 0.0, 1000.0, low_open=True, help="inputs clipped at ±clip std"),
    "samples_per_batch": Param("int", 1, 1 << 20, help="memory knob; must divide the path count"),
}


class KronosFamily(TorchFamily):
    """Abstract: subclasses say how many paths, at which temperatures, and how they are reduced."""

    model_keys = ("kronos", "kronos_tokenizer")
    count_param: str
    # The sampler pads calls below tuner.core.models.kronos.MIN_SAMPLE_ROWS (16) paths, so smaller
    # probes would all cost the same (a test keeps these in step; literal to keep torch lazy).
    probe_paths = (16, 64)

    def _load_model(self, model_folder, tokenizer_folder):
        from tuner.core.models.kronos import load_kronos

        return load_kronos(model_folder, tokenizer_folder, device=self.device, dtype=self.torch_autocast_dtype())


    def temperatures(self, params: Mapping[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def sample(self, batch: WindowBatch, params: Mapping[str, Any], seeds: list[int]) -> np.ndarray:
        import torch

        from tuner.core.models.kronos import sample_kronos

        model, tokenizer = self.model
        seen = batch.truncated(params["max_context"])
        context = torch.tensor(seen.context, dtype=torch.float32)
        context_times = torch.tensor(seen.context_times.astype(np.int64))
        future_times = torch.tensor(seen.future_times.astype(np.int64))

        on_cpu = not str(self.device).startswith("cuda")

        def draw(count: int, per_batch: int):
            ladder = self.temperatures({**params, self.count_param: count})
            return sample_kronos(
                model, tokenizer, context, context_times, future_times,
                temperatures=torch.as_tensor(ladder, dtype=torch.float32),
                top_p=params["top_p"], top_k=params["top_k"], clip=params["clip"],
                seeds=seeds, samples_per_batch=per_batch, max_context=params["max_context"],
                # On a GPU every window shares each call (the memory sizer measured this shape);
                # on CPU bigger calls stop paying off: a call holds as many sample rows (windows
                # x paths) as the CPU cap on paths per call.
                windows_per_call=max(1, CPU_SAMPLES_PER_BATCH // per_batch) if on_cpu else None,
            )

        return self.draw_in_chunks(batch, params, draw)[:, :, -1, 3].double().cpu().numpy()  # target close
