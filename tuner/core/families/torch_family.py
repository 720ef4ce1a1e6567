"""What the model-backed families share: weights source, device choice, cached model loading."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tuner.core.errors import ConfigError
from tuner.core.families.base import Family
from tuner.core.memory import PROBE_PATHS, CudaMemoryMeter, SamplesPerBatch
from tuner.core.models import registry
from tuner.core.models.weights import WeightsSource, split_revision
from tuner.core.windows import WindowBatch


def pick_device(device: str | None) -> str:
    """``device`` if given, else CUDA when present, else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device_here(device: str | None, option: str, fix: str) -> None:
    """Refuse a CUDA ``device`` this machine cannot give, before anything starts (a model would
    otherwise fail deep inside a Ray actor with a long traceback). ``option`` names where the
    value came from (``--device``) and ``fix`` what to use instead."""
    if not device or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"{option} {device}: torch.cuda.is_available() is False on this machine; use {fix}")
    index = device.partition(":")[2]
    count = torch.cuda.device_count()
    if index.isdigit() and int(index) >= count:
        raise ConfigError(f"{option} {device}: this machine has {count} CUDA device(s) "
                          f"(cuda:0..cuda:{count - 1}); use one of them or {fix}")


class TorchFamily(Family):
    """A family backed by checkpoints; ``weights`` is a :class:`WeightsSource`, str or None."""

    model_keys: tuple[str, ...] = ()
    """Which fields of WeightsSource this family loads (e.g. ``("kronos", "kronos_tokenizer")``)."""

    probe_paths: tuple[int, int] = PROBE_PATHS
    """Path counts of the GPU memory probes (:mod:`tuner.core.memory`)."""

    def __init__(self, weights: Any = None, device: str | None = None,
                 autocast_dtype: str | None = None, gpu_share: float = 1.0,
                 checkpoint: str | None = None) -> None:
        if not isinstance(weights, WeightsSource):
            weights = WeightsSource.parse(weights, family=self.name)
        if checkpoint is not None:  # one size of several: its own sources only
            weights = weights.for_checkpoint(self.name, checkpoint)
        super().__init__(weights, device)
        self.checkpoint = checkpoint
        """The size this instance holds when the experiment searches several (trials then name
        it in ``checkpoint``); None for a family with one checkpoint."""
        self.autocast_dtype = autocast_dtype
        self.gpu_share = gpu_share
        """The fraction of the GPU this process may fill (a fractional-GPU actor's share)."""
        self.batch_sizer = SamplesPerBatch(probe_paths=self.probe_paths)
        self.model: Any = None

    def complete_params(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        """Check that a given ``samples_per_batch`` divides the path count; unset, it is chosen
        per call (:meth:`draw_in_chunks`), so it is not part of the trial's config."""
        per_batch = params.get("samples_per_batch")
        n = params[self.count_param]
        if per_batch is not None and n % per_batch:
            raise ConfigError(
                f"{where}samples_per_batch: {per_batch} does not divide {self.count_param} {n}"
            )
        return params

    def check_checkpoint(self, value: Any, where: str) -> str:
        """A trial's ``checkpoint`` must be the size this instance holds: a trial routed to the
        wrong size's actor fails instead of scoring another model under its name."""
        if self.checkpoint is None:
            raise ConfigError(f"{where}checkpoint: {value!r}, but this {self.name} model was loaded as its "
                              "only checkpoint (no sizes listed)")
        if value != self.checkpoint:
            raise ConfigError(f"{where}checkpoint: {value!r}, but this {self.name} model holds "
                              f"checkpoint {self.checkpoint!r}")
        return value

    def draw_in_chunks(self, batch: WindowBatch, params: Mapping[str, Any],
                       draw: Callable[[int, int], Any], variant: str = "") -> Any:
        """``draw(count, samples_per_batch)`` for the trial's path count, with the trial's
        ``samples_per_batch`` or one chosen from free GPU memory (:mod:`tuner.core.memory`).
        ``variant`` names a code path with its own memory profile (measured separately)."""
        shape = (len(batch), batch.context_length, batch.horizon, params.get("max_context"), variant)
        return self.batch_sizer.sample(params[self.count_param], shape, draw,
                                       given=params.get("samples_per_batch"))

    def setup_seconds(self) -> float:
        return self.batch_sizer.take_probe_seconds()

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(getattr(self.weights, k) for k in self.model_keys)

    @property
    def weights_id(self) -> str:
        return ",".join(f"{k}={getattr(self.weights, k)}" for k in self.model_keys)

    @property
    def tiny_weights(self) -> bool:
        if not self.loaded:
            self.load()
        return self._tiny

    def torch_autocast_dtype(self):
        """The autocast dtype for the device: bf16/fp16 on CUDA only (CPU runs fp32)."""
        import torch

        if self.autocast_dtype is None or not str(self.device).startswith("cuda"):
            return None
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.autocast_dtype]

    def load(self) -> None:
        self.device = pick_device(self.device)
        key = (type(self).model_kind(), self.sources, self.device, self.autocast_dtype)
        self.model, self._tiny = registry.get_model(key, self._load_resolved)
        if str(self.device).startswith("cuda"):
            self.batch_sizer.meter = CudaMemoryMeter(self.device, share=self.gpu_share)
        self.loaded = True

    def close(self) -> None:
        self.model = None
        self.loaded = False

    def _load_resolved(self) -> tuple[Any, bool]:
        from tuner.core.models.checkpoint import is_tiny, resolve_checkpoint

        folders = []
        for source in self.sources:
            ident, revision = split_revision(source)
            folders.append(resolve_checkpoint(ident, revision=revision))
        return self._load_model(*folders), any(is_tiny(f) for f in folders)

    @classmethod
    def model_kind(cls) -> str:
        return "+".join(cls.model_keys)

    def _load_model(self, *folders: Any) -> Any:
        """Load from resolved local checkpoint folders, in ``model_keys`` order."""
        raise NotImplementedError
