"""A symbol that is not in the data gets close matches suggested (symbols are file stems, so
`--symbols AAPL` misses `AAPL_1d.csv`)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.conftest import random_walk_bars
from tuner.cli import main
from tuner.core.names import close_names, did_you_mean


@pytest.mark.parametrize("wanted, known, expected", [
    ("AAPL", ["AAPL_1d", "MSFT_1d", "AAPLX_1h"], ["AAPL_1d", "AAPLX_1h"]),
    ("aapl", ["AAPL", "AAPL_1d"], ["AAPL", "AAPL_1d"]),
    ("AAPL", ["1d_AAPL", "IBM"], ["1d_AAPL"]),
    ("MSTF", ["MSFT", "IBM"], ["MSFT"]),
    ("TSLA", ["AAPL", "IBM"], []),
])
def test_when_a_name_is_missing_then_close_names_rank_case_prefix_part_then_typos(wanted, known, expected):
    assert close_names(wanted, known) == expected


def test_when_nothing_is_close_then_no_suggestion_is_made():
    assert did_you_mean("TSLA", ["AAPL"]) == ""
    assert did_you_mean("AAPL", ["AAPL_1d", "AAPL_1h"]) == "; did you mean AAPL_1d or AAPL_1h?"


@pytest.fixture
def stem_data(write_csv, tmp_path):
    for name in ("AAPL_1d", "MSFT_1d"):
        write_csv(f"{name}.csv", random_walk_bars(120))
    return tmp_path / "data"


def test_when_evaluate_gets_a_symbol_without_its_file_suffix_then_the_error_suggests_the_stem(stem_data):
    result = CliRunner().invoke(main, ["evaluate", "--family", "bootstrap_returns", "--symbol", "AAPL",
                                       "--data", str(stem_data), "--params", '{"num_samples": 8}'])
    assert result.exit_code == 1
    assert f"symbol 'AAPL' not found in {stem_data}; did you mean AAPL_1d?" in result.output


def test_when_run_gets_symbols_without_their_file_suffix_then_the_error_suggests_the_stems(stem_data, tmp_path):
    result = CliRunner().invoke(main, ["run", "--data", str(stem_data), "--symbols", "AAPL,MSFT",
                                       "--families", "bootstrap_returns", "--storage", str(tmp_path / "r"),
                                       "--name", "x"])
    assert result.exit_code == 1
    assert "AAPL: symbol 'AAPL' not found" in result.output and "did you mean AAPL_1d?" in result.output
    assert "did you mean MSFT_1d?" in result.output
