from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FAMILY_PARAMS, random_walk_bars
from tuner.core.data import load_bars
from tuner.core.errors import ConfigError
from tuner.core.families import family_class
from tuner.core.trial import TrialResult, run_trial
from tuner.core.windows import WindowSpec, make_periods


@pytest.fixture
def periods(write_csv):
    bars = load_bars(write_csv("AAA.csv", random_walk_bars(300, seed=11)))
    return make_periods(bars, WindowSpec(), 128)


def bootstrap():
    return family_class("bootstrap_returns")()


def test_when_same_seed_then_same_result_and_seed_is_recorded(periods):
    a = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=3)
    b = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=3)
    c = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=4)
    assert a.objective == b.objective != c.objective
    assert a.seed == 3 and a.to_dict()["seed"] == 3


def test_when_tuning_then_the_test_period_is_not_scored(periods):
    result = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=0)
    assert result.test is None and result.to_dict()["test"] is None


def test_when_winner_is_rescored_with_test_then_validation_is_the_trials_own_value(periods):
    tuning = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=9)
    final = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=9, with_test=True)
    assert final.validation.scores.pct_return_mae == tuning.validation.scores.pct_return_mae
    assert final.test.scores.windows == 20 and final.test.baseline.windows == 20


def test_when_result_round_trips_through_json_then_it_is_equal(periods):
    result = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=1, with_test=True)
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) >= {"symbol", "model_type", "config", "validation", "test", "baseline", "seed", "weights"}
    assert TrialResult.from_dict(data) == result


def test_when_params_have_an_unknown_key_then_error_names_it(periods):
    with pytest.raises(ConfigError, match="params.temperature: unknown parameter for family bootstrap_returns"):
        run_trial(bootstrap(), {**FAMILY_PARAMS["bootstrap_returns"], "temperature": 1}, periods, seed=0)


@pytest.mark.parametrize("family, params, message", [
    ("toto", {"num_samples": 64, "aggregate": "mean", "samples_per_batch": 48},
     "params.samples_per_batch: 48 does not divide num_samples 64"),
    ("kronos_ensemble", {**FAMILY_PARAMS["kronos_ensemble"], "temp_max": 0.05},
     "params.temp_max: 0.05 must be >= temperature 0.1"),
    ("kronos_standard", {**FAMILY_PARAMS["kronos_standard"], "top_p": 1.5}, "params.top_p: 1.5 must be <= 1"),
    ("kronos_standard", {**FAMILY_PARAMS["kronos_standard"], "top_k": 2.5}, "params.top_k: 2.5 must be an integer"),
])
def test_when_family_params_break_a_rule_then_error_names_it(family, params, message):
    with pytest.raises(ConfigError) as info:
        family_class(family)().check_params(params)
    assert str(info.value) == message


def test_when_evaluation_core_is_imported_then_ray_is_not():
    code = ("import sys, tuner.core.trial, tuner.decisions.evaluate, tuner.core.families, tuner.core.config, tuner.cli;"
            "from tuner.core.families import family_names; family_names();"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_when_winner_is_rescored_with_stability_folds_then_the_spread_is_reported(write_csv):
    bars = load_bars(write_csv("AAA.csv", random_walk_bars(300, seed=11)))
    periods = make_periods(bars, WindowSpec(stability_folds=2), 128)
    result = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=2, with_test=True)
    data = result.to_dict()["stability"]
    values = data["pct_return_mae_validation_and_folds"]
    assert len(values) == 3 and values[0] == result.objective
    assert data["spread"] == max(values) - min(values) > 0
    assert TrialResult.from_dict(result.to_dict()) == result
    tuning = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=2)
    assert tuning.folds == () and "stability" not in tuning.to_dict()


def test_when_a_winner_is_rescored_then_both_periods_keep_per_window_errors_for_model_and_baseline(periods):
    result = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=5, with_test=True)
    again = run_trial(bootstrap(), FAMILY_PARAMS["bootstrap_returns"], periods, seed=5, with_test=True)
    data = result.to_dict()
    for period in ("validation", "test"):
        assert len(data[period]["errors"]) == len(data["baseline"][period]["errors"]) == 20
        assert data[period]["errors"] != data["baseline"][period]["errors"]
    assert again.validation.scores.errors == result.validation.scores.errors  # seeded: same draws
    assert again.test.scores.errors == result.test.scores.errors


def test_when_a_winner_is_rescored_with_its_own_validation_scores_then_only_the_test_period_is_forecast(periods):
    family = bootstrap()
    params = FAMILY_PARAMS["bootstrap_returns"]
    tuning = run_trial(family, params, periods, seed=5)
    whole = run_trial(family, params, periods, seed=5, with_test=True)
    forecast_periods = []
    forecast = family.forecast
    family.forecast = lambda batch, *args, **kw: forecast_periods.append(batch.period) or forecast(batch, *args, **kw)
    final = run_trial(family, params, periods, seed=5, with_test=True, validation=tuning.validation.scores)
    assert forecast_periods == ["test"]
    assert final.validation.scores is tuning.validation.scores
    # The rest is what running the validation period again gives (same seed, same draws).
    assert final.validation.baseline == whole.validation.baseline
    assert final.validation.skill == whole.validation.skill is not None
    assert final.test.scores.errors == whole.test.scores.errors and final.test.baseline == whole.test.baseline
