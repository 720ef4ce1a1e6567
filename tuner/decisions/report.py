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
    lines.append("every family (* = winner)")
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
    data = render(report, fmt)
    if fmt == "html":
        data = with_trading_section(str(data), Storage(storage_root, report.experiment))
    payload = data.encode() if isinstance(data, str) else data
    if out is None:
        relative = default_location(fmt) or f"report.{fmt}"
        return Storage(storage_root, report.experiment).write_bytes(relative, payload)
    target = Path(out).expanduser().resolve()
    return Storage(str(target.parent.parent), target.parent.name).write_bytes(target.name, payload)


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
select{font-size:14px}
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


def _folded(rows: int, what: str) -> str:
    return f"<details{' open' if rows <= FOLD_ROWS else ''}><summary>{rows} {what}</summary>"


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
    parts.append("<p>Sections: <a href='#winners'>winners</a> · <a href='#overview'>overview</a> · "
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
           (f"<code>{_esc(strict_json.dumps(dict(w.config), sort_keys=True))}</code>", "")], "")
         for w in report.winners)) + "</details>")
    parts.append(plots_html(report))
    parts.append("<h2 id='families'>Every family</h2>" + _folded(len(report.rows), "studies"))
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
    parts.append("<h2>Flags</h2><ul>" + "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>"
                                              for k, v in FLAG_RULES.items()) + "</ul>")
    parts.append("<p>skill = 1 − pct_return_mae / baseline pct_return_mae (&gt; 0 beats the naive "
                 "no-change forecast on the same windows); stability spread = max − min pct_return_mae "
                 "over the validation period and the earlier stability folds.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


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
