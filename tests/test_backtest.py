"""The backtest on an experiment written in-process (weights-free family): its test-period
forecasts are the experiment's, it is leak-free, and its files and numbers hang together."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.trading_experiment import FAMILY, make_experiment, write_bars
from tuner.cli import main
from tuner.core.config import load_family_config
from tuner.core.data import load_bars
from tuner.core.summary_tables import ExperimentSummary
from tuner.decisions.backtest import backtest_symbol, run_backtest, symbol_inputs
from tuner.decisions.bar_forecasts import Forecasters
from tuner.decisions.decided import decided_config, locate_test_end

N, TUNED = 330, 310


@pytest.fixture
def experiment(tmp_path):
    data = tmp_path / "data"
    write_bars(data, "AAA", N, seed=1)
    write_bars(data, "BBB", N, seed=2, freq="h", price=1.1, vol=0.002)
    storage = make_experiment(tmp_path / "results", data, TUNED)
    return tmp_path, data, storage


def _inputs(storage, bars):
    results = ExperimentSummary.read(storage)
    summary = results.document
    choice = decided_config(bars.symbol, results.entry(bars.symbol))
    result = storage.read_json(f"{FAMILY}/{bars.symbol}.json")
    end = locate_test_end(bars, summary, result["baseline"]["test"]["errors"], 20)
    default = load_family_config(FAMILY).default
    with Forecasters(summary) as f:
        return symbol_inputs(bars, choice, default, end, summary["windows"], 0, f), result, end


def test_when_data_grew_then_test_period_is_found_and_forecasts_are_the_experiments(experiment):
    _, data, storage = experiment
    bars = load_bars(data / "AAA.csv", "AAA")
    inputs, result, end = _inputs(storage, bars)
    assert end == TUNED - 1
    assert (inputs.period == "test").sum() == 20 and (inputs.period == "after_test").sum() == N - TUNED
    test = inputs.period == "test"
    errors = np.abs(inputs.predicted["decided"][test] - inputs.bar_returns[test])
    assert np.allclose(errors, result["test"]["errors"], rtol=1e-5, atol=1e-9)


def test_when_future_bars_change_then_no_earlier_position_or_return_changes(experiment, tmp_path):
    _, data, storage = experiment
    bars = load_bars(data / "AAA.csv", "AAA")
    before, _, _ = _inputs(storage, bars)
    frame = pd.read_csv(data / "AAA.csv")
    cut = TUNED + 5  # bar index from which the future is rewritten
    frame.loc[cut:, ["Open", "High", "Low", "Close"]] *= 1.5
    (tmp_path / "other").mkdir()
    frame.to_csv(tmp_path / "other" / "AAA.csv", index=False)
    after, _, _ = _inputs(storage, load_bars(tmp_path / "other" / "AAA.csv", "AAA"))
    a, b = backtest_symbol(before, 5.0), backtest_symbol(after, 5.0)
    times = before.timestamps[cut - (TUNED - 20)]
    early_a, early_b = a[a["timestamp"] < times], b[b["timestamp"] < times]
    assert len(early_a) and early_a.reset_index(drop=True).equals(early_b.reset_index(drop=True))
    # The position held over bar `cut` is decided before it: it must not see the change either.
    decided = ["timestamp", "role", "rule", "predicted_return", "position"]
    at_a, at_b = (x[x["timestamp"] <= times][decided].reset_index(drop=True) for x in (a, b))
    assert at_a.equals(at_b)
    assert not a[a["timestamp"] > times]["bar_return"].equals(b[b["timestamp"] > times]["bar_return"])


def test_when_backtesting_then_files_hold_every_symbol_role_and_rule(experiment):
    root, _, storage = experiment
    doc = run_backtest("exp", str(root / "results"), costs_bps=10)
    on_disk = json.loads((root / "results" / "exp" / "backtest.json").read_text())
    assert on_disk["symbols"].keys() == {"AAA", "BBB"} == doc["symbols"].keys()
    aaa = doc["symbols"]["AAA"]
    assert set(aaa["strategies"]) == {"decided", "default", "naive", "buy_and_hold"}
    assert set(aaa["strategies"]["decided"]) == {"sign", "scaled"}
    assert aaa["frequency"] == {"label": "daily-7", "bars_per_year": 365.0}
    assert doc["symbols"]["BBB"]["frequency"]["label"] == "intraday"
    naive = aaa["strategies"]["naive"]["sign"]["all"]
    assert naive["total_return"] == 0 and naive["sharpe"] is None and naive["turnover"] == 0
    hold = aaa["strategies"]["buy_and_hold"]["sign"]["all"]
    assert hold["costs"] == pytest.approx(10 / 1e4)  # one entry trade
    frame = storage.read_parquet("backtest.parquet")
    assert len(frame) == 2 * 4 * 2 * (N - TUNED + 20)  # symbols × roles × rules × bars
    dsr = aaa["deflated_sharpe"]["sign"]
    assert dsr["trials"] == 6 and 0 <= dsr["dsr"] <= 1
    diff = aaa["vs_default"]["sign"]
    assert diff["difference"] is None or diff["ci"][0] <= diff["difference"] <= diff["ci"][1]
    premise = doc["metric_premise"]["all"]["sharpe"]
    assert premise["studies"] == 2 and premise["trials"] == 12 and -1 <= premise["rho"] <= 1


def test_when_the_bars_were_rewritten_then_the_error_says_the_test_period_is_not_there(experiment, tmp_path):
    root, data, _ = experiment
    write_bars(data, "AAA", N, seed=99)  # other prices: the experiment's test period is gone
    result = CliRunner().invoke(main, ["backtest", "exp", "--storage", str(root / "results"), "--no-premise"])
    assert result.exit_code == 1
    assert "AAA.csv: the experiment's test period is not in these bars" in result.output


def test_when_the_experiment_has_no_summary_then_backtest_says_to_finish_it(tmp_path):
    (tmp_path / "results" / "half").mkdir(parents=True)
    result = CliRunner().invoke(main, ["backtest", "half", "--storage", str(tmp_path / "results")])
    assert result.exit_code == 1 and "no summary yet; run or resume experiment 'half'" in result.output
