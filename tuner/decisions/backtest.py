"""Backtest: an experiment's decided configs traded on the test period and any bars after it.

For every symbol, four forecasters are turned into positions by each rule of
:mod:`tuner.core.trading.strategy_rules` (``sign``, ``scaled``):

* ``decided``: the config the experiment decided (:mod:`tuner.decisions.decided`);
* ``default``: the same family's default config (``configs/spaces/<family>.yaml``);
* ``naive``: the no-change forecast (predicted return 0, so always flat: the cash line);
* ``buy_and_hold``: long 1 on every bar (whatever the rule).

The bars are the experiment's test period (never seen by tuning) and every bar the data holds
after it. A position for bar ``t`` uses the forecast of ``t`` (context: bars ``< t``) and the
volatility of bars ``< t`` only; the forecasts are made in this process with the experiment's
weights, seed and windows, so the test-period forecasts are the ones the experiment scored.
Per symbol and for the equal-weight portfolio (each bar, the mean net return of the symbols
that have that bar): :class:`~tuner.core.trading.trading_metrics.Performance` per period (``test``,
``after_test`` when there are bars after it, ``all``). For the decided config, per rule: the
Sharpe difference against the default with a block-bootstrap interval, and the Deflated Sharpe
Ratio with the number of trials its study ran (the journal) and the variance of the trials'
Sharpe ratios on validation (:mod:`tuner.decisions.metric_premise`, which also measures whether
lower ``pct_return_mae`` meant better trading).

Writes ``backtest.json`` (strict JSON) and ``backtest.parquet`` (one row per symbol, bar,
config and rule) in the experiment's folder.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.core.data import load_dataset
from tuner.core.statistics.deflated_sharpe import deflated_sharpe
from tuner.core.statistics.sharpe_difference import sharpe_difference
from tuner.core.storage import TRIALS_FILE, Storage
from tuner.core.trading.bar_frequency import bar_frequency
from tuner.core.trading.strategy_rules import (
    DEFAULT_COSTS_BPS,
    RULES,
    StrategyReturns,
    past_volatility,
    positions,
    strategy_returns,
)
from tuner.core.trading.trading_metrics import performance
from tuner.decisions.bar_forecasts import Forecasters, experiment_context_length, target_batch
from tuner.decisions.decided import (
    DERIVED_FAMILIES,
    Decided,
    decided_configs,
    locate_test_end,
    read_summary,
)
from tuner.decisions.metric_premise import (
    StudyWindows,
    rank_correlations,
    trial_sharpe_variance,
    trial_strategy_scores,
)
from tuner.engine.journal import read_journal

log = logging.getLogger(__name__)

BACKTEST_JSON = "backtest.json"
BACKTEST_PARQUET = "backtest.parquet"
ROLES = ("decided", "default", "naive", "buy_and_hold")
PERIODS = ("test", "after_test", "all")
Echo = Callable[[str], None]


@dataclass(frozen=True)
class SymbolBars:
    """One symbol's backtest inputs, all (W,) arrays over the backtested bars in time order.

    Attributes:
        symbol: the symbol.
        timestamps: ``datetime64[ns]`` of each bar.
        period: ``test`` or ``after_test`` per bar.
        bar_returns: ``close[t]/close[t-1] − 1``.
        volatility: std of the 20 bar returns before each bar (bars < t).
        predicted: role → predicted return of each bar (``buy_and_hold`` has none).
    """

    symbol: str
    timestamps: np.ndarray
    period: np.ndarray
    bar_returns: np.ndarray
    volatility: np.ndarray
    predicted: Mapping[str, np.ndarray]


def role_positions(inputs: SymbolBars, role: str, rule: str) -> np.ndarray:
    """(W,) positions of one forecaster under one rule (buy-and-hold: 1 throughout)."""
    if role == "buy_and_hold":
        return np.ones_like(inputs.bar_returns)
    return positions(rule, inputs.predicted[role], inputs.volatility)


def symbol_inputs(bars, decided: Decided, default_config: Mapping[str, Any] | None, test_end: int,
                  windows: Mapping[str, Any], seed: int, forecasters: Forecasters) -> SymbolBars:
    """Forecast the test period and later bars of one symbol with its decided and default configs."""
    test = int(windows["test_windows"])
    targets = np.arange(test_end + 1 - test, len(bars))
    length = experiment_context_length(forecasters.context(decided.family), test_end, windows)
    batch = target_batch(bars, targets, length, "backtest")
    predicted = {"decided": forecasters.predicted_returns(decided.family, decided.config, batch, seed),
                 "naive": np.zeros(len(targets))}
    predicted["default"] = (forecasters.predicted_returns(decided.family, default_config, batch, seed)
                            if default_config is not None else np.zeros(len(targets)))
    return SymbolBars(
        symbol=bars.symbol, timestamps=bars.timestamps[targets],
        period=np.where(targets <= test_end, "test", "after_test"),
        bar_returns=batch.actual_return, volatility=past_volatility(bars.close, targets),
        predicted=predicted)


def _period_masks(period: np.ndarray) -> dict[str, np.ndarray]:
    masks = {"test": period == "test", "after_test": period == "after_test",
             "all": np.ones(period.shape, bool)}
    return {k: m for k, m in masks.items() if m.sum() >= 2 or k == "all"}


def _perf_by_period(net_frame: pd.DataFrame, bars_per_year: float) -> dict[str, Any]:
    out = {}
    for name, mask in _period_masks(net_frame["period"].to_numpy()).items():
        part = net_frame[mask]
        result = StrategyReturns(*(part[c].to_numpy() for c in
                                   ("position", "bar_return", "gross", "cost", "net", "traded")))
        out[name] = performance(result, bars_per_year).to_dict()
    return out


def backtest_symbol(inputs: SymbolBars, costs_bps: float) -> pd.DataFrame:
    """Per bar, role and rule: position, bar return, gross, cost, net (the parquet's rows)."""
    frames = []
    for role in ROLES:
        for rule in RULES:
            pos = role_positions(inputs, role, rule)
            res = strategy_returns(pos, inputs.bar_returns, costs_bps)
            frames.append(pd.DataFrame({
                "symbol": inputs.symbol, "timestamp": inputs.timestamps, "period": inputs.period,
                "role": role, "rule": rule,
                "predicted_return": inputs.predicted.get(role, np.full(pos.shape, np.nan)),
                "position": res.positions, "bar_return": res.bar_returns, "gross": res.gross,
                "cost": res.costs, "net": res.net, "traded": res.traded}))
    return pd.concat(frames, ignore_index=True)


def portfolio_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """The equal-weight portfolio: per role, rule and timestamp, the mean of the symbols' columns
    (symbols without that bar are left out of that bar's mean); ``period`` is ``after_test``
    only when every symbol's bar is."""
    numeric = ["position", "bar_return", "gross", "cost", "net", "traded"]
    grouped = frame.groupby(["role", "rule", "timestamp"], sort=True)
    out = grouped[numeric].mean()
    out["period"] = grouped["period"].agg(lambda p: "after_test" if (p == "after_test").all() else "test")
    return out.reset_index()


def _trial_counts(storage: Storage) -> dict[str, int]:
    """Completed trials per study key ``SYMBOL/family``: from the journal, else trials.parquet."""
    counts: Counter[str] = Counter()
    try:
        for record in read_journal(storage):
            if record.status == "completed":
                counts[record.study] += 1
    except Exception as e:  # a damaged journal must not stop a backtest: fall back to the table
        log.warning("journal unreadable (%s); trial counts from %s", e, TRIALS_FILE)
        counts.clear()
    if not counts and storage.exists(TRIALS_FILE):
        trials = storage.read_parquet(TRIALS_FILE)
        counts.update(trials[trials["status"] == "completed"]["study"].tolist())
    return dict(counts)


def _result_file(storage: Storage, family: str, symbol: str) -> dict[str, Any] | None:
    path = f"{family}/{symbol}.json"
    return storage.read_json(path) if storage.exists(path) else None


def run_backtest(experiment: str, storage_root: str = "results", *, costs_bps: float = DEFAULT_COSTS_BPS,
                 data: str | Path | None = None, configs: str | Path | None = None,
                 symbols: list[str] | None = None, device: str | None = None,
                 premise: bool = True, echo: Echo | None = None) -> dict[str, Any]:
    """Backtest ``experiment`` (see the module docstring); returns what ``backtest.json`` holds.

    Raises:
        ExperimentNotReady: no summary.json yet.
        DataError / ConfigError: the data or a config cannot be read (naming file and field).
    """
    say = echo or (lambda line: None)
    storage = Storage(storage_root, experiment)
    results = read_summary(storage)
    summary = results.document
    windows = summary.get("windows") or {"val_windows": 20, "test_windows": 20, "horizon": 1}
    if int(windows.get("horizon", 1)) != 1:
        from tuner.core.errors import ConfigError

        raise ConfigError(f"experiment {experiment}: windows.horizon {windows['horizon']}: the backtest "
                          "trades next-bar forecasts and needs an experiment tuned at horizon 1")
    seed = int(summary.get("seed", 0))
    decided = decided_configs(results, symbols)
    dataset = load_dataset(data or summary.get("data"), symbols=list(decided))
    notes: list[str] = []
    if summary.get("tiny_weights"):
        notes.append("TINY RANDOM-INIT weights: every forecast is noise, so is every number here")
    counts = _trial_counts(storage)
    frames, per_symbol, studies, frequencies = [], {}, {}, {}
    with Forecasters(summary, configs, device, echo) as forecasters:
        for symbol, choice in decided.items():
            if choice.family in DERIVED_FAMILIES:
                notes.append(f"{symbol}: decided candidate {choice.family} is derived from family "
                             "winners and is not backtested")
                continue
            bars = dataset.get(symbol)
            result = _result_file(storage, choice.best_family, symbol) or {}
            test_end = locate_test_end(bars, summary, ((result.get("baseline") or {}).get("test") or {}).get("errors"),
                                       int(windows["test_windows"]))
            studies[symbol] = StudyWindows(bars, test_end, windows)
            default = forecasters.default_config(choice.family)
            inputs = symbol_inputs(bars, choice, default, test_end, windows, seed, forecasters)
            frame = backtest_symbol(inputs, costs_bps)
            frames.append(frame)
            frequency = bar_frequency(bars.timestamps)
            frequencies[symbol] = frequency
            per_symbol[symbol] = {
                "decided": {"family": choice.family, "config": dict(choice.config), "choice": choice.choice},
                "default_config": dict(default) if default is not None else None,
                "frequency": {"label": frequency.label, "bars_per_year": frequency.bars_per_year},
                "bars": {p: int((inputs.period == p).sum()) for p in ("test", "after_test")},
                "first_bar": str(inputs.timestamps[0]), "last_bar": str(inputs.timestamps[-1]),
                "strategies": _strategies(frame, frequency.bars_per_year),
            }
            say(f"{symbol}: {len(inputs.bar_returns)} bars backtested ({choice.family}, {choice.choice})")
        scores = pd.DataFrame()
        if premise and storage.exists(TRIALS_FILE):
            say("trading every trial on its validation windows (does pct_return_mae measure trading?)")
            scores = trial_strategy_scores(storage.read_parquet(TRIALS_FILE), studies, forecasters, seed,
                                           costs_bps, echo)
    for symbol, entry in per_symbol.items():
        sym = pd.concat([f for f in frames if f["symbol"].iat[0] == symbol])
        entry["vs_default"], entry["deflated_sharpe"] = _decided_statistics(
            sym, decided[symbol], frequencies[symbol].bars_per_year, counts, scores)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    portfolio = {}
    if not frame.empty:
        common = Counter(f.bars_per_year for f in frequencies.values()).most_common(1)[0][0]
        portfolio = {"symbols": sorted(per_symbol), "bars_per_year": common,
                     "strategies": _strategies(portfolio_bars(frame), common)}
    document = {
        "experiment": experiment, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "costs_bps": costs_bps, "seed": seed, "tiny_weights": bool(summary.get("tiny_weights")),
        "rules": {"sign": "position = sign(predicted next-bar return)",
                  "scaled": "position = predicted return / std of the 20 previous bar returns, "
                            "clipped to [-1, 1]"},
        "roles": {"decided": "the experiment's decided config", "default": "the family's default config",
                  "naive": "no-change forecast: always flat", "buy_and_hold": "long 1 on every bar"},
        "notes": notes, "symbols": per_symbol, "portfolio": portfolio,
        "metric_premise": ({"what": "Spearman rho of validation pct_return_mae with the sign rule's "
                            "per-bar Sharpe and hit rate over each study's trials (negative: lower "
                            "error, better trading), Fisher-z mean over studies with a 95 % interval",
                            **rank_correlations(scores)} if not scores.empty else
                           {"reason": "not computed (no trials.parquet, or --no-premise)"}),
    }
    storage.write_json(BACKTEST_JSON, document)
    if not frame.empty:
        storage.write_parquet(BACKTEST_PARQUET, frame)
    return document


def _strategies(frame: pd.DataFrame, bars_per_year: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (role, rule), part in frame.groupby(["role", "rule"], sort=False):
        out.setdefault(role, {})[rule] = _perf_by_period(part.sort_values("timestamp"), bars_per_year)
    return out


def _decided_statistics(frame: pd.DataFrame, choice: Decided, bars_per_year: float,
                        counts: Mapping[str, int], scores: pd.DataFrame) -> tuple[dict, dict]:
    vs_default, dsr = {}, {}
    study = f"{choice.symbol}/{choice.family}"
    trials = counts.get(study) if choice.choice in ("own", "winner") else (1 if choice.choice == "default" else None)
    variance, traded = (trial_sharpe_variance(scores, choice.symbol, choice.family)
                        if not scores.empty else (None, 0))
    for rule in RULES:
        mine = frame[(frame["role"] == "decided") & (frame["rule"] == rule)].sort_values("timestamp")["net"].to_numpy()
        other = frame[(frame["role"] == "default") & (frame["rule"] == rule)].sort_values("timestamp")["net"].to_numpy()
        vs_default[rule] = sharpe_difference(mine, other, bars_per_year).to_dict()
        if trials is None:
            dsr[rule] = {"dsr": None, "reason": f"trial count of the {choice.choice} config unknown"}
        elif trials > 1 and variance is None:
            dsr[rule] = {"dsr": None, "trials": trials,
                         "reason": "variance of the trials' Sharpe ratios unknown (run without --no-premise)"}
        else:
            try:
                dsr[rule] = {**deflated_sharpe(mine, trials, variance or 0.0).to_dict(),
                             "trials_with_sharpe": traded}
            except ValueError as e:
                dsr[rule] = {"dsr": None, "trials": trials, "reason": str(e)}
    return vs_default, dsr


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """What ``tuner backtest`` prints: per symbol and rule the decided, default and buy-and-hold
    Sharpe ratios and returns over all backtested bars, the DSR and the Sharpe difference."""
    def num(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = [f"backtest of {document['experiment']}: costs {document['costs_bps']:g} bps per unit traded"]
    lines += [f"NOTE: {n}" for n in document.get("notes", [])]
    header = f"{'symbol':<10} {'rule':<7} {'decided SR':>10} {'ret':>8} {'default SR':>10} {'hold SR':>8} " \
             f"{'SR diff [95% CI]':>26} {'DSR':>6}"
    lines.append(header)
    rows = list(document["symbols"].items()) + ([("PORTFOLIO", document["portfolio"])] if document["portfolio"] else [])
    for symbol, entry in rows:
        for rule in RULES:
            s = entry["strategies"]
            d, f, h = (s[r][rule]["all"] for r in ("decided", "default", "buy_and_hold"))
            diff = (entry.get("vs_default") or {}).get(rule) or {}
            ci = diff.get("ci")
            diff_text = (f"{num(diff.get('difference'), '+.2f')} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci
                         else num(diff.get("difference"), "+.2f"))
            dsr = ((entry.get("deflated_sharpe") or {}).get(rule) or {}).get("dsr")
            lines.append(f"{symbol:<10} {rule:<7} {num(d['sharpe'], '.2f'):>10} {d['total_return']:>+8.2%} "
                         f"{num(f['sharpe'], '.2f'):>10} {num(h['sharpe'], '.2f'):>8} {diff_text:>26} "
                         f"{num(dsr, '.2f'):>6}")
    premise = document.get("metric_premise") or {}
    for family, values in premise.items():
        if not isinstance(values, Mapping):
            continue
        for what, v in values.items():
            ci = v.get("ci")
            lines.append(f"rank corr(validation pct_return_mae, {what}) {family}: "
                         + (f"{v['rho']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] over {v['studies']} studies, "
                            f"{v['trials']} trials" if ci else f"- ({v.get('reason')})"))
    if "reason" in premise:
        lines.append(f"rank correlation: {premise['reason']}")
    return lines
