from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tuner.core.config import configs_dir, load_family_config, parse_family_config
from tuner.core.errors import AggregationError, ConfigError
from tuner.core.families import family_class, family_names
from tuner.core.search_space import Dimension, SearchSpace

FILE = Path("configs/spaces/x.yaml")


def parse(family: str, data: dict):
    return parse_family_config(data, family_class(family), FILE)


@pytest.mark.parametrize("family", ["toto", "kronos_standard", "kronos_ensemble", "bootstrap_returns"])
def test_when_shipped_space_loads_then_it_is_valid(family):
    config = load_family_config(family)
    assert config.family == family and config.context_length >= 32
    assert config.source == configs_dir() / "spaces" / f"{family}.yaml"


def test_when_spec_defaults_then_shipped_spaces_match_spec():
    toto = load_family_config("toto").space
    dims = {d.name: d for d in toto.dimensions}
    assert dims["num_samples"].choices == (64, 128, 256, 512, 1024, 2048)
    assert len(dims["aggregate"].choices) == 12
    ens = {d.name: d for d in load_family_config("kronos_ensemble").space.dimensions}
    assert (ens["temp_max"].low, ens["temp_max"].high, ens["temp_max"].at_least) == (0.20, 0.35, "temperature")
    std = {d.name: d for d in load_family_config("kronos_standard").space.dimensions}
    assert std["top_k"].choices == (0, 16, 20, 24, 28, 32) and (std["clip"].low, std["clip"].high) == (1.2, 2.5)


def test_when_production_families_listed_then_test_family_is_not_among_them():
    assert family_names() == ["kronos_ensemble", "kronos_standard", "toto", "toto2"]
    assert "bootstrap_returns" in family_names(production_only=False)


@pytest.mark.parametrize("data, message", [
    ({"context_length": 512, "search_space": {"num_samples": {"choices": [64, 0]}, "aggregate": {"choices": ["mean"]}}},
     "search_space.num_samples.choices[1]: 0 must be >= 1"),
    ({"context_length": 512, "search_space": {"num_sample": {"choices": [64]}}},
     "search_space.num_sample: unknown parameter for family toto"),
    ({"context_length": 512, "search_space": {"num_samples": {"choices": [64]}}},
     "search_space.aggregate: required by family toto"),
    ({"context_length": 512, "search_space": {"num_samples": {"choices": [64]}, "aggregate": {"choices": ["mean"]}},
      "fixed": {"samples_per_batch": 48}},
     "samples_per_batch: 48 does not divide num_samples 64"),
    ({"context_length": "long"}, "context_length: 'long' must be a positive integer"),
    ({"context_length": 512, "colour": 1}, "colour: unknown key"),
])
def test_when_space_is_invalid_then_error_names_file_and_key(data, message):
    with pytest.raises(ConfigError) as info:
        parse("toto", data)
    assert str(FILE) in str(info.value) and message in str(info.value)


def test_when_space_has_a_bad_aggregate_then_error_names_the_spec():
    with pytest.raises(AggregationError, match="'trimmed_mean_60'"):
        parse("toto", {"context_length": 512, "search_space": {
            "num_samples": {"choices": [64]}, "aggregate": {"choices": ["mean", "trimmed_mean_60"]}}})


def test_when_at_least_names_a_later_dimension_then_error():
    with pytest.raises(ConfigError, match="at_least: 'temperature' must name a dimension listed before it"):
        parse("kronos_ensemble", {"context_length": 256, "search_space": {
            "temp_max": {"low": 0.2, "high": 0.35, "at_least": "temperature"},
            "temperature": {"low": 0.1, "high": 0.25}}})


def test_when_log_scale_has_nonpositive_low_then_error():
    with pytest.raises(ConfigError, match="log scale needs low > 0"):
        parse("kronos_standard", {"context_length": 256, "search_space": {
            "top_k": {"low": 0, "high": 32, "log": True}}})


def run_space(space: SearchSpace, n: int = 200, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(space.sample_config(trial))
        study.tell(trial, 0.0)
    return configs


def test_when_space_runs_in_optuna_then_bounds_are_inclusive_and_categoricals_exact():
    space = SearchSpace("t", (Dimension("c", "categorical", choices=(1, 2, 3)),
                              Dimension("i", "int", low=0, high=2),
                              Dimension("f", "float", low=0.5, high=0.5)), fixed={"k": 7})
    configs = run_space(space, 60)
    assert {c["c"] for c in configs} == {1, 2, 3}
    assert {c["i"] for c in configs} == {0, 1, 2}  # both ends reachable: inclusive
    assert {c["f"] for c in configs} == {0.5} and all(c["k"] == 7 for c in configs)


def test_when_log_scale_then_samples_spread_over_decades():
    space = SearchSpace("t", (Dimension("f", "float", low=1e-4, high=1.0, log=True),))
    values = [c["f"] for c in run_space(space, 400)]
    assert min(values) >= 1e-4 and max(values) <= 1.0
    assert sum(v < 1e-2 for v in values) > 100  # uniform would put ~1% below 0.01


def test_when_temp_max_is_at_least_temperature_then_every_suggestion_respects_it():
    space = load_family_config("kronos_ensemble").space
    configs = run_space(space, 200)
    assert all(c["temp_max"] >= c["temperature"] for c in configs)
    assert all(0.20 <= c["temp_max"] <= 0.35 for c in configs)
    family = family_class("kronos_ensemble")()
    for c in configs[:20]:
        family.check_params(c)


def test_when_space_is_pickled_then_it_still_works():
    import pickle

    space = pickle.loads(pickle.dumps(load_family_config("toto").space))
    assert set(run_space(space, 3)[0]) == {"num_samples", "aggregate"}


def test_when_top_k_is_on_then_top_p_is_not_searched_and_the_config_says_1():
    space = load_family_config("kronos_standard").space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen_k = set()
    for _ in range(40):
        trial = study.ask()
        config = space.sample_config(trial)
        seen_k.add(config["top_k"] > 0)
        if config["top_k"] > 0:
            assert "top_p" not in trial.params and config["top_p"] == 1.0
        else:
            assert "top_p" in trial.params and 0.70 <= config["top_p"] <= 0.90
        study.tell(trial, 0.0)
    assert seen_k == {True, False}
    assert "top_p float [0.7, 0.9] if top_k ∈ {0}, else 1.0" in [d.describe() for d in space.dimensions]


@pytest.mark.parametrize("top_p, message", [
    ({"low": 0.7, "high": 0.9, "only_if": {"top_k": [0]}}, "top_p.otherwise: needed with only_if"),
    ({"low": 0.7, "high": 0.9, "only_if": {"clip": [1.0]}, "otherwise": 1.0},
     "top_p.only_if: 'clip' must name a dimension listed before it (listed: top_k)"),
    ({"low": 0.7, "high": 0.9, "only_if": {"top_k": [-1]}, "otherwise": 1.0}, "only_if.top_k[0]: -1 must be >= 0"),
    ({"low": 0.7, "high": 0.9, "only_if": {"top_k": [0]}, "otherwise": 2.0}, "top_p.otherwise: 2.0 must be <= 1"),
    ({"low": 0.7, "high": 0.9, "otherwise": 1.0}, "top_p.otherwise: only used with only_if"),
    ({"low": 0.7, "high": 0.9, "only_if": {"top_k": [5]}, "otherwise": 1.0},
     "top_p.only_if.top_k: 5 is never suggested for top_k (top_k ∈ {0, 16})"),
])
def test_when_a_condition_is_invalid_then_error_names_it(top_p, message):
    with pytest.raises(ConfigError) as info:
        parse("kronos_standard", {"context_length": 256, "search_space": {
            "top_k": {"choices": [0, 16]}, "top_p": top_p, "temperature": {"low": 0.1, "high": 0.3},
            "sample_count": {"choices": [16]}, "max_context": {"choices": [64]}, "clip": {"low": 1.2, "high": 2.5}}})
    assert message in str(info.value)


@pytest.mark.parametrize("family", ["toto", "kronos_standard", "kronos_ensemble", "bootstrap_returns"])
def test_when_the_default_is_enqueued_then_the_first_trial_is_exactly_the_default(family):
    config = load_family_config(family)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(config.default_point)
    assert config.space.sample_config(study.ask()) == config.default
    assert family_class(family)().check_params(config.default) == config.default


def test_when_shipped_defaults_are_read_then_they_are_upstreams_where_the_space_allows():
    assert load_family_config("toto").default == {"num_samples": 256, "aggregate": "median"}
    std = load_family_config("kronos_standard").default
    assert (std["top_k"], std["top_p"], std["temperature"], std["clip"]) == (0, 0.9, 0.3, 2.5)


TOTO = {"num_samples": {"choices": [64, 256]}, "aggregate": {"choices": ["mean", "median"]}}
KRONOS = {"temperature": {"low": 0.1, "high": 0.3}, "top_k": {"choices": [0, 16]},
          "top_p": {"low": 0.7, "high": 0.9, "only_if": {"top_k": [0]}, "otherwise": 1.0},
          "sample_count": {"choices": [16]}, "max_context": {"choices": [64]},
          "clip": {"low": 1.2, "high": 2.5, "step": 0.1}}
KRONOS_DEFAULT = {"temperature": 0.3, "top_k": 0, "top_p": 0.9, "sample_count": 16, "max_context": 64, "clip": 2.5}


@pytest.mark.parametrize("family, space, fixed, default, message", [
    ("toto", TOTO, {}, {"num_samples": 96, "aggregate": "median"},
     "default.num_samples: 96 is not a value the space can suggest (num_samples ∈ {64, 256})"),
    ("toto", TOTO, {}, {"num_samples": 64}, "default.aggregate: missing; the default names every searched dimension"),
    ("toto", TOTO, {"samples_per_batch": 32}, {"num_samples": 64, "aggregate": "mean", "samples_per_batch": 16},
     "default.samples_per_batch: not a searched dimension (a fixed parameter: it applies to every trial already)"),
    ("toto", TOTO, {}, [64, "mean"], "default: must be a mapping"),
    ("kronos_standard", KRONOS, {}, {**KRONOS_DEFAULT, "temperature": 1.0},
     "default.temperature: 1.0 is not a value the space can suggest (temperature float [0.1, 0.3])"),
    ("kronos_standard", KRONOS, {}, {**KRONOS_DEFAULT, "clip": 2.45},
     "default.clip: 2.45 is not a value the space can suggest"),
    ("kronos_standard", KRONOS, {}, {**KRONOS_DEFAULT, "top_k": 16},
     "default.top_p: 0.9 is never used: top_k is 16, so top_p is 1.0; give that or leave it out"),
    ("kronos_standard", KRONOS, {}, {**KRONOS_DEFAULT, "top_p": 2},
     "default.top_p: 2.0 must be <= 1"),
])
def test_when_a_default_is_not_in_the_space_then_error_names_file_and_key(family, space, fixed, default, message):
    context = 512 if family == "toto" else 256
    with pytest.raises(ConfigError) as info:
        parse(family, {"context_length": context, "search_space": space, "fixed": fixed, "default": default})
    assert str(info.value).startswith(f"{FILE}: ") and message in str(info.value)


def test_when_temp_max_default_is_below_the_default_temperature_then_it_is_refused():
    space = {"temperature": {"low": 0.1, "high": 0.25}, "temp_max": {"low": 0.2, "high": 0.35, "at_least": "temperature"},
             "top_k": {"choices": [16]}, "top_p": {"choices": [1.0]}, "num_samples": {"choices": [8]},
             "max_context": {"choices": [64]}, "clip": {"choices": [2.0]}, "aggregate": {"choices": ["mean"]}}
    default = {"temperature": 0.25, "temp_max": 0.22, "top_k": 16, "top_p": 1.0, "num_samples": 8,
               "max_context": 64, "clip": 2.0, "aggregate": "mean"}
    with pytest.raises(ConfigError, match=r"default.temp_max: 0.22 is not a value the space can suggest"):
        parse("kronos_ensemble", {"context_length": 256, "search_space": space, "default": default})
    config = parse("kronos_ensemble", {"context_length": 256, "search_space": space,
                                       "default": {**default, "temp_max": 0.3}})
    assert config.default["temp_max"] == 0.3 and config.default_point["top_p"] == 1.0


def test_when_a_conditional_dimension_does_not_apply_then_the_default_may_leave_it_out():
    default = {k: v for k, v in KRONOS_DEFAULT.items() if k != "top_p"}
    config = parse("kronos_standard", {"context_length": 256, "search_space": KRONOS,
                                       "default": {**default, "top_k": 16}})
    assert config.default["top_p"] == 1.0 and "top_p" not in config.default_point
