"""The HTML report's significance table, its flag legend, rounded configs and family counts
(fabricated experiments, built as in tests/test_report.py)."""

from __future__ import annotations

import html
import re

from tests.test_report import make_experiment
from tests.test_significance_decisions import add_section, section
from tuner.decisions.flags import FLAG_RULES, SIGNIFICANCE_FLAG_RULES
from tuner.decisions.report import config_text, family_counts_text, render_html
from tuner.decisions.results import load_report


def _cells(row_html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row_html)]


def _section(page: str, anchor: str) -> str:
    start = page.index(f"<h2 id='{anchor}'>")
    return page[start:page.index("<h2", start + 1)]


def test_when_winners_have_significance_then_the_html_tabulates_their_numbers(tmp_path):
    root = make_experiment(tmp_path)
    add_section(root, "toto", "AAA", section())
    # likely-overfit needs PBO > 0.5 and a winner that beats neither default nor baseline on test
    add_section(root, "kronos_standard", "BBB", section(p_default=0.31, p_baseline=0.2, spa=0.2, pbo=0.64,
                                                        members=("toto", "kronos_standard")))
    page = render_html(load_report("exp", str(tmp_path)))
    part = _section(page, "significance")
    for header in ("p vs baseline", "p vs default", "SPA p", "PBO", "in MCS"):
        assert f"<th>{header}</th>" in part
    rows = [_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", part) if "<td" in r]
    assert rows[0][:7] == ["AAA", "toto", "0.010", "0.010", "0.010", "0.10", "yes"]
    assert rows[1][:7] == ["BBB", "kronos_standard", "0.200", "0.310", "0.200", "0.64", "yes"]
    assert rows[1][7] == "overfit, not-better-than-default, luck, likely-overfit"
    assert rows[2][:7] == ["CCC", "toto", "-", "-", "-", "-", "-"]  # no section: shown, not dropped
    assert "1 winner(s) have no significance section" in part


def test_when_rows_carry_significance_flags_then_the_legend_gives_each_its_rule(tmp_path):
    root = make_experiment(tmp_path)
    add_section(root, "kronos_standard", "BBB", section(p_default=0.31, p_baseline=0.2, spa=0.2, pbo=0.64))
    report = load_report("exp", str(tmp_path))
    legend = _section(render_html(report) + "<h2", "flags")
    used = {f for r in report.rows for f in r.flags}
    assert {"luck", "likely-overfit", "not-better-than-default"} <= used
    for flag, rule in {**FLAG_RULES, **SIGNIFICANCE_FLAG_RULES}.items():
        assert f"<li><b>{flag}</b>: {html.escape(rule)}</li>" in legend
    assert all(f"<b>{flag}</b>" in legend for flag in used)


def test_when_a_config_has_long_floats_then_the_html_shows_them_rounded(tmp_path):
    assert config_text({"temperature": 0.30000000000000004, "w": [0.123456789, 2], "k": "x"}) == \
        '{"k": "x", "temperature": 0.3, "w": [0.1235, 2]}'
    root = make_experiment(tmp_path)
    file = root / "toto" / "AAA.json"
    file.write_text(file.read_text().replace('"num_samples": 256', '"num_samples": 256, "temp": 0.12345678901234'))
    page = render_html(load_report("exp", str(tmp_path)))
    assert "0.12345678901234" not in page.split("<h2 id='significance'>")[0]
    assert "&quot;temp&quot;: 0.1235" in page


def test_when_the_report_has_blends_then_every_family_counts_studies_and_blends_apart(tmp_path):
    make_experiment(tmp_path, blend=True)
    report = load_report("exp", str(tmp_path))
    assert family_counts_text(report.rows) == "9 studies, 1 blend"
    assert "<summary>9 studies, 1 blend</summary>" in render_html(report)


def test_when_many_studies_share_the_latency_scatter_then_only_the_best_trade_offs_are_labelled():
    from types import SimpleNamespace

    from tuner.decisions.plots import LATENCY_LABELS, latency_error_figure
    from tuner.decisions.results import StudyRow

    rows = [StudyRow(symbol=f"S{i:02d}", family=family, winner=False,
                     validation_pct_return_mae=0.01 + ((i * 7 + j * 3) % 29) / 1000,
                     validation_latency_per_forecast_s=0.01 * (1 + (i * 5 + j * 11) % 23))
            for i in range(30) for j, family in enumerate(("toto", "kronos_standard", "kronos_ensemble"))]
    fig = latency_error_figure(SimpleNamespace(rows=rows))
    points = [(x, y, text) for t in fig.data for x, y, text in zip(t.x, t.y, t.text, strict=True)]
    assert len(points) == 90
    labelled = [(x, y) for x, y, text in points if text]
    assert 0 < len(labelled) <= LATENCY_LABELS
    for x, y in labelled:  # each labelled point: no other point is better on both axes
        assert not any(ox < x and oy < y for ox, oy, _ in points)
    assert all(t.hovertemplate.startswith("%{customdata[0]}") for t in fig.data)  # the rest on hover
