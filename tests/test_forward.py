"""The forward ledger: idempotent, scores only new bars, leak-free; the sequential verdict and
`tuner promote --from-forward` promote only proven challengers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.trading_experiment import FAMILY, make_experiment, write_bars
from tuner.cli import main
from tuner.core.config import load_family_config
from tuner.core.summary_tables import ExperimentSummary
from tuner.decisions.forward import CHAMPION, LEDGER, Contender, read_ledger, run_forward

TUNED = 310


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    write_bars(data, "AAA", TUNED + 12, seed=1)
    write_bars(data, "BBB", TUNED + 12, seed=2)
    make_experiment(tmp_path / "results", data, TUNED)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "spaces").symlink_to(load_family_config(FAMILY).source.parent)
    return tmp_path, data


def _run(tmp_path, data):
    return run_forward("exp", str(tmp_path / "results"), data=data, configs=tmp_path / "configs")


def test_when_run_twice_then_the_second_run_adds_nothing_and_the_ledger_is_unchanged(setup):
    tmp_path, data = setup
    first = _run(tmp_path, data)
    ledger_path = tmp_path / "results" / "exp" / LEDGER
    before = ledger_path.read_bytes()
    assert first["added_rows"] == 2 * 2 * 12  # symbols × (champion, challenger) × new bars
    second = _run(tmp_path, data)
    assert second["added_rows"] == 0 and ledger_path.read_bytes() == before
    assert first["symbols"]["AAA"]["champion"]["source"] == "default"  # no configs/best yet


def test_when_bars_are_appended_then_only_they_are_scored_and_earlier_rows_stay(setup):
    tmp_path, data = setup
    _run(tmp_path, data)
    from tuner.core.storage import Storage

    storage = Storage(str(tmp_path / "results"), "exp")
    old = read_ledger(storage)
    write_bars(data, "AAA", TUNED + 15, seed=1)  # same walk, three more bars
    doc = _run(tmp_path, data)
    new = read_ledger(storage)
    assert doc["added_rows"] == 2 * 3
    key = ["symbol", "timestamp", "config_id"]
    merged = old.merge(new, on=key, suffixes=("_old", "_new"))
    assert len(merged) == len(old)
    assert np.array_equal(merged["forecast_old"].to_numpy(float), merged["forecast_new"].to_numpy(float))


def test_when_future_bars_change_then_earlier_forecasts_in_a_fresh_ledger_do_not(setup, tmp_path):
    tmp_path, data = setup
    first = _run(tmp_path, data)
    assert first["added_rows"]
    from tuner.core.storage import Storage

    storage = Storage(str(tmp_path / "results"), "exp")
    a = read_ledger(storage)
    (tmp_path / "results" / "exp" / LEDGER).unlink()
    frame = pd.read_csv(data / "AAA.csv")
    frame.loc[TUNED + 6:, ["Open", "High", "Low", "Close"]] *= 2.0
    frame.to_csv(data / "AAA.csv", index=False)
    _run(tmp_path, data)
    b = read_ledger(storage)
    cutoff = pd.Timestamp(frame["Date"].iat[TUNED + 6])
    cols = ["symbol", "timestamp", "role", "forecast", "predicted_return"]
    early = [x[(x["symbol"] == "AAA") & (x["timestamp"] <= cutoff)][cols].reset_index(drop=True) for x in (a, b)]
    assert len(early[0]) == 2 * 7 and early[0].equals(early[1])  # bar TUNED+6's forecast: bars before it


def _plant_ledger(tmp_path, edge: float):
    """A ledger where the challenger's errors are `edge` lower than the champion's (plus noise)."""
    from tuner.core.storage import Storage

    storage = Storage(str(tmp_path / "results"), "exp")
    rng = np.random.default_rng(0)
    rows = []
    times = pd.date_range("2030-01-01", periods=200, freq="D")
    for symbol, entry in ExperimentSummary.read(storage).entries():
        challenger = Contender("challenger", FAMILY, entry["config"], "experiment")
        champion = Contender(CHAMPION, FAMILY, dict(load_family_config(FAMILY).default), "default")
        base = np.abs(rng.normal(0.01, 0.004, 200))
        for c, err in ((champion, base + edge), (challenger, base + rng.normal(0, 0.002, 200))):
            rows.append(pd.DataFrame({"symbol": symbol, "timestamp": times, "role": c.role, "family": c.family,
                                      "config": c.config_json, "config_id": c.config_id, "error": err}))
    storage.write_parquet(LEDGER, pd.concat(rows, ignore_index=True))


def test_when_the_challenger_is_proven_better_then_promote_from_forward_promotes_it(setup):
    tmp_path, _ = setup
    _plant_ledger(tmp_path, edge=0.003)
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs"), "--from-forward"])
    assert result.exit_code == 0, result.output
    assert "AAA: promoted bootstrap_returns" in result.output
    written = json.loads((tmp_path / "configs" / "best" / "AAA.json").read_text())
    assert written["family"] == FAMILY


def test_when_the_forward_test_is_undecided_then_nothing_is_promoted(setup):
    tmp_path, _ = setup
    _plant_ledger(tmp_path, edge=0.0)
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs"), "--from-forward"])
    assert result.exit_code == 0, result.output
    assert "AAA: held back: forward test: undecided" in result.output
    assert not (tmp_path / "configs" / "best").exists()


def test_when_forward_cli_runs_then_it_prints_the_verdict_per_symbol(setup):
    tmp_path, data = setup
    args = ["forward", "exp", "--storage", str(tmp_path / "results"), "--data", str(data),
            "--configs", str(tmp_path / "configs")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "ledger: 48 rows (48 new)" in result.output
    assert "AAA: challenger bootstrap_returns vs default bootstrap_returns: 12 bars" in result.output
