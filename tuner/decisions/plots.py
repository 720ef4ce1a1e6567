"""Figures of the HTML report, built on plotly (and Optuna's importances).

* Overview (drawn when the page opens): how many symbols each family wins; validation vs test
  pct_return_mae of every symbol's winner; latency vs validation error of every study's winner.
  Points are coloured by family and carry their symbol (hover; printed next to them up to
  :data:`LABELLED_SYMBOLS` symbols).
* Per family across all symbols: Optuna's hyperparameter importances (PED-ANOVA) of one study
  pooling every symbol's trials, each trial's value divided by its symbol's naive-baseline
  pct_return_mae so symbols with different volatility compare.
* Per study, on demand (a symbol search and a family ``<select>``): the symbol's families side
  by side, then the study's optimisation history, slice and parallel-coordinate plots, drawn as
  Optuna's ``optuna.visualization`` draws them. Each symbol's data is embedded compact (its
  studies' trials as ``[number, value, *params]``, compressed JSON) and its figures are built by
  the page's script only when chosen: building them with plotly in Python cost ~0.4 s per study
  (plotly's validation), minutes for 1,000 symbols, and a page several times larger.

Self-contained: plotly.js is embedded once (no CDN; the page works offline). The studies are
rebuilt from ``trials.parquet`` by :mod:`tuner.decisions.studies`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tuner.decisions.flags import OVERFIT_RATIO
from tuner.decisions.results import FAMILY_ORDER, ExperimentReport, StudyRow

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

LABELLED_SYMBOLS = 30
"""Up to this many symbols, scatter points are labelled with their symbol (beyond: hover only)."""
STUDY_FIGURES = ("history", "slice", "parallel")
TRIAL_COLUMNS = ("trial_id", "symbol", "family", "status", "config", "pct_return_mae", "baseline_pct_return_mae",
                 "latency_per_forecast_s")  # the latency figure: each checkpoint size's best trial
"""What the figures read of ``trials.parquet`` (see :func:`tuner.decisions.results.load_report`)."""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def family_colors(families: Iterable[str]) -> dict[str, str]:
    from plotly.colors import qualitative

    ordered = sorted(set(families), key=_family_rank)
    return {f: qualitative.Plotly[i % len(qualitative.Plotly)] for i, f in enumerate(ordered)}


def _family_rank(family: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def _usable(*values: float | None, positive: bool = False) -> bool:
    return all(v is not None and math.isfinite(v) and (v > 0 or not positive) for v in values)


# ------------------------------------------------------------------------------------- overview


def winners_figure(report: ExperimentReport) -> go.Figure:
    """Bar chart: how many symbols each family wins."""
    import plotly.graph_objects as go

    colors = family_colors(r.family for r in report.rows)
    counts = {f: 0 for f in colors}
    for w in report.winners:
        counts[w.family] += 1
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color=[colors[f] for f in counts],
                           text=list(counts.values()), textposition="auto"))
    fig.update_layout(title=f"Winner per symbol: symbols won by each family ({len(report.winners)} symbols)",
                      xaxis_title="family", yaxis_title="symbols won", height=380)
    return fig


LATENCY_LABELS = 10
"""Points the latency scatter labels at most: its lower-left (Pareto) front; the rest on hover."""


def pareto_front(rows: list[StudyRow], x, y, limit: int = LATENCY_LABELS) -> set[int]:
    """``id()`` of the rows no other row beats on both ``x`` and ``y`` (lower is better), the
    ``limit`` lowest in ``y`` of them: the points worth a label in a crowded scatter."""
    front, best_y = [], math.inf
    for r in sorted(rows, key=lambda r: (x(r), y(r))):
        if y(r) < best_y:
            front.append(r)
            best_y = y(r)
    return {id(r) for r in sorted(front, key=y)[:limit]}


def _scatter_by_family(fig: go.Figure, report: ExperimentReport, rows: list[StudyRow], x, y, hover: str,
                       label: bool | set[int]) -> None:
    """One trace per family; ``label``: every point gets its symbol (True), none (False), or
    only the rows whose ``id()`` is in the set (the others show it on hover)."""
    import plotly.graph_objects as go

    # Colours from every family of the report, so a family has one colour in every figure.
    colors = family_colors(r.family for r in report.rows)
    for family, color in colors.items():
        mine = [r for r in rows if r.family == family]
        if not mine:
            continue
        shown = [r.symbol if label is True or (label and id(r) in label) else "" for r in mine]
        fig.add_trace(go.Scatter(
            x=[x(r) for r in mine], y=[y(r) for r in mine], name=family,
            mode="markers+text" if any(shown) else "markers",
            text=shown, textposition="top center", marker={"color": color, "size": 9},
            customdata=[[r.symbol, r.family, ", ".join(r.flags) or "ok"] for r in mine], hovertemplate=hover))


def validation_test_figure(report: ExperimentReport) -> go.Figure:
    """Winners' validation vs test pct_return_mae (log-log), with y = x and the overfit ratio."""
    import plotly.graph_objects as go

    rows = [w for w in report.winners if _usable(w.validation_pct_return_mae, w.test_pct_return_mae, positive=True)]
    fig = go.Figure()
    if rows:
        values = [v for w in rows for v in (w.validation_pct_return_mae, w.test_pct_return_mae)]
        lo, hi = min(values) / 1.3, max(values) * 1.3
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="test = validation",
                                 line={"color": "#888", "dash": "dot"}, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * OVERFIT_RATIO, hi * OVERFIT_RATIO], mode="lines",
                                 name=f"test = {OVERFIT_RATIO:g} × validation (overfit rule)",
                                 line={"color": "#d62728", "dash": "dash", "width": 1}, hoverinfo="skip"))
    _scatter_by_family(fig, report, rows, lambda r: r.validation_pct_return_mae, lambda r: r.test_pct_return_mae,
                       "%{customdata[0]} (%{customdata[1]})<br>validation %{x:.5f}<br>test %{y:.5f}"
                       "<br>flags: %{customdata[2]}<extra></extra>", len({r.symbol for r in rows}) <= LABELLED_SYMBOLS)
    fig.update_layout(title="Winners: validation vs test pct_return_mae (above the red line: test much worse)",
                      xaxis={"title": "validation pct_return_mae", "type": "log"},
                      yaxis={"title": "test pct_return_mae", "type": "log"}, height=480)
    return fig


SIZE_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "star", "cross", "x", "pentagon")
"""Marker shape per checkpoint size in the latency figure (in the order the sizes first appear)."""


def _checkpoint(config: Mapping[str, Any] | None) -> str | None:
    value = (config or {}).get("checkpoint")
    return None if value is None else str(value)


def size_bests(report: ExperimentReport) -> list[dict[str, Any]]:
    """Per study that searched several checkpoint sizes, each size's best completed trial:
    ``{symbol, family, checkpoint, latency, error}`` (validation latency per forecast and
    pct_return_mae): what each size costs and gives on that symbol, the winner's or not."""
    table = getattr(report, "trials", None)  # None too for a report-like object without trials
    if table is None or not len(table) or "config" not in table.columns:
        return []
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in table.to_dict("records"):
        if row.get("status") != "completed":
            continue
        try:
            config = json.loads(row["config"]) if isinstance(row["config"], str) else dict(row["config"] or {})
        except (TypeError, ValueError):
            continue
        size = _checkpoint(config)
        latency, error = row.get("latency_per_forecast_s"), row.get("pct_return_mae")
        if size is None or not _usable(latency, error, positive=True):
            continue
        key = (str(row.get("symbol")), str(row.get("family")), size)
        if key not in best or error < best[key]["error"]:
            best[key] = {"symbol": key[0], "family": key[1], "checkpoint": size, "latency": float(latency),
                         "error": float(error)}
    return list(best.values())


def latency_error_figure(report: ExperimentReport, max_latency_s: float | None = None) -> go.Figure:
    """Every study's winner: validation latency per forecast vs validation pct_return_mae.

    A family that searched several checkpoint sizes has one trace per size (its colour, a marker
    shape per size), and each size's best trial per study is drawn hollow beside the winners,
    so the figure shows what a larger checkpoint costs and gives. ``max_latency_s``: the run's
    ``--max-latency`` as a vertical line (trials right of it could not win)."""
    import plotly.graph_objects as go

    rows = [r for r in report.rows
            if _usable(r.validation_latency_per_forecast_s, r.validation_pct_return_mae, positive=True)]
    fig = go.Figure()
    bests = size_bests(report)  # one pass over the trials, shared with the traces below
    sizes = list(dict.fromkeys([*(c for r in rows if (c := _checkpoint(r.config))),
                                *(b["checkpoint"] for b in bests)]))
    hover = ("%{customdata[0]} (%{customdata[1]})<br>latency %{x:.4g} s per forecast"
             "<br>validation pct_return_mae %{y:.5f}<extra></extra>")
    front = pareto_front(rows, lambda r: r.validation_latency_per_forecast_s, lambda r: r.validation_pct_return_mae)
    if not sizes:
        _scatter_by_family(fig, report, rows, lambda r: r.validation_latency_per_forecast_s,
                           lambda r: r.validation_pct_return_mae, hover, front)
    else:
        _scatter_by_size(fig, report, rows, sizes, bests, hover, front)
    if max_latency_s is not None:
        fig.add_vline(x=max_latency_s, line={"color": "#d62728", "dash": "dash", "width": 1},
                      annotation_text=f"max latency {max_latency_s:g} s")
    by_size = " (marker shape: checkpoint size; hollow: each size's best trial per study)" if sizes else ""
    fig.update_layout(title="Every family's winner: latency vs validation error (lower left is better; "
                            "the labelled points are the best trade-offs, hover for the others)" + by_size,
                      xaxis={"title": "validation latency per forecast (s)", "type": "log"},
                      yaxis={"title": "validation pct_return_mae", "type": "log"}, height=480)
    return fig


def _scatter_by_size(fig: go.Figure, report: ExperimentReport, rows: list[StudyRow], sizes: list[str],
                     bests: list[dict[str, Any]], hover: str, label: set[int]) -> None:
    """One trace per (family, checkpoint size) of the winners, and one hollow trace per (family,
    size) of each size's best trial per study (``bests``: :func:`size_bests`)."""
    import plotly.graph_objects as go

    colors = family_colors(r.family for r in report.rows)
    shape = {size: SIZE_SYMBOLS[i % len(SIZE_SYMBOLS)] for i, size in enumerate(sizes)}
    for family, color in colors.items():
        for size in [None, *sizes]:
            mine = [r for r in rows if r.family == family and _checkpoint(r.config) == size]
            if mine:
                shown = [r.symbol if id(r) in label else "" for r in mine]
                fig.add_trace(go.Scatter(
                    x=[r.validation_latency_per_forecast_s for r in mine],
                    y=[r.validation_pct_return_mae for r in mine],
                    name=family if size is None else f"{family} · {size}",
                    mode="markers+text" if any(shown) else "markers", text=shown, textposition="top center",
                    marker={"color": color, "size": 10, "symbol": shape.get(size, "circle")},
                    customdata=[[r.symbol, family if size is None else f"{family} · {size}"] for r in mine],
                    hovertemplate=hover))
            tried = [b for b in bests if b["family"] == family and b["checkpoint"] == size]
            if tried:
                fig.add_trace(go.Scatter(
                    x=[b["latency"] for b in tried], y=[b["error"] for b in tried],
                    name=f"{family} · {size} (best trial per study)", mode="markers",
                    marker={"color": color, "size": 8, "symbol": f"{shape[size]}-open"},
                    customdata=[[b["symbol"], f"{family} · {size}, best trial"] for b in tried],
                    hovertemplate=hover))


# ------------------------------------------------------------------------------------- importances


IMPORTANCE_TRIALS = 20_000
"""Trials a family's pooled importance study holds at most: beyond, a seeded random sample of
them (a universe of 10,000 symbols has 100,000+; Optuna's in-memory study copies each, and
PED-ANOVA's estimate needs nowhere near that many)."""


def pooled_family_study(family: str, studies: Mapping[tuple[str, str], optuna.Study],
                        limit: int | None = None) -> tuple[optuna.Study | None, list[str], int]:
    """One in-memory study of every symbol's completed ``family`` trials, each value divided by
    its symbol's naive-baseline pct_return_mae (``baseline_pct_return_mae`` user attribute; the
    study's median when absent), so symbols of different volatility pool. Returns the study
    (None without two such trials) and the parameters left out because not every trial has
    them (conditional ones such as Kronos's ``top_p``), with how often they were searched, and
    how many trials there were: beyond ``limit``, the study holds a seeded sample of ``limit``."""
    import numpy as np
    import optuna
    from optuna.trial import TrialState

    from tuner.decisions.studies import _space, distributions, quiet_optuna

    points: list[tuple[dict[str, Any], float]] = []
    for (_, fam), study in sorted(studies.items()):
        if fam != family:
            continue
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]
        if not done:
            continue
        values = sorted(t.value for t in done)
        median = values[len(values) // 2]
        for t in done:
            base = t.user_attrs.get("baseline_pct_return_mae")
            scale = base if isinstance(base, (int, float)) and base > 0 else median
            if scale > 0:
                points.append((dict(t.params), t.value / scale))
    if len(points) < 2:
        return None, [], len(points)
    names = {n for p, _ in points for n in p}
    common = {n for n in names if all(n in p for p, _ in points)}
    left_out = [f"{n} (in {sum(n in p for p, _ in points)} of {len(points)} trials)" for n in sorted(names - common)]
    total, limit = len(points), IMPORTANCE_TRIALS if limit is None else limit
    if total > limit:
        points = [points[i] for i in sorted(np.random.default_rng(0).choice(total, limit, replace=False))]
    dists = distributions(_space(family), [{k: v for k, v in p.items() if k in common} for p, _ in points])
    with quiet_optuna():
        pooled = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
        pooled.add_trials([optuna.trial.create_trial(
            params={k: v for k, v in p.items() if k in common}, distributions={k: dists[k] for k in common},
            value=value) for p, value in points])
    return pooled, left_out, total


def importance_figure(family: str, studies: Mapping[tuple[str, str], optuna.Study]) -> tuple[go.Figure | None, str]:
    """Optuna's hyperparameter-importance chart for ``family`` across symbols, and a note."""
    import optuna

    from tuner.decisions.studies import quiet_optuna

    pooled, left_out, total = pooled_family_study(family, studies)
    symbols = sum(1 for (_, f) in studies if f == family)
    if pooled is None:
        return None, f"{family}: fewer than two completed trials, no importances."
    held = len(pooled.get_trials(deepcopy=False))
    sample = "" if held == total else f" (a seeded random {held:,} of them)"
    note = (f"{family}: {total} completed trials{sample} of {symbols} symbols, each value divided by its "
            "symbol's naive-baseline pct_return_mae; PED-ANOVA importance (share of the top 10 % trials' "
            "parameter distribution that departs from all trials').")
    if left_out:
        note += " Left out, searched only in some trials: " + ", ".join(left_out) + "."
    try:
        with quiet_optuna():
            importances = optuna.importance.get_param_importances(
                pooled, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError) as e:  # e.g. every trial had the same parameters
        return None, f"{family}: no importances ({e})."
    fig = importances_bars(importances, pooled.get_trials(deepcopy=False)[0].distributions)
    fig.update_layout(title=f"{family}: which hyperparameters matter (across {symbols} symbols)", height=360)
    return fig, note


def importances_bars(importances: Mapping[str, float], dists: Mapping[str, Any]) -> go.Figure:
    """Optuna's ``plot_param_importances`` chart, drawn from the importances: the plot function
    deep-copies every trial of the study once per parameter (minutes for a pooled study of
    100,000 trials), for the name of each parameter's distribution."""
    import plotly.graph_objects as go

    ordered = list(reversed(list(importances.items())))  # the most important at the top
    names, values = [n for n, _ in ordered], [v for _, v in ordered]
    return go.Figure(go.Bar(
        x=values, y=names, name="Objective Value", orientation="h", textposition="outside", cliponaxis=False,
        text=[f"{v:.2f}" if v >= 0.01 else "<0.01" for v in values],
        hovertemplate=[f"{n} ({type(dists.get(n)).__name__}): {v}<extra></extra>" for n, v in ordered]),
        go.Layout(title="Hyperparameter Importances", xaxis={"title": "Hyperparameter Importance"},
                  yaxis={"title": "Hyperparameter"}))


# ------------------------------------------------------------------------------------- per study


def symbol_data(report: ExperimentReport, symbol: str, rows: Sequence[StudyRow] | None = None) -> dict[str, Any]:
    """A symbol's families side by side, as the page's script draws them: validation and test
    pct_return_mae per family (★ = winner) and the naive baselines. ``rows``: the symbol's rows
    of the report when the caller has them grouped already."""
    rows = [r for r in report.rows if r.symbol == symbol] if rows is None else rows
    return {"symbol": symbol, "families": [f"{r.family} ★" if r.winner else r.family for r in rows],
            "validation": [_finite(r.validation_pct_return_mae) for r in rows],
            "test": [_finite(r.test_pct_return_mae) for r in rows],
            "baseline": {"validation": _finite(rows[0].baseline_validation_pct_return_mae) if rows else None,
                         "test": _finite(rows[0].baseline_test_pct_return_mae) if rows else None}}


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def study_data(study: optuna.Study) -> dict[str, Any] | None:
    """One study's completed trials, compact, for the page's script to draw Optuna's
    optimisation history, slice and parallel-coordinate plots from: ``name``, ``params`` (the
    searched parameters), ``log`` (whether each is searched on a log scale) and ``trials``
    (``[number, value, *params]`` each, None where a trial lacks a parameter); None when the
    study has no completed trial. Building these figures with plotly in Python took ~0.4 s per
    study (its validation), minutes for a report of 1,000 symbols; drawn in the browser on
    demand they cost nothing until a study is chosen."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    names = sorted({n for t in done for n in t.params})
    dists: dict[str, Any] = {}
    for t in done:
        for n, d in t.distributions.items():
            dists.setdefault(n, d)
    return {"name": study.study_name.split("/", 1)[-1], "params": names,
            "log": [bool(getattr(dists.get(n), "log", False)) for n in names],
            "trials": [[t.number, _finite(t.value), *(_plain_param(t.params.get(n)) for n in names)] for t in done]}


def _plain_param(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)


def _pack(data: Any) -> str:
    """JSON, zlib-compressed, base64: the page inflates it with the browser's DecompressionStream."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode("ascii")


def explorer_payload(report: ExperimentReport, studies: Mapping[tuple[str, str], optuna.Study]) -> dict[str, str]:
    """Per symbol, packed: ``{"symbol": symbol_data, "studies": {family: study_data}}``."""
    by_symbol: dict[str, list[tuple[str, optuna.Study]]] = {}
    for (s, family), study in studies.items():
        by_symbol.setdefault(s, []).append((family, study))
    rows = _rows_by_symbol(report)
    out = {}
    for symbol in sorted(set(rows) | set(by_symbol)):
        figures = {}
        for family, study in sorted(by_symbol.get(symbol, []), key=lambda kv: _family_rank(kv[0])):
            made = study_data(study)
            if made is not None:
                figures[family] = made
        out[symbol] = _pack({"symbol": symbol_data(report, symbol, rows.get(symbol, [])), "studies": figures})
    return out


def _rows_by_symbol(report: ExperimentReport) -> dict[str, list[StudyRow]]:
    """The report's rows grouped by symbol (in their order): one pass, not one per symbol."""
    out: dict[str, list[StudyRow]] = {}
    for r in report.rows:
        out.setdefault(r.symbol, []).append(r)
    return out


# ------------------------------------------------------------------------------------- page


def plotly_script() -> str:
    """plotly.js, inline: the page's only script library, embedded once."""
    from plotly.offline import get_plotlyjs

    return f"<script>{get_plotlyjs()}</script>"


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


_FIGURES_JS = """
// The figures, drawn from each study's compact data (tuner.decisions.plots.study_data) as
// Optuna's optimisation history, slice and parallel-coordinate plots draw them.
const TunerFigures = (function () {  // a namespace: 'history' is the window's own
  const TARGET = 'pct_return_mae';
  function symbolFigure(d) {
    const bars = [['validation', d.validation, '#1f77b4'], ['test', d.test, '#ff7f0e']].map(([label, y, color]) => (
      {type: 'bar', x: d.families, y: y, name: label + ' pct_return_mae', marker: {color: color},
       hovertemplate: '%{x}: %{y:.5f}<extra>' + label + '</extra>'}));
    const shapes = [], notes = [];
    for (const [label, dash, side] of [['validation', 'dot', 0], ['test', 'dash', 1]]) {
      const v = d.baseline[label];
      if (v === null || v === undefined) { continue; }
      shapes.push({type: 'line', xref: 'paper', x0: 0, x1: 1, y0: v, y1: v, line: {dash: dash, color: '#444', width: 1}});
      notes.push({xref: 'paper', x: side, y: v, text: 'naive baseline, ' + label, showarrow: false,
                  xanchor: side ? 'right' : 'left', yanchor: 'bottom'});
    }
    return {data: bars, layout: {title: {text: d.symbol + ': every family (★ = winner) against the naive no-change forecast'},
      barmode: 'group', xaxis: {title: {text: 'family'}}, yaxis: {title: {text: 'pct_return_mae'}}, height: 380,
      shapes: shapes, annotations: notes}};
  }
  function historyFigure(s) {
    const x = s.trials.map(t => t[0]), y = s.trials.map(t => t[1]);
    let low = Infinity;
    const best = y.map(v => (low = Math.min(low, v === null ? Infinity : v)));
    return {data: [{type: 'scatter', mode: 'markers', x: x, y: y, name: TARGET},
                   {type: 'scatter', mode: 'lines', x: x, y: best, name: 'Best Value'}],
            layout: {title: {text: s.name + ': optimisation history'}, height: 420,
                     xaxis: {title: {text: 'Trial'}}, yaxis: {title: {text: TARGET}}}};
  }
  function sliceFigure(s) {
    const n = Math.max(1, s.params.length), data = [], layout = {
      title: {text: s.name + ': slice (each parameter against the value)'}, height: 420, showlegend: false,
      grid: {rows: 1, columns: n, pattern: 'independent'}, yaxis: {title: {text: TARGET}}};
    s.params.forEach((p, i) => {
      const k = i ? String(i + 1) : '';
      data.push({type: 'scatter', mode: 'markers', xaxis: 'x' + k, yaxis: 'y' + k, name: p,
                 x: s.trials.map(t => t[2 + i]), y: s.trials.map(t => t[1]),
                 marker: {color: s.trials.map(t => t[0]), colorscale: 'Blues', showscale: i === n - 1,
                          colorbar: {title: {text: 'Trial'}}, line: {width: 0.5, color: 'Grey'}},
                 hovertemplate: p + ' %{x}<br>' + TARGET + ' %{y:.5f}<extra></extra>'});
      layout['xaxis' + k] = {title: {text: p}, type: s.log[i] ? 'log' : '-'};
    });
    return {data: data, layout: layout};
  }
  function parallelFigure(s) {
    const values = s.trials.map(t => t[1]);
    const dims = [{label: TARGET, values: values}];
    s.params.forEach((p, i) => {
      const raw = s.trials.map(t => t[2 + i]);
      if (raw.every(v => typeof v === 'number' || v === null)) {
        dims.push(s.log[i] ? {label: p + ' (log10)', values: raw.map(v => v === null ? null : Math.log10(v))}
                           : {label: p, values: raw});
      } else {  // categories: one tick each
        const cats = [...new Set(raw.map(String))];
        dims.push({label: p, values: raw.map(v => cats.indexOf(String(v))), tickvals: cats.map((_, j) => j), ticktext: cats});
      }
    });
    return {data: [{type: 'parcoords', dimensions: dims,
                    line: {color: values, colorscale: 'Blues', reversescale: true, showscale: true,
                           colorbar: {title: {text: TARGET}}}}],
            layout: {title: {text: s.name + ': parallel coordinates'}, height: 460}};
  }
  return {symbol: symbolFigure, history: historyFigure, slice: sliceFigure, parallel: parallelFigure};
})();
"""
"""The explorer's figures, drawn in the browser from compact data (:func:`study_data`,
:func:`symbol_data`); plain functions, no page, so a test can run them."""


_EXPLORER_JS = """
(function () {
  const packs = JSON.parse(document.getElementById('study-data').textContent);
  const template = JSON.parse(document.getElementById('plotly-template').textContent);
  const index = JSON.parse(document.getElementById('symbol-index').textContent);  // [[symbol, best family]]
  const best = Object.fromEntries(index);
  const search = document.getElementById('symbol-search');
  const matches = document.getElementById('symbol-matches');
  const familySelect = document.getElementById('family-select');
  const status = document.getElementById('explorer-status');
  const cache = {};
  let current = index.length ? index[0][0] : null;
  // The symbols whose name holds the text (case-insensitive), those starting with it first.
  function find(text) {
    const q = text.trim().toLowerCase();
    if (!q) { return []; }
    const hits = index.map(e => e[0]).filter(s => s.toLowerCase().includes(q));
    return hits.filter(s => s.toLowerCase().startsWith(q)).concat(hits.filter(s => !s.toLowerCase().startsWith(q)));
  }
  function listMatches() {
    const hits = find(search.value);
    matches.textContent = '';
    for (const s of hits.slice(0, %(shown)d)) {
      const b = document.createElement('button');
      b.type = 'button'; b.textContent = s; b.className = 'match';
      b.addEventListener('click', () => pick(s));
      matches.appendChild(b);
    }
    if (hits.length > %(shown)d) { matches.append(' and ' + (hits.length - %(shown)d) + ' more: type more'); }
    if (search.value.trim() && !hits.length) { matches.textContent = 'no symbol holds "' + search.value + '"'; }
  }
  function pick(symbol) {
    current = symbol; search.value = symbol; matches.textContent = ''; showSymbol(false);
  }
  async function unpack(symbol) {
    if (!cache[symbol]) {
      const bytes = Uint8Array.from(atob(packs[symbol]), c => c.charCodeAt(0));
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
      cache[symbol] = JSON.parse(await new Response(stream).text());
    }
    return cache[symbol];
  }
  function draw(id, fig, empty) {
    const el = document.getElementById(id);
    Plotly.purge(el);
    el.textContent = '';
    if (!fig) { el.textContent = empty; return; }
    const layout = Object.assign({}, fig.layout, {template: template});
    Plotly.newPlot(el, fig.data, layout, {responsive: true, displaylogo: false});
  }
  async function showSymbol(keepFamily) {
    const symbol = current;
    status.textContent = 'loading ' + symbol + '...';
    const data = await unpack(symbol);
    const families = Object.keys(data.studies);
    const wanted = keepFamily && families.includes(familySelect.value) ? familySelect.value
                   : (best[symbol] || families[0]);
    familySelect.innerHTML = '';
    for (const f of families) { familySelect.add(new Option(f, f, false, f === wanted)); }
    draw('symbol-figure', TunerFigures.symbol(data.symbol), '');
    showStudy(data);
    status.textContent = families.length ? '' : symbol + ': no study with completed trials';
  }
  function showStudy(data) {
    const study = data.studies[familySelect.value];
    const empty = 'no completed trials to plot';
    for (const key of %(figures)s) { draw('study-' + key, study && TunerFigures[key](study), study ? '' : empty); }
  }
  search.addEventListener('input', listMatches);
  search.addEventListener('keydown', e => {
    if (e.key === 'Enter') { const hits = find(search.value); if (hits.length) { pick(hits[0]); } }
  });
  familySelect.addEventListener('change', async () => showStudy(await unpack(current)));
  if (current) { search.value = current; showSymbol(false); }
})();
"""


SEARCH_SHOWN = 20
"""Matching symbols the search box lists at once (the page has thousands)."""


def symbol_index(report: ExperimentReport, studies: Mapping[tuple[str, str], Any],
                 symbols: Sequence[str]) -> list[list[str]]:
    """``[[symbol, family the explorer opens first], ...]``: what the symbol search looks in."""
    grouped = _rows_by_symbol(report)
    return [[s, _best_study(grouped.get(s, []), studies, s)] for s in symbols]


def _best_study(rows: Sequence[StudyRow], studies: Mapping[tuple[str, str], Any], symbol: str) -> str:
    """The family whose study the explorer opens for ``symbol`` (``rows``: its rows): the winner,
    or when the winner is a derived candidate (no trials of its own) the best family that has a study."""
    rows = [r for r in rows if (symbol, r.family) in studies]
    ranked = sorted(rows, key=lambda r: (not r.winner, r.validation_pct_return_mae
                                         if r.validation_pct_return_mae is not None else math.inf))
    return ranked[0].family if ranked else ""


def plots_html(report: ExperimentReport) -> str:
    """The report's figure sections (overview, importances, study explorer) as HTML; expects
    :func:`plotly_script` earlier in the page."""
    import plotly.io as pio

    from tuner.decisions.studies import study_trial_sets

    def inline(fig: go.Figure) -> str:
        return pio.to_html(fig, include_plotlyjs=False, full_html=False,
                           config={"responsive": True, "displaylogo": False})

    parts = ["<h2 id='overview'>Overview</h2>"]
    if not report.rows:
        parts.append("<p>nothing to plot yet</p>")
        return "\n".join(parts)
    parts += [inline(winners_figure(report)), inline(validation_test_figure(report)),
              inline(latency_error_figure(report, report.max_latency_s))]
    studies = study_trial_sets(report) if report.trials is not None and len(report.trials) else {}
    parts.append("<h2 id='importances'>Which hyperparameters matter (per family, across symbols)</h2>")
    families = sorted({f for _, f in studies}, key=_family_rank)
    if not families:
        parts.append("<p>no trials recorded yet (trials.parquet is written when the run finishes)</p>")
    for family in families:
        fig, note = importance_figure(family, studies)
        parts.append(f"<p class='note'>{esc(note)}</p>" + (inline(fig) if fig is not None else ""))

    symbols = sorted({r.symbol for r in report.rows} | {s for s, _ in studies})
    parts.append("<h2 id='explore'>Explore a study</h2>"
                 f"<p>{len(symbols)} symbols, {len(studies)} studies. Find a symbol (type part of its "
                 "name, Enter takes the first match) and choose a family: the symbol's families side by "
                 "side, then Optuna's optimisation history, slice and parallel coordinates of that study "
                 "(drawn on demand).</p>"
                 "<p><label>symbol <input id='symbol-search' type='search' autocomplete='off' "
                 "placeholder='type a symbol'></label> "
                 "<label>family <select id='family-select'></select></label> "
                 "<span id='explorer-status'></span></p><p id='symbol-matches'></p>"
                 "<div id='symbol-figure'></div>"
                 + "".join(f"<div id='study-{k}' class='study-figure'></div>" for k in STUDY_FIGURES))
    parts.append(_json_script("plotly-template", pio.templates[pio.templates.default].to_plotly_json()))
    parts.append(_json_script("symbol-index", symbol_index(report, studies, symbols)))
    parts.append(_json_script("study-data", explorer_payload(report, studies)))
    parts.append("<script>" + _FIGURES_JS + _EXPLORER_JS % {"figures": json.dumps(list(STUDY_FIGURES)),
                                                          "shown": SEARCH_SHOWN} + "</script>")
    return "\n".join(parts)
