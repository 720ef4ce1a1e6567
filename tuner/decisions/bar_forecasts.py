"""Next-bar forecasts of chosen target bars, made in this process the way tuning made them.

The forecast of target bar ``t`` sees bars ``[t − L, t)`` only, with ``L`` the context length the
experiment's windows had (:func:`experiment_context_length`), and draws its randomness from the
experiment seed, the symbol and the bar's timestamp (``windows.window_seeds``): the test-period
forecasts here are the experiment's own, and a bar forecast today is forecast again identically
tomorrow. Models load once per family (:class:`Forecasters`); weights as the experiment used them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tuner.core.config import load_family_config
from tuner.core.data import Bars
from tuner.core.errors import ConfigError
from tuner.core.families.base import Family
from tuner.core.families.registry import family_class
from tuner.core.models.weights import CHECKPOINT_PARAM, FAMILY_MODEL, WeightsSource, resolve_weights
from tuner.core.windows import WindowBatch, cut_batch, series_arrays


def experiment_context_length(family_context: int, test_end: int, windows: Mapping[str, Any]) -> int:
    """The context length the experiment's windows had: ``min(family context, first validation
    origin)`` with the validation period ending where the test period (ending at ``test_end``)
    begins (``windows.make_periods``)."""
    first_val_target = test_end + 1 - int(windows["test_windows"]) - int(windows["val_windows"])
    first_origin = first_val_target - int(windows.get("horizon", 1)) + 1
    return int(min(family_context, first_origin))


def target_batch(bars: Bars, targets: np.ndarray, context_length: int, period: str) -> WindowBatch:
    """Horizon-1 windows for ``targets`` (bar indices, each ≥ ``context_length``): bars
    ``[t − L, t)`` as context, ``close[t−1]`` as the last close seen.

    Raises:
        ConfigError: a target has fewer than ``context_length`` bars before it.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size and int(targets.min()) < context_length:
        raise ConfigError(f"{bars.symbol}: bar {int(targets.min())} has fewer than {context_length} "
                          "bars of context before it")
    return cut_batch(bars.symbol, period, targets, 1, context_length, *series_arrays(bars))


class Forecasters:
    """One loaded model per family, with the experiment's weights; :meth:`close` frees them."""

    def __init__(self, summary: Mapping[str, Any], configs: Any = None, device: str | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.summary, self.configs, self.device, self.echo = summary, configs, device, echo
        self._open: dict[str, Family] = {}
        self._context: dict[str, int] = {}

    def context(self, family: str) -> int:
        """The family's configured context length (``configs/spaces/<family>.yaml``)."""
        if family not in self._context:
            self._context[family] = load_family_config(family, self.configs).context_length
        return self._context[family]

    @property
    def weights(self) -> WeightsSource | None:
        """The experiment's checkpoints (its sizes included), from ``summary.json``."""
        asked = self.summary.get("weights")
        return WeightsSource.from_mapping(asked, "summary.json weights") if asked else None

    def get(self, family: str, checkpoint: str | None = None) -> Family:
        """The family loaded once per checkpoint size (``checkpoint``: a config's size, when the
        experiment searched several)."""
        key = family if checkpoint is None else f"{family}@{checkpoint}"
        if key not in self._open:
            source: object = None
            options: dict[str, Any] = {}
            if family in FAMILY_MODEL:
                resolved = resolve_weights(self.weights, [family],
                                           fallback_allowed=bool(self.summary.get("tiny_weights")))
                source = resolved.source
                for line in resolved.warnings if self.echo else ():
                    self.echo(line)
                if checkpoint is not None:
                    options["checkpoint"] = checkpoint
            self._open[key] = family_class(family)(weights=source, device=self.device, **options)
        return self._open[key]

    def default_config(self, family: str) -> Mapping[str, Any] | None:
        """The family's default config as the experiment scored it (on its default size when it
        searched several)."""
        return load_family_config(family, self.configs, weights=self.weights).default

    def predicted_returns(self, family: str, config: Mapping[str, Any], batch: WindowBatch,
                          seed: int) -> np.ndarray:
        """(W,) predicted next-bar returns ``forecast / prev_close − 1`` of ``batch``."""
        if not len(batch):
            return np.zeros(0)
        forecast = self.get(family, config.get(CHECKPOINT_PARAM)).forecast(batch, config, seed)
        return np.asarray(forecast.point, dtype=np.float64) / batch.prev_close - 1.0

    def close(self) -> None:
        for family in self._open.values():
            family.close()
        self._open.clear()

    def __enter__(self) -> Forecasters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
