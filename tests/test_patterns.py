"""Pattern tables on synthetic symbols with a planted pattern, and the hypotheses' verdicts."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.trading_experiment import make_experiment, write_bars
from tuner.cli import main
from tuner.core.errors import DataError
from tuner.decisions.patterns import (
    characteristics,
    chosen_hyperparameters,
    hypotheses,
    read_tags,
    win_rates,
)

SYMBOLS = [f"S{i:02d}" for i in range(30)]


def _planted():
    """30 symbols with rising volatility; the high tercile is won by toto with trimmed means and
    256 samples, the rest by kronos_ensemble with the median and 4096 samples."""
    measures = {s: {"volatility_value": 0.1 + 0.01 * i, "trend_value": (i * 7 % 30) / 30, "frequency": "daily"}
                for i, s in enumerate(SYMBOLS)}
    frame = characteristics(measures)
    high = set(frame.index[frame["volatility"] == "high"])
    winners = {s: "toto" if s in high else "kronos_ensemble" for s in SYMBOLS}
    configs = {"toto": {s: ({"aggregate": "trimmed_mean_10", "num_samples": 256} if s in high else
                            {"aggregate": "median", "num_samples": 4096}) for s in SYMBOLS}}
    return frame, winners, configs


def test_when_high_volatility_symbols_are_won_by_one_family_then_the_win_table_shows_it():
    frame, winners, _ = _planted()
    rows = {(r["characteristic"], r["level"], r["family"]): r
            for r in win_rates(frame, winners, ["kronos_ensemble", "toto"])}
    high, low = rows[("volatility", "high", "toto")], rows[("volatility", "low", "toto")]
    assert (high["wins"], high["symbols"], low["wins"]) == (10, 10, 0)
    assert high["ci"][0] > 0.6 and low["ci"][1] < 0.4  # the intervals separate the terciles
    trend = [r for k, r in rows.items() if k[0] == "trend" and k[2] == "toto"]
    assert all(r["ci"][0] < r["share"] < r["ci"][1] for r in trend if 0 < r["share"] < 1)


def test_when_the_recipe_is_planted_then_hyperparameters_and_the_hypothesis_follow_it():
    frame, winners, configs = _planted()
    rows = chosen_hyperparameters(frame, configs)
    agg = {r["level"]: r for r in rows if r["param"] == "aggregate" and r["characteristic"] == "volatility"}
    assert agg["high"]["most_common"] == "trimmed_mean_10" and agg["high"]["share"] == 1.0
    assert agg["low"]["most_common"] == "median"
    samples = {r["level"]: r for r in rows if r["param"] == "num_samples" and r["characteristic"] == "volatility"}
    assert samples["high"]["mean"] == 256 and samples["low"]["mean"] == 4096
    summary = {"symbols": {s: {"families": {"toto": {"config": configs["toto"][s]}}} for s in SYMBOLS}}
    found = {h["claim"][:20]: h for h in hypotheses(summary, frame, winners)}
    recipe = next(h for k, h in found.items() if k.startswith("high-volatility"))
    assert recipe["verdict"] == "consistent" and recipe["data"].endswith("low-vol: 10 of 10")
    toto = next(h for k, h in found.items() if k.startswith("Toto wins"))
    assert toto["estimate"] == pytest.approx(1 / 3) and toto["verdict"] == "contradicted"
    assert next(h for k, h in found.items() if k.startswith("Kronos ensemble is"))["verdict"] == "not testable"


def test_when_tags_file_lists_a_symbol_twice_then_the_error_names_the_line(tmp_path):
    (tmp_path / "symbols.csv").write_text("symbol,sector\nAAA,tech\nBBB,energy\nAAA,tech\n")
    with pytest.raises(DataError, match=r"symbols.csv line 4: symbol 'AAA' is listed twice"):
        read_tags(tmp_path / "symbols.csv")


def test_when_patterns_cli_runs_with_tags_then_tags_are_a_characteristic(tmp_path):
    data = tmp_path / "data"
    write_bars(data, "AAA", 310, seed=1)
    write_bars(data, "BBB", 310, seed=2, vol=0.03)
    make_experiment(tmp_path / "results", data, 310)
    pd.DataFrame({"symbol": ["AAA", "BBB"], "sector": ["tech", "energy"]}).to_csv(data / "symbols.csv", index=False)
    result = CliRunner().invoke(main, ["patterns", "exp", "--storage", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert "sector=energy" in result.output and "BBB vol mid" in result.output
    assert "Toto wins 70-80 % of stocks | toto was not tuned" in result.output
