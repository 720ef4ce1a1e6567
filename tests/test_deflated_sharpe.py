"""The Deflated Sharpe Ratio against Bailey & López de Prado's (2014) worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuner.core.statistics.deflated_sharpe import (
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
)


def test_when_the_papers_numerical_example_then_sr0_and_dsr_match_it():
    # Annualised SR 2.5 over 5 years of daily bars (T = 1250), N = 100 trials with annualised
    # Sharpe variance 1/2, skewness -3, kurtosis 10: SR0 ≈ 0.1132 per day, DSR ≈ 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe(2.5 / math.sqrt(250), 1250, skewness=-3, kurtosis=10, benchmark=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_when_one_trial_then_dsr_is_the_probabilistic_sharpe_against_zero():
    r = np.random.default_rng(0).normal(0.001, 0.01, 500)
    one = deflated_sharpe(r, trials=1, trial_sharpe_variance=0.01)
    assert one.expected_max_sharpe == 0.0
    assert one.dsr == pytest.approx(probabilistic_sharpe(one.sharpe, 500, one.skewness, one.kurtosis))
    many = deflated_sharpe(r, trials=50, trial_sharpe_variance=0.01)
    assert many.dsr < one.dsr  # more tries, more deflation


def test_when_returns_do_not_vary_then_a_clear_error():
    with pytest.raises(ValueError, match="zero variance"):
        deflated_sharpe(np.zeros(10), trials=3, trial_sharpe_variance=0.1)
