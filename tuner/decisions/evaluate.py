"""Evaluate one config of one family on one symbol: load data, cut windows, run the trial.

What ``tuner evaluate`` calls; also the quickest way to try a config from Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tuner.core.config import load_family_config
from tuner.core.data import bundled_data_path, load_dataset
from tuner.core.families.registry import family_class
from tuner.core.models.weights import CHECKPOINT_PARAM, FAMILY_MODEL, resolve_weights
from tuner.core.trial import TrialResult, run_trial
from tuner.core.windows import WindowSpec, make_periods


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
    echo: Callable[[str], None] | None = None,
) -> TrialResult:
    """Score ``params`` on the validation and test periods of ``symbol`` (with the baseline).

    ``data`` defaults to the bundled sample data; ``weights`` as in :mod:`tuner.core.models.weights`.
    Without ``weights``, when the published checkpoints are unavailable (offline, no cache),
    tiny random-init ones are used, as ``tuner run`` does: ``echo`` gets the warning lines and
    the result says ``tiny_weights``. An explicit ``weights`` never falls back.
    """
    spec = windows or WindowSpec()
    config = load_family_config(family, configs)
    bars = load_dataset(data or bundled_data_path(), symbols=[symbol]).get(symbol)
    periods = make_periods(bars, spec, config.context_length)
    cls = family_class(family)
    source: object = weights
    if weights is None and family in FAMILY_MODEL:
        resolved = resolve_weights(None, [family], fallback_allowed=True)
        source = resolved.source
        for line in resolved.warnings if echo else ():
            echo(line)
    # A config naming a checkpoint size loads that size: one of `weights`' sizes or upstream's.
    size = params.get(CHECKPOINT_PARAM) if family in FAMILY_MODEL else None
    forecaster = cls(weights=source, device=device, **({"checkpoint": size} if size is not None else {}))
    try:
        return run_trial(forecaster, params, periods, seed, with_test=True)
    finally:
        forecaster.close()
