"""Evaluate one config of one family on one symbol: load data, cut windows, run the trial.

What ``tuner evaluate`` calls; also the quickest way to try a config from Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner.config import load_family_config
from tuner.data import bundled_data_path, load_dataset
from tuner.forecasters.base import family_class
from tuner.trial import TrialResult, run_trial
from tuner.windows import WindowSpec, make_periods


def evaluate_symbol(
    family: str,
    symbol: str,
    params: Mapping[str, Any],
    *,
    data: str | Path | None = None,
    weights: str | None = None,
    seed: int = 0,
    windows: WindowSpec | None = None,
    device: str | None = None,
    configs: str | Path | None = None,
) -> TrialResult:
    """Score ``params`` on the validation and test periods of ``symbol`` (with the baseline).

    ``data`` defaults to the bundled sample data; ``weights`` as in :mod:`tuner.weights`.
    """
    spec = windows or WindowSpec()
    config = load_family_config(family, configs)
    bars = load_dataset(data or bundled_data_path(), symbols=[symbol]).get(symbol)
    periods = make_periods(bars, spec, config.context_length)
    cls = family_class(family)
    forecaster = cls(weights=weights, device=device)
    try:
        return run_trial(forecaster, params, periods, seed, with_test=True)
    finally:
        forecaster.close()
