"""The HTML report's trading section links each symbol to its backtest and forward numbers."""

from __future__ import annotations

from tuner.core.storage import Storage
from tuner.decisions.report import trading_section_html, with_trading_section


def test_when_backtest_and_forward_exist_then_each_symbol_links_to_both(tmp_path):
    storage = Storage(str(tmp_path), "exp")
    perf = {"all": {"sharpe": 1.5, "total_return": 0.02, "hit_rate": 0.55, "max_drawdown": -0.01}}
    storage.write_json("backtest.json", {"costs_bps": 5, "notes": [], "symbols": {"AAA": {
        "strategies": {r: {"sign": perf, "scaled": perf} for r in ("decided", "default", "buy_and_hold")},
        "vs_default": {"sign": {"difference": 0.3, "ci": [-0.1, 0.7]}}, "deflated_sharpe": {"sign": {"dsr": 0.42}}}}})
    storage.write_json("forward/status.json", {"symbols": {"AAA": {
        "champion": {"source": "production", "family": "toto"}, "challenger": {"family": "toto"},
        "test": {"bars": 12, "mean_difference": 0.0001, "p_value": 0.8, "verdict": "undecided"}}}})
    page = with_trading_section("<html><body><h1>x</h1></body></html>", storage)
    assert "<a href='#backtest-AAA'>backtest</a> <a href='#forward-AAA'>forward</a>" in page
    assert "id='backtest-AAA'" in page and "id='forward-AAA'" in page
    assert "+0.30 [-0.10, +0.70]" in page and ">0.42<" in page and "undecided" in page
    assert page.endswith("</body></html>")


def test_when_nothing_was_backtested_then_the_section_says_how_to_get_it():
    assert "run <code>tuner backtest NAME</code>" in trading_section_html(None, None, None)
