"""Which model wins where: family win rates and chosen hyperparameters against what the symbols
are like, and the design document's claims tested as hypotheses.

Symbol characteristics are measured from the bars the experiment tuned on (the
:data:`LOOKBACK_BARS` bars ending where its test period starts), never from the test period:

* ``volatility``: tercile (low / mid / high) of the annualised standard deviation of bar returns;
* ``trend``: tercile (weak / mid / strong) of the R² of a straight line through log prices;
* ``frequency``: the bar frequency (:mod:`tuner.core.trading.bar_frequency`);
* any column of an optional tags table (``symbols.csv``: a ``symbol`` column, then e.g.
  ``sector``, ``asset_class``).

A symbol's winning family is its decided family (:mod:`tuner.decisions.decided`); its chosen
hyperparameters are each family's own winner config. Every share has a Wilson 95 % interval,
every mean a Student-t one. With a handful of symbols the intervals are wide: that is the
answer, not a defect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.core.data import Bars, load_dataset
from tuner.core.errors import DataError
from tuner.core.statistics.proportions import exact_interval, mean_interval, wilson_interval
from tuner.core.storage import Storage
from tuner.core.trading.bar_frequency import bar_frequency
from tuner.decisions.decided import decided_configs, locate_test_end, read_summary

PATTERNS_JSON = "patterns.json"
LOOKBACK_BARS = 250
TERCILES = {"volatility": ("low", "mid", "high"), "trend": ("weak", "mid", "strong")}
TAGS_FILE = "symbols.csv"
TINY_NOTE = ("TINY RANDOM-INIT weights: every line below is about noise in random networks, not "
             "about the models; only the machinery is shown")
Echo = Callable[[str], None]


def measure(bars: Bars, end: int, lookback: int = LOOKBACK_BARS) -> dict[str, Any]:
    """Volatility (annualised), trend R² and frequency of ``bars`` over the ``lookback`` bars
    before index ``end`` (exclusive)."""
    closes = bars.close[max(0, end - lookback):end]
    freq = bar_frequency(bars.timestamps[: max(end, 2)])
    rets = closes[1:] / closes[:-1] - 1.0
    logp = np.log(closes)
    x = np.arange(logp.size)
    r2 = float(np.corrcoef(x, logp)[0, 1] ** 2) if logp.size > 2 and logp.std() > 0 else 0.0
    return {"volatility_value": float(rets.std(ddof=1) * math.sqrt(freq.bars_per_year)) if rets.size > 1 else 0.0,
            "trend_value": r2, "frequency": freq.label}


def terciles(values: pd.Series, labels: tuple[str, str, str]) -> pd.Series:
    """Rank-based terciles: the lowest third of the values gets ``labels[0]`` and so on (ties by
    order of appearance, so every symbol gets one)."""
    ranks = values.rank(method="first").to_numpy() - 1
    idx = np.minimum((3 * ranks / max(len(values), 1)).astype(int), 2)
    return pd.Series([labels[i] for i in idx], index=values.index)


def read_tags(path: str | Path) -> pd.DataFrame:
    """``symbols.csv``: a ``symbol`` column and any tag columns (indexed by symbol).

    Raises:
        DataError: no ``symbol`` column, or a symbol listed twice (naming the row).
    """
    path = Path(path)
    try:
        tags = pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as CSV ({e})") from e
    tags.columns = [str(c).strip().lower() for c in tags.columns]
    if "symbol" not in tags.columns:
        raise DataError(f"{path}: no 'symbol' column (columns: {', '.join(tags.columns)})")
    dup = tags["symbol"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 2  # header is line 1
        raise DataError(f"{path} line {row}: symbol {tags['symbol'].iat[row - 2]!r} is listed twice")
    return tags.set_index("symbol")


def characteristics(measures: Mapping[str, Mapping[str, Any]], tags: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per symbol: ``volatility`` and ``trend`` terciles, ``frequency``, tag columns."""
    frame = pd.DataFrame.from_dict(measures, orient="index")
    for name, labels in TERCILES.items():
        frame[name] = terciles(frame[f"{name}_value"], labels)
    if tags is not None:
        frame = frame.join(tags, how="left")
    frame.index.name = "symbol"
    return frame


def grouping_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not c.endswith("_value")]


def win_rates(frame: pd.DataFrame, winners: Mapping[str, str], families: list[str]) -> list[dict[str, Any]]:
    """Per characteristic, level and family: symbols at that level the family won, of how many,
    the share and its Wilson interval."""
    rows = []
    won = pd.Series(winners)
    for column in grouping_columns(frame):
        for level, part in frame.groupby(column, sort=True, dropna=True):
            symbols = [s for s in part.index if s in won.index]
            for family in families:
                k = int(sum(won[s] == family for s in symbols))
                rows.append({"characteristic": column, "level": str(level), "family": family, "wins": k,
                             "symbols": len(symbols), "share": k / len(symbols) if symbols else None,
                             "ci": _ci(wilson_interval(k, len(symbols)))})
    return rows


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return [ci[0], ci[1]] if ci else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chosen_hyperparameters(frame: pd.DataFrame, configs: Mapping[str, Mapping[str, Mapping[str, Any]]]
                           ) -> list[dict[str, Any]]:
    """Per family, parameter, characteristic and level, over the family's winner configs:
    numbers as mean with a t interval (and median); other values as the most common one, its
    share and Wilson interval. ``configs``: family → symbol → winner config."""
    rows = []
    for family, by_symbol in sorted(configs.items()):
        params = sorted({p for c in by_symbol.values() for p in c})
        for param in params:
            for column in grouping_columns(frame):
                for level, part in frame.groupby(column, sort=True, dropna=True):
                    values = [by_symbol[s][param] for s in part.index if s in by_symbol and param in by_symbol[s]]
                    if not values:
                        continue
                    row = {"family": family, "param": param, "characteristic": column, "level": str(level),
                           "symbols": len(values)}
                    if all(_is_number(v) for v in values):
                        arr = np.asarray(values, dtype=np.float64)
                        row.update(mean=float(arr.mean()), median=float(np.median(arr)),
                                   ci=_ci(mean_interval(arr)))
                    else:
                        texts = pd.Series([str(v) for v in values])
                        top = texts.value_counts().index[0]
                        k = int((texts == top).sum())
                        row.update(most_common=top, share=k / len(values), ci=_ci(wilson_interval(k, len(values))))
                    rows.append(row)
    return rows


def _overlaps(ci: list[float] | None, low: float, high: float) -> str:
    if ci is None:
        return "cannot tell"
    if ci[1] < low or ci[0] > high:
        return "contradicted"
    return "consistent"


def hypotheses(summary: Mapping[str, Any], frame: pd.DataFrame, winners: Mapping[str, str]) -> list[dict[str, Any]]:
    """The design document's claims, one dict each: ``claim``, ``data`` (what the numbers say),
    ``estimate``, ``ci``, ``n``, ``verdict`` (consistent / contradicted / cannot tell /
    not testable: a family it names was not tuned)."""
    entries = summary.get("symbols") or {}
    tuned = {f for e in entries.values() for f in (e.get("families") or {})}
    out = []

    claim = "Toto wins 70-80 % of stocks"
    if "toto" not in tuned:
        out.append(_untestable(claim, "toto was not tuned in this experiment"))
    else:
        n, k = len(winners), sum(f == "toto" for f in winners.values())
        ci = _ci(wilson_interval(k, n))
        out.append({"claim": claim, "data": f"toto won {k} of {n} symbols", "estimate": k / n if n else None,
                    "ci": ci, "n": n, "verdict": _overlaps(ci, 0.70, 0.80)})

    claim = "Kronos ensemble always beats Kronos standard (test pct_return_mae)"
    pairs = [(e["families"]["kronos_ensemble"].get("test_pct_return_mae"),
              e["families"]["kronos_standard"].get("test_pct_return_mae"))
             for e in entries.values() if {"kronos_ensemble", "kronos_standard"} <= set(e.get("families") or {})]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        out.append(_untestable(claim, "kronos_ensemble and kronos_standard were not both tuned"))
    else:
        k = sum(a < b for a, b in pairs)
        ci = _ci(exact_interval(k, len(pairs)))
        verdict = "consistent" if k == len(pairs) else "contradicted"
        out.append({"claim": claim, "data": f"ensemble lower test error on {k} of {len(pairs)} symbols",
                    "estimate": k / len(pairs), "ci": ci, "n": len(pairs), "verdict": verdict})

    out.append(_recipe_hypothesis(entries, frame))

    claim = "Kronos ensemble is 2-3x faster than Toto (latency per forecast)"
    ratios = []
    for e in entries.values():
        fams = e.get("families") or {}
        if {"toto", "kronos_ensemble"} <= set(fams):
            t, k = fams["toto"].get("latency_per_forecast_s"), fams["kronos_ensemble"].get("latency_per_forecast_s")
            if t and k:
                ratios.append(math.log(t / k))
    if not ratios:
        out.append(_untestable(claim, "toto and kronos_ensemble were not both tuned (with latencies)"))
    else:
        ci = mean_interval(np.asarray(ratios))
        est = math.exp(float(np.mean(ratios)))
        ci_x = [math.exp(ci[0]), math.exp(ci[1])] if ci else None
        out.append({"claim": claim, "data": f"Toto / ensemble latency, geometric mean over {len(ratios)} symbols: "
                    f"{est:.2f}x", "estimate": est, "ci": ci_x, "n": len(ratios), "verdict": _overlaps(ci_x, 2.0, 3.0)})
    return out


_TRIMMED = re.compile(r"^trimmed_mean_(\d+)$")


def _recipe_hypothesis(entries: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    claim = ("high-volatility stocks prefer trimmed_mean_5..15 with 128-512 samples; low-volatility ones "
             "mean/median with 2048-4096 samples")
    high, low = [], []
    for symbol, e in entries.items():
        if symbol not in frame.index:
            continue
        for fam in (e.get("families") or {}).values():
            config = fam.get("config") or {}
            if "aggregate" not in config or "num_samples" not in config:
                continue
            agg, samples = str(config["aggregate"]), config["num_samples"]
            m = _TRIMMED.match(agg)
            level = frame.at[symbol, "volatility"]
            if level == "high":
                high.append(bool(m and 5 <= int(m.group(1)) <= 15 and 128 <= samples <= 512))
            elif level == "low":
                low.append(agg in ("mean", "median") and 2048 <= samples <= 4096)
    if not high and not low:
        return _untestable(claim, "no winner with aggregate and num_samples in the high or low volatility tercile")
    hi_ci, lo_ci = _ci(wilson_interval(sum(high), len(high))), _ci(wilson_interval(sum(low), len(low)))
    verdict = ("consistent" if hi_ci and lo_ci and hi_ci[0] > 0.5 and lo_ci[0] > 0.5 else
               "contradicted" if hi_ci and lo_ci and hi_ci[1] < 0.5 and lo_ci[1] < 0.5 else "cannot tell")
    return {"claim": claim,
            "data": f"high-vol winners following the recipe: {sum(high)} of {len(high)}; "
                    f"low-vol: {sum(low)} of {len(low)}",
            "estimate": {"high": sum(high) / len(high) if high else None, "low": sum(low) / len(low) if low else None},
            "ci": {"high": hi_ci, "low": lo_ci}, "n": len(high) + len(low), "verdict": verdict}


def _untestable(claim: str, why: str) -> dict[str, Any]:
    return {"claim": claim, "data": why, "estimate": None, "ci": None, "n": 0, "verdict": "not testable"}


def run_patterns(experiment: str, storage_root: str = "results", *, data: str | Path | None = None,
                 tags: str | Path | None = None, echo: Echo | None = None) -> dict[str, Any]:
    """Measure the symbols, build the tables and hypotheses, write ``patterns.json``; return it."""
    storage = Storage(storage_root, experiment)
    results = read_summary(storage)
    summary = results.document
    windows = summary.get("windows") or {"val_windows": 20, "test_windows": 20}
    entries = results.entries_dict()  # parsed once: the decisions and the tables below read them
    decided = decided_configs({"symbols": entries})
    source = Path(data or summary.get("data"))
    dataset = load_dataset(source, symbols=list(decided))
    measures = {}
    for symbol, choice in decided.items():
        bars = dataset.get(symbol)
        path = f"{choice.best_family}/{symbol}.json"
        result = storage.read_json(path) if storage.exists(path) else {}
        end = locate_test_end(bars, summary, ((result.get("baseline") or {}).get("test") or {}).get("errors"),
                              int(windows["test_windows"]))
        measures[symbol] = measure(bars, end + 1 - int(windows["test_windows"]))
    tag_file = Path(tags) if tags else (source / TAGS_FILE if source.is_dir() else None)
    tag_frame = read_tags(tag_file) if tag_file is not None and tag_file.is_file() else None
    frame = characteristics(measures, tag_frame)
    winners = {s: d.family for s, d in decided.items()}
    families = sorted({f for e in entries.values() for f in (e.get("families") or {})})
    configs: dict[str, dict[str, Mapping[str, Any]]] = {}
    for symbol, e in entries.items():
        for family, fam in (e.get("families") or {}).items():
            configs.setdefault(family, {})[symbol] = fam.get("config") or {}
    document = {
        "experiment": experiment, "tiny_weights": bool(summary.get("tiny_weights")),
        "notes": [TINY_NOTE] if summary.get("tiny_weights") else [],
        "tags": str(tag_file) if tag_frame is not None else None,
        "symbols": frame.reset_index().to_dict(orient="records"),
        "win_rates": win_rates(frame, winners, families),
        "hyperparameters": chosen_hyperparameters(frame, configs),
        "hypotheses": hypotheses({"symbols": entries}, frame, winners),
    }
    storage.write_json(PATTERNS_JSON, document)
    return document


def _fmt_ci(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if isinstance(ci, list) else "-"


def pattern_lines(document: Mapping[str, Any]) -> list[str]:
    """What ``tuner patterns`` prints."""
    lines = [f"patterns of {document['experiment']}"] + [f"NOTE: {n}" for n in document["notes"]]
    lines.append("symbols: " + "; ".join(
        f"{r['symbol']} vol {r['volatility']} ({r['volatility_value']:.2f}), trend {r['trend']} "
        f"(R² {r['trend_value']:.2f}), {r['frequency']}" for r in document["symbols"]))
    lines.append("family win rates (wins / symbols, share [Wilson 95 % CI]):")
    for r in document["win_rates"]:
        if r["symbols"]:
            share = "-" if r["share"] is None else f"{r['share']:.2f}"
            where = f"{r['characteristic']}={r['level']}"
            lines.append(f"  {where:<22} {r['family']:<18} {r['wins']}/{r['symbols']} "
                         f"{share} {_fmt_ci(r['ci'])}")
    lines.append("chosen hyperparameters (per family winner):")
    for r in document["hyperparameters"]:
        what = (f"mean {r['mean']:.4g} (median {r['median']:.4g}) {_fmt_ci(r['ci'])}" if "mean" in r
                else f"{r['most_common']} in {r['share']:.0%} {_fmt_ci(r['ci'])}")
        lines.append(f"  {r['family']}.{r['param']} {r['characteristic']}={r['level']}: {what} (n={r['symbols']})")
    lines.append("the design document's claims (claim | what the data says | 95 % CI | verdict):")
    for h in document["hypotheses"]:
        ci = h["ci"]
        ci_text = (" ".join(f"{k} {_fmt_ci(v)}" for k, v in ci.items()) if isinstance(ci, Mapping) else _fmt_ci(ci))
        lines.append(f"  {h['claim']} | {h['data']} | {ci_text} | {h['verdict']}")
    return lines
