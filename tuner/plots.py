"""SVG plots for the HTML report (inline, hand-written: no plotting dependency).

Optimisation history per study, the winner per symbol by family, validation vs test, and
latency vs error; every function takes an :class:`~tuner.report.ExperimentReport` and returns
SVG strings.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from tuner.report import (
    FAMILY_ORDER,
    OVERFIT_RATIO,
    ExperimentReport,
    StudyRow,
    as_float,
    format_value,
)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def family_colors(families: Iterable[str]) -> dict[str, str]:
    ordered = sorted(set(families), key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 99, f))
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(ordered)}


def _finite(values: Iterable[float | None], positive: bool = False) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not positive)]


class _Scale:
    """Data → pixels on one axis, linear or log10 (chosen when the data span > 20×)."""

    def __init__(self, values: Iterable[float | None], start: float, end: float,
                 log: bool | None = None, zero: bool = False, integer: bool = False) -> None:
        self.integer = integer
        vals = _finite(values)
        positive = [v for v in vals if v > 0]
        if log is None:
            log = bool(positive) and len(positive) == len(vals) and not zero and max(positive) / min(positive) > 20
        self.log = log
        data = [math.log10(v) for v in positive] if log else vals
        lo, hi = (min(data), max(data)) if data else (0.0, 1.0)
        if zero and not log:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi - lo < 1e-12:
            pad = abs(hi) * 0.1 if hi else 1.0
            lo, hi = lo - pad, hi + pad
        else:
            pad = (hi - lo) * 0.06
            lo, hi = (lo if zero and lo == 0 else lo - pad), hi + pad
        self.lo, self.hi, self.start, self.end = lo, hi, start, end

    def usable(self, v: float | None) -> bool:
        return v is not None and math.isfinite(v) and (v > 0 or not self.log)

    def __call__(self, v: float) -> float:
        d = math.log10(v) if self.log else v
        return self.start + (d - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.floor(self.lo), math.ceil(self.hi)
            steps = (1, 2, 5) if last - first <= 3 else (1,)
            out = [m * 10.0 ** k for k in range(first, last + 1) for m in steps]
            return [t for t in out if self.lo <= math.log10(t) <= self.hi]
        raw = (self.hi - self.lo) / 5
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        if self.integer:
            step = max(1.0, float(math.ceil(step)))
        t = math.ceil(self.lo / step) * step
        out = []
        while t <= self.hi + step * 1e-9:
            out.append(0.0 if abs(t) < step * 1e-9 else t)
            t += step
        return out


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


class _Plot:
    """A small SVG x/y plot: axes with ticks, points with tooltips, lines, a legend."""

    def __init__(self, title: str, xlabel: str, ylabel: str, xs: Iterable[float | None],
                 ys: Iterable[float | None], *, width: int = 380, height: int = 260,
                 xlog: bool | None = None, ylog: bool | None = None, yzero: bool = False,
                 xinteger: bool = False, legend: Sequence[tuple[str, str, str]] = ()) -> None:
        """``legend``: (label, color, kind) with kind ``point``, ``hollow``, ``line`` or ``dashed``,
        drawn right of the plot area."""
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.width, self.height = width, height
        self.legend_items = list(legend)
        self.left, self.top, self.bottom = 62, 26, 40
        self.right = 12 + (12 + 7 * max(len(label) for label, _, _ in self.legend_items) if self.legend_items else 0)
        self.x = _Scale(xs, self.left, width - self.right, log=xlog, integer=xinteger)
        self.y = _Scale(ys, height - self.bottom, self.top, log=ylog, zero=yzero)
        self.parts: list[str] = []

    def point(self, x: float | None, y: float | None, color: str, tip: str, filled: bool = True,
              r: float = 3.5) -> None:
        if not (self.x.usable(x) and self.y.usable(y)):
            return
        fill = color if filled else "white"
        self.parts.append(f'<circle cx="{self.x(x):.1f}" cy="{self.y(y):.1f}" r="{r}" fill="{fill}" '
                          f'stroke="{color}" stroke-width="1.5"><title>{esc(tip)}</title></circle>')

    def line(self, points: Sequence[tuple[float, float]], color: str, dash: str | None = None,
             width: float = 1.5, step: bool = False, tip: str = "") -> None:
        pts = [(x, y) for x, y in points if self.x.usable(x) and self.y.usable(y)]
        if len(pts) < 2:
            return
        coords = []
        for i, (x, y) in enumerate(pts):
            if step and i:
                coords.append(f"{self.x(x):.1f},{self.y(pts[i - 1][1]):.1f}")
            coords.append(f"{self.x(x):.1f},{self.y(y):.1f}")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        title = f"<title>{esc(tip)}</title>" if tip else ""
        self.parts.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{color}" '
                          f'stroke-width="{width}"{dash_attr}>{title}</polyline>')

    def hline(self, y: float | None, color: str, dash: str = "4 3", tip: str = "") -> None:
        if not self.y.usable(y):
            return
        title = f"<title>{esc(tip)}</title>" if tip else ""
        self.parts.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{self.y(y):.1f}" '
                          f'y2="{self.y(y):.1f}" stroke="{color}" stroke-dasharray="{dash}">{title}</line>')

    def _axes(self) -> list[str]:
        x0, x1, y0, y1 = self.left, self.width - self.right, self.height - self.bottom, self.top
        out = [f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>']
        for t in self.x.ticks():
            px = self.x(t)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y1}" y2="{y0}" stroke="#eee"/>'
                       f'<text x="{px:.1f}" y="{y0 + 13}" text-anchor="middle">{esc(_tick(t))}</text>')
        for t in self.y.ticks():
            py = self.y(t)
            out.append(f'<line x1="{x0}" x2="{x1}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>'
                       f'<text x="{x0 - 4}" y="{py + 3:.1f}" text-anchor="end">{esc(_tick(t))}</text>')
        scale = lambda s: " (log)" if s.log else ""  # noqa: E731
        out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{self.height - 6}" text-anchor="middle">'
                   f'{esc(self.xlabel + scale(self.x))}</text>')
        out.append(f'<text transform="translate(12,{(y0 + y1) / 2:.0f}) rotate(-90)" text-anchor="middle">'
                   f'{esc(self.ylabel + scale(self.y))}</text>')
        out.append(f'<text x="{x0}" y="16" font-weight="bold">{esc(self.title)}</text>')
        for i, (label, color, kind) in enumerate(self.legend_items):
            lx, ly = x1 + 10, y1 + 8 + 14 * i
            if kind in ("line", "dashed"):
                dash = ' stroke-dasharray="4 2"' if kind == "dashed" else ""
                out.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{ly - 3}" y2="{ly - 3}" stroke="{color}" '
                           f'stroke-width="1.5"{dash}/>')
            else:
                fill = "white" if kind == "hollow" else color
                out.append(f'<circle cx="{lx + 7}" cy="{ly - 3}" r="3.5" fill="{fill}" stroke="{color}" '
                           'stroke-width="1.5"/>')
            out.append(f'<text x="{lx + 18}" y="{ly}">{esc(label)}</text>')
        return out

    def svg(self) -> str:
        body = "".join(self._axes() + self.parts)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" font-family="sans-serif" font-size="10" '
                f'role="img" aria-label="{esc(self.title)}">{body}</svg>')


def _tick(v: float) -> str:
    return f"{v:.3g}"


def history_plots(report: ExperimentReport) -> list[str]:
    """Per study: each trial's validation pct_return_mae in trial order (the order Tune created
    the trials, i.e. the order the study suggested them) with the running best and the baseline."""
    trials = report.trials
    if trials is None or len(trials) == 0 or "pct_return_mae" not in trials:
        return []
    colors = family_colors(trials["family"].unique())
    baselines = {(r.symbol, r.family): r.baseline_validation_pct_return_mae for r in report.rows}
    svgs = []
    for (symbol, family), group in trials.groupby(["symbol", "family"], sort=True):
        values = [as_float(v) for v in group["pct_return_mae"]]
        values = [v if v is not None and math.isfinite(v) else None for v in values]
        order = list(range(1, len(values) + 1))
        best, running = math.inf, []
        for i, v in zip(order, values, strict=True):
            if v is not None:
                best = min(best, v)
            if math.isfinite(best):
                running.append((float(i), best))
        base = baselines.get((symbol, family))
        if base is None and "baseline_pct_return_mae" in group:
            base = as_float(group["baseline_pct_return_mae"].dropna().iloc[0]) if group["baseline_pct_return_mae"].notna().any() else None
        plot = _Plot(f"{symbol} / {family}", "trial (order suggested)", "validation pct_return_mae",
                     order, [*values, base], xlog=False, xinteger=True, width=400, height=220,
                     legend=[("trial", colors[family], "point"), ("best so far", colors[family], "line"),
                             ("naive baseline", "#d62728", "dashed")])
        color = colors[family]
        statuses = list(group["status"]) if "status" in group else ["completed"] * len(values)
        for i, v, status in zip(order, values, statuses, strict=True):
            plot.point(float(i), v, color, f"trial {i}: {format_value(v, '.5f')} ({status})")
        plot.line(running, color, step=True, tip="running best")
        plot.hline(base, "#d62728", tip=f"naive baseline {format_value(base, '.5f')}")
        svgs.append(plot.svg())
    return svgs


def winner_plots(report: ExperimentReport) -> list[str]:
    """Per symbol: validation pct_return_mae by family (bars; the winner outlined) and the
    naive baseline (dashed)."""
    colors = family_colors(r.family for r in report.rows)
    by_symbol: dict[str, list[StudyRow]] = {}
    for r in report.rows:
        by_symbol.setdefault(r.symbol, []).append(r)
    svgs = []
    for symbol, rows in by_symbol.items():
        width, height, left, bottom, top = 340, 240, 62, 62, 26
        base = next((r.baseline_validation_pct_return_mae for r in rows if r.winner), None)
        scale = _Scale([r.validation_pct_return_mae for r in rows] + [base], height - bottom, top,
                       log=False, zero=True)
        slot = (width - left - 12) / max(len(rows), 1)
        parts = [f'<rect x="{left}" y="{top}" width="{width - left - 12}" height="{height - bottom - top}" '
                 f'fill="none" stroke="#999"/>']
        for t in scale.ticks():
            parts.append(f'<text x="{left - 4}" y="{scale(t) + 3:.1f}" text-anchor="end">{esc(_tick(t))}</text>'
                         f'<line x1="{left}" x2="{width - 12}" y1="{scale(t):.1f}" y2="{scale(t):.1f}" stroke="#eee"/>')
        for i, r in enumerate(rows):
            x = left + slot * i + slot * 0.15
            cx = left + slot * (i + 0.5)
            words = r.family.split("_") + (["(winner)"] if r.winner else [])
            spans = "".join(f'<tspan x="{cx:.1f}" dy="{0 if j == 0 else 11}">{esc(w)}</tspan>'
                            for j, w in enumerate(words))
            weight = ' font-weight="bold"' if r.winner else ""
            parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 13}" text-anchor="middle"{weight}>{spans}</text>')
            v = r.validation_pct_return_mae
            if v is None or not math.isfinite(v):
                continue
            y = scale(v)
            stroke = ' stroke="black" stroke-width="2.5"' if r.winner else ""
            tip = (f"{r.family}: validation {format_value(v, '.5f')}, test {format_value(r.test_pct_return_mae, '.5f')}"
                   + (f" [{', '.join(r.flags)}]" if r.flags else ""))
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                         f'height="{max(scale(0.0) - y, 0.5):.1f}" fill="{colors[r.family]}"{stroke}>'
                         f'<title>{esc(tip)}</title></rect>')
        if base is not None and math.isfinite(base):
            parts.append(f'<line x1="{left}" x2="{width - 12}" y1="{scale(base):.1f}" y2="{scale(base):.1f}" '
                         f'stroke="#d62728" stroke-dasharray="5 3"><title>naive baseline '
                         f'{format_value(base, ".5f")}</title></line>')
        winner = next((r for r in rows if r.winner), None)
        caption = f"winner {winner.family}" + (f" [{', '.join(winner.flags)}]" if winner and winner.flags else "") \
            if winner else "no winner"
        parts.append(f'<text x="{left}" y="16" font-weight="bold">{esc(symbol)}: {esc(caption)}</text>')
        parts.append(f'<text x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">'
                     'bars: validation pct_return_mae; dashed: naive baseline</text>')
        svgs.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                    f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10" role="img" '
                    f'aria-label="{esc(symbol)} by family">{"".join(parts)}</svg>')
    return svgs


def scatter_plots(report: ExperimentReport) -> list[str]:
    """Validation vs test pct_return_mae (y = x and the overfit ratio as lines) and validation
    latency per forecast vs validation pct_return_mae, one point per study (winners filled)."""
    rows = [r for r in report.rows if r.validation_pct_return_mae is not None]
    if not rows:
        return []
    colors = family_colors(r.family for r in rows)
    out = []
    legend = [*((f, c, "point") for f, c in colors.items()), ("not the winner", "#666", "hollow")]
    tested = [r for r in rows if r.test_pct_return_mae is not None]
    if tested:
        vals = [r.validation_pct_return_mae for r in tested] + [r.test_pct_return_mae for r in tested]
        log = _Scale(vals, 0, 1).log
        plot = _Plot("validation vs test pct_return_mae", "validation pct_return_mae", "test pct_return_mae",
                     vals, vals, width=560, height=380, xlog=log, ylog=log,
                     legend=[*legend, ("test = validation", "#666", "dashed"),
                             (f"test = {OVERFIT_RATIO:g} x validation", "#d62728", "dashed")])
        lo = min(_finite(vals, positive=log))
        hi = max(_finite(vals))
        plot.line([(lo, lo), (hi, hi)], "#666", dash="2 2", width=1, tip="test = validation")
        plot.line([(lo, OVERFIT_RATIO * lo), (hi / OVERFIT_RATIO, hi)], "#d62728", dash="6 3", width=1,
                  tip=f"test = {OVERFIT_RATIO:g} x validation (overfit threshold)")
        for r in tested:
            plot.point(r.validation_pct_return_mae, r.test_pct_return_mae, colors[r.family],
                       f"{r.symbol} {r.family}{' (winner)' if r.winner else ''}: validation "
                       f"{format_value(r.validation_pct_return_mae, '.5f')}, test {format_value(r.test_pct_return_mae, '.5f')}"
                       + (f" [{', '.join(r.flags)}]" if r.flags else ""), filled=r.winner,
                       r=4.5 if r.winner else 3.5)
        out.append(plot.svg())
    timed = [r for r in rows if r.validation_latency_per_forecast_s is not None]
    if timed:
        plot = _Plot("latency vs error", "validation latency per forecast (s)", "validation pct_return_mae",
                     [r.validation_latency_per_forecast_s for r in timed],
                     [r.validation_pct_return_mae for r in timed], width=560, height=380, legend=legend)
        for r in timed:
            plot.point(r.validation_latency_per_forecast_s, r.validation_pct_return_mae, colors[r.family],
                       f"{r.symbol} {r.family}{' (winner)' if r.winner else ''}: "
                       f"{format_value(r.validation_latency_per_forecast_s, '.4f')} s/forecast, "
                       f"pct_return_mae {format_value(r.validation_pct_return_mae, '.5f')}", filled=r.winner,
                       r=4.5 if r.winner else 3.5)
        out.append(plot.svg())
    return out
