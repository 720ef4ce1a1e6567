"""Which symbols a pooled study is tuned on (``pooled_symbols``), without Ray."""

from __future__ import annotations

import pytest

from tuner.core.errors import ConfigError
from tuner.engine.experiment_config import ExperimentConfig, parse_experiment_config
from tuner.engine.pooled_study import POOLED_SYMBOLS, tuning_symbols

UNIVERSE = [f"S{i:03d}" for i in range(120)]


def test_when_the_universe_is_within_the_cap_then_every_symbol_is_tuned_on():
    assert tuning_symbols("toto", ["B", "A", "A"], 5, seed=0) == ("A", "B")
    assert tuning_symbols("toto", UNIVERSE, None, seed=0) == tuple(UNIVERSE)


def test_when_the_universe_exceeds_the_cap_then_a_sample_fixed_by_seed_and_family_is_taken():
    chosen = tuning_symbols("toto", UNIVERSE, 50, seed=3)
    assert len(chosen) == 50 and list(chosen) == sorted(chosen) and set(chosen) <= set(UNIVERSE)
    # The same on a resume or another actor, whatever order the symbols come in ...
    assert tuning_symbols("toto", reversed(UNIVERSE), 50, seed=3) == chosen
    # ... and another seed or family draws another sample.
    assert tuning_symbols("toto", UNIVERSE, 50, seed=4) != chosen
    assert tuning_symbols("kronos_standard", UNIVERSE, 50, seed=3) != chosen


def test_when_pooled_symbols_is_configured_then_null_means_all_and_bad_values_are_named():
    assert ExperimentConfig().pooled_symbols == POOLED_SYMBOLS
    assert parse_experiment_config({"pooled_symbols": None}).pooled_symbols is None
    assert parse_experiment_config({"pooled_symbols": 10}).pooled_symbols == 10
    for bad in (1, "ten", True):
        with pytest.raises(ConfigError, match="pooled_symbols"):
            parse_experiment_config({"pooled_symbols": bad})
