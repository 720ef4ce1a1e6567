"""Reports on an experiment: per symbol the winner, its scores, the naive baseline and how every
family did, as a terminal table, CSV, Parquet or a self-contained HTML page with plots.

Reads only what ``tuner run`` stores under ``<storage>/<experiment>/`` (``summary.json``, the
``<family>/<SYMBOL>.json`` winner files, ``trials.parquet``, ``progress.json`` and
``tuner-experiment.json``), through :class:`~tuner.core.storage.Storage`, so URIs work; no Ray.

The rows come from :mod:`tuner.decisions.results`, the flags' rules from
:mod:`tuner.decisions.flags`.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.core import strict_json
from tuner.core.errors import ConfigError
from tuner.core.storage import Storage
from tuner.decisions.flags import FLAG_RULES, SIGNIFICANCE_FLAG_RULES
from tuner.decisions.results import COMPLETE, RUNNING, ExperimentReport, StudyRow

if TYPE_CHECKING:
    pass


FORMATS = ("table", "csv", "parquet", "html")


# ------------------------------------------------------------------------------------- text


def format_value(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def _text_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    """Aligned columns; ``align`` has one letter per column: ``l`` left, ``r`` right."""
    rows = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = []
    for cells in [list(headers), *rows]:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


def _trial_text(r: StudyRow) -> str:
    if r.trials_completed is None:
        return "-"
    text = f"{r.trials_completed}/{r.trials_budget}" if r.trials_budget is not None else str(r.trials_completed)
    return text + (f" ({r.trials_failed} failed)" if r.trials_failed else "")


def _flag_text(report: ExperimentReport, row: StudyRow) -> str:
    """The flags, 'ok' when none, '-' while running (nothing to check yet)."""
    return "-" if report.state == RUNNING else ",".join(row.flags) or "ok"


def header_lines(report: ExperimentReport) -> list[str]:
    """The report's first lines: experiment, state, trial counts, seed, date, labels."""
    facts = [report.state.upper() if report.state != COMPLETE else COMPLETE]
    if report.trial_counts:
        c = report.trial_counts
        facts.append(f"trials {c.get('completed', 0)} completed, {c.get('failed', 0)} failed, "
                     f"{c.get('never_ran', 0)} never ran")
    if report.seed is not None:
        facts.append(f"seed {report.seed}")
    if report.created_at:
        facts.append(f"created {report.created_at}")
    return [f"experiment {report.experiment}: " + "; ".join(facts), f"results: {report.root}",
            *report.labels]


def render_table(report: ExperimentReport) -> str:
    """The plain-text report: header and labels, winners, winning configs, every family, flag rules."""
    lines = header_lines(report)
    lines.append("")
    lines += decision_lines(report)
    if not report.rows:
        lines.append("no study has a result yet")
        return "\n".join(lines) + "\n"
    lines.append("winners (chosen by validation pct_return_mae" +
                 (", leading so far)" if report.state == RUNNING else ")"))
    lines += _text_table(
        ["symbol", "family", "val_mae", "test_mae", "base_val", "base_test", "val_skill", "test_skill",
         "val_price", "test_price", "s/forecast", "spread", "flags"],
        ([w.symbol, w.family, format_value(w.validation_pct_return_mae, ".5f"), format_value(w.test_pct_return_mae, ".5f"),
          format_value(w.baseline_validation_pct_return_mae, ".5f"), format_value(w.baseline_test_pct_return_mae, ".5f"),
          format_value(w.validation_skill, "+.3f"), format_value(w.test_skill, "+.3f"),
          format_value(w.validation_price_mae, ".5g"), format_value(w.test_price_mae, ".5g"),
          format_value(w.validation_latency_per_forecast_s, ".4f"), format_value(w.stability_spread, ".5f"),
          _flag_text(report, w)]
         for w in report.winners), align="llrrrrrrrrrrl")
    lines.append("")
    if report.state != RUNNING:
        lines.append("winning configs")
        lines += _text_table(["symbol", "family", "config"],
                             ([w.symbol, w.family, strict_json.dumps(dict(w.config), sort_keys=True)]
                              for w in report.winners), align="lll")
        lines.append("")
        lines += significance_lines(report)
        lines += symbol_decision_lines(report)
    lines.append(f"every family ({family_counts_text(report.rows)}; * = winner)")
    lines += _text_table(
        ["symbol", "family", "", "val_mae", "test_mae", "val_price", "test_price", "s/forecast",
         "val_skill", "test_skill", "spread", "trials", "flags"],
        ([r.symbol, r.family, "*" if r.winner else "", format_value(r.validation_pct_return_mae, ".5f"),
          format_value(r.test_pct_return_mae, ".5f"), format_value(r.validation_price_mae, ".5g"),
          format_value(r.test_price_mae, ".5g"), format_value(r.validation_latency_per_forecast_s, ".4f"),
          format_value(r.validation_skill, "+.3f"), format_value(r.test_skill, "+.3f"), format_value(r.stability_spread, ".5f"),
          _trial_text(r), _flag_text(report, r)]
         for r in report.rows), align="lllrrrrrrrrrl")
    lines.append("")
    lines.append("columns: mae = pct_return_mae; base = the naive no-change forecast's pct_return_mae on the "
                 "same windows; skill = 1 - mae/base (> 0 beats it); price = price_mae; s/forecast = "
                 "validation latency per forecast in seconds; spread = max - min pct_return_mae over the "
                 "validation period and the earlier stability folds (- when none were scored)")
    lines.append("flags:")
    width = max(len(k) for k in FLAG_RULES)
    lines += [f"  {name.ljust(width)}  {rule}" for name, rule in FLAG_RULES.items()]
    return "\n".join(lines) + "\n"


def significance_lines(report: ExperimentReport) -> list[str]:
    """The winners' significance table (test period; SPA and PBO on validation), with a blank
    line after it; [] when no winner file has a significance section."""
    winners = [w for w in report.winners if w.p_vs_baseline is not None or w.p_vs_default is not None
               or w.spa_p_value is not None or w.pbo is not None or w.in_mcs is not None]
    if not winners:
        return []
    lines = ["significance (p: one-sided Diebold-Mariano on the test period, small = the winner's error is "
             "lower; spa_p and pbo on validation)"]
    lines += _text_table(
        ["symbol", "family", "p_vs_base", "p_vs_default", "spa_p", "pbo", "in_mcs"],
        ([w.symbol, w.family, format_value(w.p_vs_baseline, ".3f"), format_value(w.p_vs_default, ".3f"),
          format_value(w.spa_p_value, ".3f"), format_value(w.pbo, ".2f"),
          "-" if w.in_mcs is None else ("yes" if w.in_mcs else "no")]
         for w in winners), align="llrrrrl")
    lines.append("significance flags:")
    width = max(len(k) for k in SIGNIFICANCE_FLAG_RULES)
    lines += [f"  {name.ljust(width)}  {rule}" for name, rule in SIGNIFICANCE_FLAG_RULES.items()]
    return [*lines, ""]


PANEL_COMPARISONS = (("winner_vs_default", "winners vs default"), ("winner_vs_baseline", "winners vs baseline"),
                     ("pooled_vs_default", "pooled vs default"), ("pooled_vs_baseline", "pooled vs baseline"))


def panel_rows(report: ExperimentReport) -> list[list[str]]:
    """The panel tests as rows: family (or ``decided``), comparison, symbols, mean difference
    as % of the other's error, one-sided p, minimum detectable edge %, clustering."""
    panel = report.panel or {}
    tests = [(family, label, (section or {}).get(key))
             for family, section in sorted((panel.get("families") or {}).items())
             for key, label in PANEL_COMPARISONS]
    tests += [("decided", f"decisions vs {k.removeprefix('vs_')}", (panel.get("decisions") or {}).get(k))
              for k in ("vs_default", "vs_baseline")]
    return [[family, label, str(t.get("symbols", "-")), format_value(t.get("mean_difference_pct"), "+.2f"),
             format_value(t.get("p_value"), ".3g"), format_value(t.get("min_detectable_edge_pct"), ".2f"),
             t.get("clustered_by") or "-"]
            for family, label, t in tests if t]


def decision_lines(report: ExperimentReport) -> list[str]:
    """The report's first screen (issue 18): the universe-level decisions' tallies and rule, and
    the panel tests; [] for an experiment collated before decisions."""
    d = report.decisions
    if not d:
        return []
    lines = [f"decisions: own {d.get('own', 0)}, pooled {d.get('pooled', 0)}, default {d.get('default', 0)} "
             f"of {d.get('symbols', 0)} symbols ({d.get('period', 'test')} period; {d.get('method')} FDR "
             f"{d.get('fdr_level')})", f"  rule: {d.get('rule')}"]
    if d.get("note"):
        lines.append(f"  note: {d['note']}")
    rows = panel_rows(report)
    if rows:
        lines.append("panel tests (one-sided Diebold-Mariano over symbols, variance clustered by date; "
                     "diff% = mean error difference as % of the other's; mde% = edge found with 80 % power)")
        lines += _text_table(["family", "comparison", "symbols", "diff%", "p", "mde%", "clustered by"],
                             rows, align="llrrrrl")
    return [*lines, ""]


def symbol_decision_lines(report: ExperimentReport) -> list[str]:
    """Per symbol: the decision, the family and config it picked, its p-values and the minimum
    detectable edge against the default."""
    decisions = report.symbol_decisions or {}
    if not decisions:
        return []
    lines = ["decision per symbol (p_own: own winner vs default and pooled, the larger; p_adj: "
             "after FDR control; mde%: edge vs the default the test could see with 80 % power)"]
    lines += _text_table(
        ["symbol", "decision", "family", "p_own", "p_adj", "mde%", "config"],
        ([symbol, d.get("choice") or "-", d.get("family") or "-", format_value(d.get("p_own"), ".3g"),
          format_value(d.get("p_own_adjusted"), ".3g"),
          format_value(d.get("min_detectable_edge_pct_vs_default"), ".1f"),
          strict_json.dumps(d.get("config"), sort_keys=True)]
         for symbol, d in sorted(decisions.items())), align="lllrrrl")
    return [*lines, ""]


# ------------------------------------------------------------------------------------- files


def render_csv(report: ExperimentReport) -> str:
    return report.to_frame().to_csv(index=False)


def render_parquet(report: ExperimentReport) -> bytes:
    buffer = io.BytesIO()
    frame = report.to_frame()
    frame.attrs = {}
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def render(report: ExperimentReport, fmt: str) -> str | bytes:
    """The report in ``fmt`` (``table``, ``csv``, ``parquet`` (bytes) or ``html``)."""
    if fmt == "table":
        return render_table(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "parquet":
        return render_parquet(report)
    if fmt == "html":
        return render_html(report)
    raise ConfigError(f"report format {fmt!r}: unknown; known: {', '.join(FORMATS)}")


def default_location(fmt: str) -> str | None:
    """Where a report goes when no --out is given: None (the terminal) for table and csv,
    ``report.<ext>`` in the experiment folder for parquet and html."""
    return None if fmt in ("table", "csv") else f"report.{fmt}"


def save_report(report: ExperimentReport, fmt: str, out: str | Path | None = None,
                storage_root: str = "results") -> str:
    """Write the report atomically to ``out`` (a local file) or, without it, to
    ``<storage>/<experiment>/report.<fmt>``; return where it went."""
    if out is None:  # where it goes is checked (Storage: never outside) before the work of rendering
        store, name = Storage(storage_root, report.experiment), default_location(fmt) or f"report.{fmt}"
    else:
        target = Path(out).expanduser().resolve()
        store, name = Storage.at(target.parent), target.name
    store.path((name,))
    data = render(report, fmt)
    if fmt == "html":
        data = with_trading_section(str(data), Storage(storage_root, report.experiment))
    payload = data.encode() if isinstance(data, str) else data
    return store.write_bytes((name,), payload)


# ------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.win{background:#f3f8ff}
.flag{color:#b00;font-weight:bold}
.banner{padding:10px 14px;margin:8px 0;border-radius:4px;font-weight:bold}
.tiny{background:#fde2e2;border:2px solid #d62728}
.incomplete{background:#fff2d6;border:2px solid #e69500}
.note{color:#555;font-size:13px;max-width:70em}
.study-figure{min-height:40px}
select,input{font-size:14px}
button.match{margin:2px;font-size:13px}
code{font-size:12px}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(headers: Sequence[str], rows: Iterable[tuple[Sequence[tuple[str, str]], str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for cells, cls in rows:
        tds = "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in cells)
        body.append(f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _flag_cell(report: ExperimentReport, row: StudyRow) -> tuple[str, str]:
    if row.flags and report.state != RUNNING:
        return (f'<span class="flag">{_esc(", ".join(row.flags))}</span>', "")
    return (_flag_text(report, row), "")


FOLD_ROWS = 60
"""Longer HTML tables start folded (hundreds of symbols), so the figures stay in reach."""


def _folded(rows: int, what: str, label: str | None = None) -> str:
    """An HTML ``<details>`` opening, open up to FOLD_ROWS rows; its summary is ``label``
    when given, else ``"<rows> <what>"``."""
    return f"<details{' open' if rows <= FOLD_ROWS else ''}><summary>{label or f'{rows} {what}'}</summary>"


def decisions_html(report: ExperimentReport) -> str:
    """The HTML page's top (issue 18): the decisions' tallies and rule, the panel tests and each
    symbol's decision with its reason; '' for an experiment collated before decisions."""
    d = report.decisions
    if not d:
        return ""
    parts = [f"<h2 id='decisions'>Decisions</h2><p><b>own {d.get('own', 0)}, pooled {d.get('pooled', 0)}, "
             f"default {d.get('default', 0)}</b> of {d.get('symbols', 0)} symbols ({_esc(d.get('method'))} "
             f"FDR {_esc(d.get('fdr_level'))}, {_esc(d.get('period', 'test'))} period).<br>Rule: "
             f"{_esc(d.get('rule'))}" + (f"<br>Note: {_esc(d['note'])}" if d.get("note") else "") + "</p>"]
    rows = panel_rows(report)
    if rows:
        parts.append("<p class='note'>Panel tests: one-sided Diebold–Mariano over symbols, variance "
                     "clustered by date; diff % = mean error difference as % of the other's error; mde % "
                     "= the edge the test finds with 80 % power.</p>")
        parts.append(_html_table(["family", "comparison", "symbols", "diff %", "p", "mde %", "clustered by"],
                                 (([(_esc(c), "n" if 2 <= i <= 5 else "") for i, c in enumerate(r)], "")
                                  for r in rows)))
    decisions = report.symbol_decisions or {}
    if decisions:
        parts.append(_folded(len(decisions), "symbols' decisions"))
        parts.append(_html_table(
            ["symbol", "decision", "family", "p own", "p adjusted", "mde % vs default", "config", "reason"],
            (([(_esc(s), ""), (_esc(x.get("choice")), ""), (_esc(x.get("family")), ""),
               (_esc(format_value(x.get("p_own"), ".3g")), "n"),
               (_esc(format_value(x.get("p_own_adjusted"), ".3g")), "n"),
               (_esc(format_value(x.get("min_detectable_edge_pct_vs_default"), ".1f")), "n"),
               (f"<code>{_esc(strict_json.dumps(x.get('config'), sort_keys=True))}</code>", ""),
               (_esc(x.get("reason")), "")], "")
             for s, x in sorted(decisions.items()))) + "</details>")
    return "\n".join(parts)


def render_html(report: ExperimentReport) -> str:
    """A self-contained HTML page (inline CSS, plotly.js embedded once, nothing fetched):
    labels, winners, the figures (see :mod:`tuner.decisions.plots`), every family and the flag rules."""
    from tuner.decisions.plots import plotly_script, plots_html

    title = f"forecast-tuner report: {report.experiment}"
    if report.tiny_weights:
        title += " [TINY WEIGHTS]"
    if report.state != COMPLETE:
        title += f" [{report.state.upper()}]"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style>", plotly_script(), "</head><body>", f"<h1>{_esc(title)}</h1>"]
    for label in report.labels:
        cls = "tiny" if "TINY" in label else "incomplete"
        parts.append(f'<div class="banner {cls}">{_esc(label)}</div>')
    parts.append("<p>" + "<br>".join(_esc(line) for line in header_lines(report)[:2]) + "</p>")
    parts.append(decisions_html(report))
    parts.append("<p>Sections: <a href='#winners'>winners</a> · <a href='#significance'>significance</a> · <a href='#overview'>overview</a> · "
                 "<a href='#importances'>which hyperparameters matter</a> · <a href='#explore'>explore a "
                 "study</a> · <a href='#families'>every family</a></p>")

    def n(v: Any, spec: str) -> tuple[str, str]:
        return (_esc(format_value(v, spec)), "n")

    parts.append("<h2 id='winners'>Winners</h2><p>Chosen by validation pct_return_mae"
                 + (" (leading so far)" if report.state == RUNNING else "") + ".</p>")
    parts.append(_folded(len(report.winners), "symbols"))
    parts.append(_html_table(
        ["symbol", "family", "validation pct_return_mae", "test pct_return_mae", "baseline validation",
         "baseline test", "validation skill", "test skill", "validation price_mae", "test price_mae",
         "latency per forecast (s)", "stability spread", "flags", "config"],
        (([(_esc(w.symbol), ""), (_esc(w.family), ""), n(w.validation_pct_return_mae, ".5f"),
           n(w.test_pct_return_mae, ".5f"), n(w.baseline_validation_pct_return_mae, ".5f"),
           n(w.baseline_test_pct_return_mae, ".5f"), n(w.validation_skill, "+.3f"), n(w.test_skill, "+.3f"),
           n(w.validation_price_mae, ".5g"), n(w.test_price_mae, ".5g"),
           n(w.validation_latency_per_forecast_s, ".4f"), n(w.stability_spread, ".5f"), _flag_cell(report, w),
           (f"<code>{_esc(config_text(w.config))}</code>", "")], "")
         for w in report.winners)) + "</details>")
    parts.append(significance_html(report))
    parts.append(plots_html(report))
    parts.append("<h2 id='families'>Every family</h2>" + _folded(len(report.rows), "", family_counts_text(report.rows)))
    parts.append(_html_table(
        ["symbol", "family", "winner", "validation pct_return_mae", "test pct_return_mae",
         "validation price_mae", "test price_mae", "latency per forecast (s)", "validation skill",
         "test skill", "stability spread", "trials", "flags"],
        (([(_esc(r.symbol), ""), (_esc(r.family), ""), ("★" if r.winner else "", ""),
           n(r.validation_pct_return_mae, ".5f"), n(r.test_pct_return_mae, ".5f"),
           n(r.validation_price_mae, ".5g"), n(r.test_price_mae, ".5g"),
           n(r.validation_latency_per_forecast_s, ".4f"), n(r.validation_skill, "+.3f"),
           n(r.test_skill, "+.3f"), n(r.stability_spread, ".5f"), (_esc(_trial_text(r)), "n"),
           _flag_cell(report, r)],
          "win" if r.winner else "")
         for r in report.rows)) + "</details>")
    parts.append(flag_legend_html(report))
    parts.append("<p>skill = 1 − pct_return_mae / baseline pct_return_mae (&gt; 0 beats the naive "
                 "no-change forecast on the same windows); stability spread = max − min pct_return_mae "
                 "over the validation period and the earlier stability folds.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


CONFIG_DIGITS = 4
"""Significant digits of a float in a config shown in the HTML (the result files keep them all)."""
DERIVED = ("blend", "regime")
"""Candidate families that combine the tuned families' winners: no study of their own."""


def config_text(config: Any, digits: int = CONFIG_DIGITS) -> str:
    """A config as compact JSON with its floats rounded to ``digits`` significant digits
    (``0.30000000000000004`` → ``0.3``), nested lists and mappings included."""
    def rounded(value: Any) -> Any:
        if isinstance(value, float) and math.isfinite(value):
            return float(f"{value:.{digits}g}")
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rounded(v) for v in value]
        return value

    return strict_json.dumps(rounded(dict(config)), sort_keys=True)


def family_counts_text(rows: Sequence[StudyRow]) -> str:
    """What the "Every family" table holds, counted by kind: ``54 studies, 10 blends, 9 regimes``
    (a blend or regime candidate is not a study: it runs no trials of its own)."""
    studies = sum(r.family not in DERIVED for r in rows)
    parts = [f"{studies} {'study' if studies == 1 else 'studies'}"]
    for kind in DERIVED:
        count = sum(r.family == kind for r in rows)
        if count:
            parts.append(f"{count} {kind}{'' if count == 1 else 's'}")
    return ", ".join(parts)


def _has_significance(row: StudyRow) -> bool:
    return any(v is not None for v in (row.p_vs_baseline, row.p_vs_default, row.spa_p_value, row.pbo, row.in_mcs))


def significance_html(report: ExperimentReport) -> str:
    """The winners' significance numbers as an HTML section (the text report's table): p vs the
    naive baseline and vs the family's default (one-sided Diebold-Mariano, test period), Hansen's
    SPA p and PBO (validation), and whether the Model Confidence Set holds the winner. Winners
    without a significance section are listed with dashes, so none drops out silently."""
    if not report.winners:
        return ""
    shown = [w for w in report.winners if _has_significance(w)]
    note = ("<p class='note'>p: one-sided Diebold-Mariano test on the test period (small = the winner's "
            "error is lower than the baseline's / the default config's); spa p: Hansen's SPA test of the "
            "best trial against the naive baseline over all the study's trials (validation); pbo: "
            "probability of backtest overfitting (validation); in MCS: the test period's Model Confidence "
            "Set of the symbol's candidates holds the winner. Flags from these numbers are in the "
            "legend below.")
    missing = len(report.winners) - len(shown)
    if missing:
        note += f" {missing} winner(s) have no significance section in their result file (shown as -)."
    note += "</p>"

    def n(v: Any, spec: str) -> tuple[str, str]:
        return (_esc(format_value(v, spec)), "n")

    table = _html_table(
        ["symbol", "family", "p vs baseline", "p vs default", "SPA p", "PBO", "in MCS", "flags"],
        (([(_esc(w.symbol), ""), (_esc(w.family), ""), n(w.p_vs_baseline, ".3f"), n(w.p_vs_default, ".3f"),
           n(w.spa_p_value, ".3f"), n(w.pbo, ".2f"),
           ("-" if w.in_mcs is None else ("yes" if w.in_mcs else "no"), ""), _flag_cell(report, w)], "")
         for w in report.winners))
    return ("<h2 id='significance'>Significance</h2>" + note + _folded(len(report.winners), "symbols")
            + table + "</details>")


def flag_rules(report: ExperimentReport | None = None) -> dict[str, str]:
    """Every flag with its rule: the report flags, the significance flags, and any other flag
    a row of ``report`` carries (so the legend never misses one the page shows)."""
    rules = {**FLAG_RULES, **SIGNIFICANCE_FLAG_RULES}
    for row in (report.rows if report is not None else ()):
        for flag in row.flags:
            rules.setdefault(flag, "set by the result file; no rule is recorded for it in this version")
    return rules


def flag_legend_html(report: ExperimentReport) -> str:
    """The HTML legend: each flag the report can show, with its rule."""
    return ("<h2 id='flags'>Flags</h2><ul>" + "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>"
                                                      for k, v in flag_rules(report).items()) + "</ul>")


# --------------------------------------------------------------- HTML: backtest and forward

TRADING_FILES = {"backtest": "backtest.json", "forward": "forward/status.json", "patterns": "patterns.json"}


def with_trading_section(page: str, storage: Storage) -> str:
    """``page`` with :func:`trading_section_html` inserted before ``</body>``, built from the
    experiment's ``backtest.json``, ``forward/status.json`` and ``patterns.json`` (whichever
    exist; unreadable ones are named, not fatal)."""
    docs: dict[str, Any] = {}
    for key, relative in TRADING_FILES.items():
        try:
            docs[key] = storage.read_json(relative) if storage.exists(relative) else None
        except (OSError, ValueError) as e:
            docs[key] = {"error": f"{relative}: {e}"}
    section = trading_section_html(docs["backtest"], docs["forward"], docs["patterns"])
    return page.replace("</body></html>", section + "</body></html>", 1)


def trading_section_html(backtest: dict[str, Any] | None, forward: dict[str, Any] | None,
                         patterns: dict[str, Any] | None) -> str:
    """The report's "Trading" section: per symbol, a link to its backtest row (decided vs default
    vs buy-and-hold Sharpe, DSR, Sharpe difference) and its forward verdict; the hypotheses."""
    parts = ["<h2 id='trading'>Trading: backtest and forward</h2>"]
    if not backtest and not forward:
        parts.append("<p class='note'>No backtest or forward numbers yet: run <code>tuner backtest NAME</code> "
                     "and <code>tuner forward NAME</code>, then the report again.</p>")
    for doc in (backtest, forward, patterns):
        if doc and "error" in doc and len(doc) == 1:
            parts.append(f"<p class='flag'>{_esc(doc['error'])}</p>")
    bt = (backtest or {}).get("symbols") or {}
    fw = (forward or {}).get("symbols") or {}
    symbols = sorted(set(bt) | set(fw))
    if symbols:
        parts.append("<p>" + " · ".join(
            f"{_esc(s)}: " + " ".join(f"<a href='#{k}-{_esc(s)}'>{k}</a>" for k, d in
                                    (("backtest", bt), ("forward", fw)) if s in d) for s in symbols) + "</p>")
    for note in (backtest or {}).get("notes", []) + (patterns or {}).get("notes", []):
        parts.append(f"<p class='note flag'>{_esc(note)}</p>")
    if bt:
        parts.append(f"<h3>Backtest (costs {_esc(backtest.get('costs_bps'))} bps; all backtested bars)</h3>")
        rows = []
        for symbol, entry in sorted(bt.items()):
            for rule in ("sign", "scaled"):
                s = entry.get("strategies") or {}
                perf = {r: ((s.get(r) or {}).get(rule) or {}).get("all") or {} for r in
                        ("decided", "default", "buy_and_hold")}
                diff = (entry.get("vs_default") or {}).get(rule) or {}
                ci = diff.get("ci")
                dsr = ((entry.get("deflated_sharpe") or {}).get(rule) or {}).get("dsr")
                anchor = f"<span id='backtest-{_esc(symbol)}'></span>" if rule == "sign" else ""
                rows.append(([(anchor + _esc(symbol), ""), (_esc(rule), ""),
                              (_esc(format_value(perf["decided"].get("sharpe"), ".2f")), "n"),
                              (_esc(format_value(perf["decided"].get("total_return"), "+.2%")), "n"),
                              (_esc(format_value(perf["decided"].get("hit_rate"), ".2f")), "n"),
                              (_esc(format_value(perf["decided"].get("max_drawdown"), ".2%")), "n"),
                              (_esc(format_value(perf["default"].get("sharpe"), ".2f")), "n"),
                              (_esc(format_value(perf["buy_and_hold"].get("sharpe"), ".2f")), "n"),
                              (_esc(format_value(diff.get("difference"), "+.2f")
                                    + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")), "n"),
                              (_esc(format_value(dsr, ".2f")), "n")], ""))
        parts.append(_html_table(["symbol", "rule", "decided Sharpe", "return", "hit rate", "max drawdown",
                                  "default Sharpe", "buy-and-hold Sharpe", "Sharpe diff vs default [95 % CI]",
                                  "DSR"], rows))
    if fw:
        parts.append("<h3>Forward: champion (production) vs challenger (this experiment)</h3>")
        rows = []
        for symbol, entry in sorted(fw.items()):
            t = entry.get("test") or {}
            rows.append(([(f"<span id='forward-{_esc(symbol)}'></span>{_esc(symbol)}", ""),
                          (_esc(f"{(entry.get('champion') or {}).get('source')} "
                                f"{(entry.get('champion') or {}).get('family')}"), ""),
                          (_esc((entry.get("challenger") or {}).get("family")), ""),
                          (_esc(t.get("bars")), "n"), (_esc(format_value(t.get("mean_difference"), "+.5f")), "n"),
                          (_esc(format_value(t.get("p_value"), ".3g")), "n"),
                          (_esc(t.get("verdict")) + (f" ({_esc(t['reason'])})" if t.get("reason") else ""), "")],
                         ""))
        parts.append(_html_table(["symbol", "champion", "challenger", "bars", "mean error edge",
                                  "always-valid p", "verdict"], rows))
    hyps = (patterns or {}).get("hypotheses") or []
    if hyps:
        parts.append("<h3>The design document's claims</h3>")
        parts.append(_html_table(["claim", "what the data says", "95 % CI", "verdict"],
                                 (([(_esc(h["claim"]), ""), (_esc(h["data"]), ""), (_esc(h.get("ci")), ""),
                                    (_esc(h["verdict"]), "")], "") for h in hyps)))
    return "\n".join(parts)
