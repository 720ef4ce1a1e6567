"""Significance tests of winners: Diebold–Mariano (power, size, formula), the block-bootstrap CI,
SPA / Reality Check, the Model Confidence Set, PBO by CSCV, and the assembled section.

Synthetic errors mimic the project's: ``r`` are one-bar returns (about 1 %), the naive baseline's
error is ``|r|``, a config's is ``|r + its own noise|`` (every forecast shares the market's move)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from tuner.core.statistics.significance import (
    block_length,
    bootstrap_ci,
    diebold_mariano,
    dm_statistic,
    model_confidence_set,
    pbo,
    spa_test,
    winner_significance,
)

SEEDS = 200
WINDOWS = 20


def returns(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(0.0, 0.01, shape)


def binomial_band(n: int, p: float = 0.05, mass: float = 0.999) -> tuple[float, float]:
    """Rejection rates a test of true size ``p`` stays within over ``n`` seeds, with prob ``mass``."""
    low, high = stats.binom.interval(mass, n, p)
    return low / n, high / n


# ------------------------------------------------------------------------------ Diebold–Mariano


def test_when_horizon_is_one_then_the_dm_statistic_is_the_paired_t_test():
    d = np.random.default_rng(0).normal(0.001, 0.01, WINDOWS)
    statistic, p_value = dm_statistic(d)
    reference = stats.ttest_1samp(d, 0.0, alternative="less")
    assert statistic == pytest.approx(reference.statistic) and p_value == pytest.approx(reference.pvalue)


def test_when_horizon_is_two_then_the_lag_one_autocovariance_and_the_hln_factor_enter():
    d = np.random.default_rng(1).normal(-0.002, 0.01, WINDOWS)
    n, c = len(d), d - d.mean()
    gamma0, gamma1 = c @ c / n, c[1:] @ c[:-1] / n
    hln = np.sqrt((n + 1 - 4 + 2 / n) / n)
    for kernel, variance in (("rectangular", gamma0 + 2 * gamma1), ("bartlett", gamma0 + gamma1)):
        statistic, p_value = dm_statistic(d, horizon=2, kernel=kernel)
        assert statistic == pytest.approx(d.mean() / np.sqrt(variance / n) * hln)
        assert p_value == pytest.approx(stats.t.cdf(statistic, n - 1))


def test_when_one_config_is_truly_better_then_dm_rejects_in_almost_every_seed():
    rng = np.random.default_rng(2)
    r = returns(rng, SEEDS, WINDOWS)
    # The winner sees 60 % of the move: its mean error is about 40 % of the baseline's.
    winner = np.abs(0.4 * r + rng.normal(0, 0.001, r.shape))
    _, p_value = dm_statistic(winner - np.abs(r))
    assert np.mean(p_value < 0.05) >= 0.95


def test_when_all_configs_are_equal_then_dm_rejects_at_the_nominal_rate():
    rng = np.random.default_rng(3)
    r = returns(rng, SEEDS, WINDOWS)
    a, b = (np.abs(r + rng.normal(0, 0.004, r.shape)) for _ in range(2))
    _, p_value = dm_statistic(a - b)
    low, high = binomial_band(SEEDS)
    assert low <= np.mean(p_value < 0.05) <= high


def test_when_horizon_two_errors_overlap_then_the_hac_variance_keeps_the_size():
    rng = np.random.default_rng(4)
    shocks = rng.normal(0, 1, (SEEDS, WINDOWS + 1))
    d = shocks[:, 1:] + shocks[:, :-1]  # MA(1): two-bar forecasts share a bar
    low, high = binomial_band(SEEDS)
    assert low <= np.mean(dm_statistic(d, horizon=2)[1] < 0.05) <= high
    # Ignoring the overlap (h = 1) over-rejects: the test above can fail.
    assert np.mean(dm_statistic(d, horizon=1)[1] < 0.05) > high


def test_when_a_config_is_truly_better_then_the_comparison_rejects_and_the_ci_excludes_zero():
    rng = np.random.default_rng(5)
    r = returns(rng, WINDOWS)
    result = diebold_mariano(np.abs(0.4 * r + rng.normal(0, 0.001, WINDOWS)), np.abs(r), seed=1)
    assert result.p_value < 0.01 and result.statistic < 0 and result.better()
    assert result.ci[0] < result.ci[1] < 0 and result.ci[0] < result.mean_difference < result.ci[1]


def test_when_configs_are_equal_then_the_ci_covers_zero_in_most_seeds():
    rng = np.random.default_rng(6)
    r = returns(rng, 60, WINDOWS)
    a, b = (np.abs(r + rng.normal(0, 0.004, r.shape)) for _ in range(2))
    covered = [low <= 0 <= high for low, high in (bootstrap_ci(x - y, reps=300, seed=i)
                                                  for i, (x, y) in enumerate(zip(a, b, strict=True)))]
    assert np.mean(covered) >= 0.8  # a 95 % interval; block bootstraps on 20 windows run a bit short


def test_when_the_bootstrap_is_seeded_then_the_ci_repeats():
    d = np.random.default_rng(7).normal(0, 1, WINDOWS)
    assert bootstrap_ci(d, seed=3) == bootstrap_ci(d, seed=3) != bootstrap_ci(d, seed=4)


@pytest.mark.parametrize("winner, other, reason", [
    (np.ones(4), np.zeros(4), "too few windows: 4 < 5"),
    (np.ones(20), np.ones(20), "identical errors on every window"),
    (np.ones(20), np.zeros(20), "the error difference does not vary"),
    (np.ones(20), np.zeros(19), "different windows: 20 winner errors vs 19"),
])
def test_when_a_comparison_is_undefined_then_it_is_null_with_a_reason(winner, other, reason):
    result = diebold_mariano(winner, other).to_dict()
    assert result["statistic"] is None and result["p_value"] is None and result["ci"] is None
    assert reason in result["reason"]


def test_when_windows_grow_then_the_block_length_follows_the_cube_root_and_the_horizon():
    assert [block_length(n) for n in (8, 20, 27, 28, 100)] == [2, 3, 3, 4, 5]
    assert block_length(20, horizon=5) == 5


# ------------------------------------------------------------------------------ SPA, MCS


def trial_errors(rng: np.random.Generator, r: np.ndarray, configs: int, noise: float = 0.004) -> np.ndarray:
    return np.abs(r[:, None] + rng.normal(0, noise, (len(r), configs)))


def test_when_one_trial_is_truly_better_than_the_baseline_then_spa_and_reality_check_are_small():
    rng = np.random.default_rng(8)
    r = returns(rng, WINDOWS)
    models = trial_errors(rng, r, 20)
    models[:, 7] = np.abs(0.4 * r + rng.normal(0, 0.001, WINDOWS))
    result = spa_test(np.abs(r + rng.normal(0, 0.004, WINDOWS)), models, seed=1, calibrated_only=False)
    assert result.spa_p_value < 0.05 and result.reality_check_p_value < 0.05 and result.models == 20


def test_when_no_trial_is_better_than_the_baseline_then_spa_is_large():
    rng = np.random.default_rng(9)
    r = returns(rng, WINDOWS)
    models = trial_errors(rng, r, 20, noise=0.008)  # every config adds noise to the move
    result = spa_test(np.abs(r), models, seed=1, calibrated_only=False)
    assert result.spa_p_value > 0.5 and result.reality_check_p_value > 0.5


def test_when_all_trials_equal_the_baseline_in_distribution_then_spa_rarely_rejects():
    rng = np.random.default_rng(10)
    rejected = []
    for seed in range(40):
        r = returns(rng, WINDOWS)
        result = spa_test(np.abs(r + rng.normal(0, 0.004, WINDOWS)), trial_errors(rng, r, 10), reps=200, seed=seed, calibrated_only=False)
        rejected.append(result.spa_p_value < 0.05)
    # Measured 10 % at 20 windows x 20 configs over 200 nulls (docstring); 40 seeds, loose band.
    assert np.mean(rejected) <= 0.25


def test_when_a_candidate_is_clearly_worse_then_the_mcs_drops_it_and_keeps_the_equals():
    rng = np.random.default_rng(11)
    r = returns(rng, WINDOWS)
    good = np.abs(0.4 * r + rng.normal(0, 0.001, WINDOWS))
    candidates = {"toto": good, "kronos_ensemble": np.abs(0.4 * r + rng.normal(0, 0.001, WINDOWS)),
                  "regime": good.copy(), "baseline": np.abs(r)}
    result = model_confidence_set(candidates, seed=1)
    assert "baseline" not in result.members and {"toto", "regime"} <= set(result.members)
    assert result.p_values["regime"] == result.p_values["toto"]  # a copy shares its twin's fate
    assert list(result.p_values) == list(candidates)


def test_when_one_candidate_is_given_then_there_is_no_mcs_and_the_reason_says_so():
    result = model_confidence_set({"toto": np.ones(20)})
    assert result.members is None and result.reason == "1 candidate(s): nothing to compare"


# ------------------------------------------------------------------------------ PBO


def test_when_one_config_dominates_then_pbo_is_near_zero():
    rng = np.random.default_rng(12)
    r = returns(rng, WINDOWS)
    errors = trial_errors(rng, r, 30)
    errors[:, 4] = np.abs(0.3 * r)
    result = pbo(errors)
    assert result.value <= 0.05 and (result.blocks, result.splits, result.configs) == (8, 70, 30)


def test_when_all_configs_are_equal_then_pbo_is_near_one_half():
    rng = np.random.default_rng(13)
    values = [pbo(trial_errors(rng, returns(rng, WINDOWS), 30)).value for _ in range(60)]
    assert 0.4 <= np.mean(values) <= 0.6


@pytest.mark.parametrize("a, value", [
    ([0, 0, 9, 9], 1.0),  # best on each half, worst on the other: always overfit
    ([0, 0, 0, 0], 0.0),  # best everywhere
])
def test_when_two_configs_on_two_blocks_then_pbo_is_the_hand_computed_share(a, value):
    errors = np.column_stack([np.array(a, dtype=float), np.ones(4)])
    result = pbo(errors)
    assert (result.value, result.blocks, result.splits) == (value, 2, 2)


@pytest.mark.parametrize("errors, reason", [
    (np.ones((3, 5)), "too few windows: 3 < 4"),
    (np.ones((20, 1)), "1 config(s): nothing to choose among"),
    (np.ones((20, 4)), "every config has the same errors"),
])
def test_when_pbo_cannot_be_computed_then_it_is_null_with_a_reason(errors, reason):
    result = pbo(errors)
    assert result.value is None and result.reason.startswith(reason)


# ------------------------------------------------------------------------------ the section


def study(seed: int = 14):
    rng = np.random.default_rng(seed)
    r = returns(rng, 2, WINDOWS)
    better = lambda x: np.abs(0.4 * x + rng.normal(0, 0.001, WINDOWS))  # noqa: E731
    winner = {"validation": better(r[0]), "test": better(r[1])}
    baseline = {"validation": np.abs(r[0]), "test": np.abs(r[1])}
    default = {"validation": np.abs(0.9 * r[0]), "test": np.abs(0.9 * r[1])}
    trials = np.column_stack([trial_errors(rng, r[0], 19), winner["validation"]])
    candidates = {"toto": winner["test"], "kronos_standard": default["test"], "baseline": baseline["test"]}
    return winner, baseline, default, trials, candidates


def test_when_a_winner_is_truly_better_then_its_section_says_so_on_every_test():
    winner, baseline, default, trials, candidates = study()
    section = winner_significance(winner, baseline, default, trials=trials, candidates=candidates, seed=2)
    for versus in ("vs_baseline", "vs_default"):
        for period in ("validation", "test"):
            assert section[versus][period]["p_value"] < 0.05 and section[versus][period]["ci"][1] < 0
    assert section["spa_p_value"] is None and section["pbo"] < 0.2  # SPA: 20 windows are too few
    assert section["reasons"]["spa_p_value"].startswith("not calibrated at 20 validation windows")
    assert section["mcs"]["members"] == ["toto"] and set(section["reasons"]) == {"spa_p_value", "reality_check_p_value"}
    assert section == winner_significance(winner, baseline, default, trials=trials, candidates=candidates, seed=2)


def test_when_inputs_are_missing_or_degenerate_then_the_section_has_nulls_with_reasons_and_no_nan():
    winner, baseline, _, _, _ = study()
    section = winner_significance({"validation": winner["validation"][:3], "test": None},
                                  {**baseline, "validation": baseline["validation"][:3]}, None,
                                  trials=np.ones((3, 4)))
    json.dumps(section, allow_nan=False)  # raises on NaN or inf
    assert section["vs_baseline"]["validation"]["reason"] == "too few windows: 3 < 5"
    assert section["vs_baseline"]["test"]["reason"] == "no per-window errors of the winner on test"
    assert section["vs_default"]["validation"]["reason"] == "no per-window errors of the default config on validation"
    assert section["spa_p_value"] is None and section["reasons"]["spa_p_value"] == "too few windows: 3 < 5"
    assert section["pbo"] is None and section["reasons"]["pbo"] == "too few windows: 3 < 4 (two blocks of two)"
    assert section["mcs"] is None and section["reasons"]["mcs"] == "no candidates' test-period errors"
