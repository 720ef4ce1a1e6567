"""The report's first screen and the HTML page's top show the universe-level decisions and the
panel tests (issue 18 item 4)."""

from __future__ import annotations

from click.testing import CliRunner

from tests.decided_experiment import write
from tuner.cli import main
from tuner.decisions.report import render_html
from tuner.decisions.results import load_report


def test_when_an_experiment_has_decisions_then_tuner_report_opens_with_them_and_the_panel_tests(tmp_path):
    write(str(tmp_path), "exp", with_pooled=True)
    out = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path)])
    assert out.exit_code == 0, out.output
    first_screen = out.output.splitlines()[:24]
    assert any(line.startswith("decisions: own 1, pooled 2, default 0 of 3 symbols") for line in first_screen)
    panel = [line.split() for line in first_screen if line.startswith("bootstrap_returns  pooled vs default")]
    assert panel and panel[0][4:6] == ["3", "-20.00"] and panel[0][-1] == "date"
    assert any(line.split()[:3] == ["decided", "decisions", "vs"] for line in first_screen)
    rows = {line.split()[0]: line.split()[1] for line in out.output.split("decision per symbol")[1].splitlines()[2:5]}
    assert rows == {"EDGE": "own", "NULL": "pooled", "POOL": "pooled"}


def test_when_an_experiment_has_decisions_then_the_html_top_shows_them_with_reasons(tmp_path):
    write(str(tmp_path), "exp", with_pooled=False)
    page = render_html(load_report("exp", str(tmp_path)))
    top = page[:page.index("id='winners'")]
    assert "<b>own 1, pooled 0, default 2</b>" in top and "no pooled config was tuned" in top
    assert "winners vs default" in top and "was not tuned</td>" in top


def test_when_an_experiment_predates_decisions_then_the_report_has_no_decision_section(tmp_path):
    write(str(tmp_path), "exp", with_pooled=False)
    report = load_report("exp", str(tmp_path))
    from dataclasses import replace

    from tuner.decisions.report import render_table

    old = replace(report, decisions=None, symbol_decisions=None, panel=None)
    assert "decisions:" not in render_table(old) and "id='decisions'" not in render_html(old)
