"""Decisions from winner files' ``significance`` sections: the report's flags and table, and
`tuner promote --only-significant` (fabricated experiments, built as in tests/test_report.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.test_report import make_experiment
from tuner.cli import main
from tuner.decisions.flags import LIKELY_OVERFIT, LUCK, NOT_BETTER_THAN_DEFAULT, significance_flags
from tuner.decisions.promote import PROMOTE, SKIP, plan_promotions, significance_hold
from tuner.decisions.report import render_csv, render_table
from tuner.decisions.results import load_report


def comparison(p_value: float | None, mean_difference: float | None = -0.001, reason: str | None = None) -> dict:
    out = {"statistic": None if p_value is None else -2.0, "p_value": p_value,
           "mean_difference": mean_difference, "ci": None if p_value is None else [-0.002, -0.0001],
           "windows": 20}
    return {**out, "reason": reason} if reason else out


def section(p_default: float | None = 0.01, p_baseline: float | None = 0.01, spa: float | None = 0.01,
            pbo: float | None = 0.1, members=("toto",), default_diff: float | None = -0.001,
            default_reason: str | None = None) -> dict:
    return {"vs_baseline": {"validation": comparison(0.001), "test": comparison(p_baseline)},
            "vs_default": {"validation": comparison(0.01),
                           "test": comparison(p_default, default_diff, default_reason)},
            "spa_p_value": spa, "reality_check_p_value": spa, "pbo": pbo,
            "mcs": {"members": list(members), "p_values": {}, "alpha": 0.1, "windows": 20, "period": "test"},
            "reasons": {}}


def add_section(root: Path, family: str, symbol: str, data: dict) -> None:
    file = root / family / f"{symbol}.json"
    document = json.loads(file.read_text())
    document["significance"] = data
    file.write_text(json.dumps(document))


@pytest.fixture
def experiment(tmp_path):
    """AAA (toto) beats everything; BBB (kronos_standard) does not beat its default on test and
    its study looks like luck and overfit; CCC (toto) has no significance section."""
    root = make_experiment(tmp_path / "results")
    add_section(root, "toto", "AAA", section())
    add_section(root, "kronos_standard", "BBB", section(p_default=0.31, spa=0.2, pbo=0.64,
                                                        members=("toto", "kronos_standard")))
    return tmp_path


@pytest.mark.parametrize("data, flags", [
    (None, ()),
    (section(), ()),
    (section(p_default=0.05), (NOT_BETTER_THAN_DEFAULT,)),
    (section(p_default=None, default_diff=0.0, default_reason="identical errors on every window"),
     (NOT_BETTER_THAN_DEFAULT,)),
    (section(p_default=None, default_diff=None, default_reason="no per-window errors of the default config"), ()),
    (section(spa=0.05), (LUCK,)),
    (section(spa=None), ()),
    (section(pbo=0.5), ()),
    # PBO > 0.5 alone is not overfit when the winner beats the default or the baseline on test.
    (section(pbo=0.51), ()),
    (section(p_default=0.2, pbo=0.51), (NOT_BETTER_THAN_DEFAULT,)),
    (section(p_default=0.2, p_baseline=0.06, pbo=0.51), (NOT_BETTER_THAN_DEFAULT, LIKELY_OVERFIT)),
    (section(p_default=0.2, p_baseline=0.3, spa=0.3, pbo=0.9), (NOT_BETTER_THAN_DEFAULT, LUCK, LIKELY_OVERFIT)),
])
def test_when_a_significance_section_is_read_then_its_flags_follow_the_rules(data, flags):
    assert significance_flags(data) == flags


def test_when_winner_files_have_significance_then_the_report_flags_and_tabulates_them(experiment):
    report = load_report("exp", str(experiment / "results"))
    rows = {(r.symbol, r.family): r for r in report.rows}
    assert rows[("AAA", "toto")].flags == ()
    # PBO 0.64, but it beats the baseline on test (p = 0.01): not likely-overfit.
    assert rows[("BBB", "kronos_standard")].flags == ("overfit", NOT_BETTER_THAN_DEFAULT, LUCK)
    assert rows[("CCC", "toto")].flags == ("no-skill",) and rows[("CCC", "toto")].pbo is None
    text = render_table(report)
    lines = text.split("significance (p: one-sided")[1].splitlines()[1:4]
    assert [line.split() for line in lines] == [
        ["symbol", "family", "p_vs_base", "p_vs_default", "spa_p", "pbo", "in_mcs"],
        ["AAA", "toto", "0.010", "0.010", "0.010", "0.10", "yes"],
        ["BBB", "kronos_standard", "0.010", "0.310", "0.200", "0.64", "yes"]]
    assert any(line.split()[:2] == [LUCK, "Hansen's"] for line in text.splitlines())  # the rule is printed
    frame = pd.read_csv(io.StringIO(render_csv(report)))
    bbb = frame[(frame["symbol"] == "BBB") & frame["winner"]].iloc[0]
    assert bbb["p_vs_default"] == 0.31 and bbb["flags"] == "overfit;not-better-than-default;luck"


def test_when_no_winner_file_has_significance_then_the_table_has_no_such_section(tmp_path):
    make_experiment(tmp_path)
    assert "significance (" not in render_table(load_report("exp", str(tmp_path)))


def test_when_only_significant_then_only_winners_beating_default_and_baseline_are_promoted(experiment):
    plan = plan_promotions("exp", str(experiment / "results"), experiment / "configs", only_significant=True)
    assert [(p.symbol, p.action) for p in plan] == [("AAA", PROMOTE), ("BBB", SKIP), ("CCC", SKIP)]
    assert plan[1].reason == "not significant on the test period: vs the default config: p=0.310 >= 0.05"
    assert plan[2].reason.startswith("no significance section in its result file")
    assert plan[0].document["significance"]["pbo"] == 0.1
    everything = plan_promotions("exp", str(experiment / "results"), experiment / "configs")
    assert [p.action for p in everything] == [PROMOTE] * 3


@pytest.mark.parametrize("data, alpha, reason", [
    (section(), 0.05, None),
    (section(p_default=0.001, p_baseline=0.02), 0.01, "not significant on the test period: vs the naive baseline: p=0.020 >= 0.01"),
    (section(p_default=None, default_diff=0.0, default_reason="identical errors on every window"), 0.05,
     "not significant on the test period: vs the default config: no test (identical errors on every window)"),
    (section(p_default=0.5, p_baseline=0.5), 0.05,
     "not significant on the test period: vs the default config: p=0.500 >= 0.05; "
     "vs the naive baseline: p=0.500 >= 0.05"),
])
def test_when_a_winner_is_checked_for_promotion_then_the_hold_reason_names_each_failed_test(data, alpha, reason):
    assert significance_hold({"significance": data}, alpha) == reason


def test_when_tuner_promote_only_significant_then_it_says_per_symbol_why_one_was_held_back(experiment):
    out = CliRunner().invoke(main, ["promote", "exp", "--storage", str(experiment / "results"),
                                    "--configs", str(experiment / "configs"), "--only-significant",
                                    "--alpha", "0.4"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert any(line.startswith("AAA: promoted toto") for line in lines)
    assert any(line.startswith("BBB: promoted kronos_standard") for line in lines)  # 0.31 < 0.4
    assert "CCC: skipped: no significance section in its result file" in out.output
    assert sorted(p.name for p in (experiment / "configs" / "best").iterdir()) == ["AAA.json", "BBB.json"]


def test_when_alpha_is_out_of_range_then_tuner_promote_refuses_it(experiment):
    out = CliRunner().invoke(main, ["promote", "exp", "--storage", str(experiment / "results"),
                                    "--only-significant", "--alpha", "1.5"])
    assert out.exit_code == 2 and "--alpha" in out.output
