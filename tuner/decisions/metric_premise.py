"""Does the metric we tune measure trading? Validation pct_return_mae against strategy results.

Every completed trial of the experiment (``trials.parquet``) is forecast again on its study's
validation windows (same seed, same windows: the trial's own forecasts) and its forecasts are
traded by the ``sign`` rule after costs. Per study, the Spearman rank correlation between the
trials' validation ``pct_return_mae`` and their per-bar Sharpe ratio (and hit rate) says whether
lower error went with better trading. A negative ρ supports the premise (lower error, higher
Sharpe). Studies are combined per family and over all families by a fixed-effect Fisher-z mean
weighted by ``n − 3``, with the Spearman variance ``1.06 / (n − 3)`` (Fieller, Hartley & Pearson
1957) giving a 95 % interval.

The per-trial Sharpe ratios also give the variance across trials that the Deflated Sharpe
Ratio needs (:mod:`tuner.core.statistics.deflated_sharpe`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tuner.core.data import Bars
from tuner.core.trading.strategy_rules import SIGN, positions, strategy_returns
from tuner.decisions.bar_forecasts import Forecasters, experiment_context_length, target_batch

MIN_TRIALS = 5
"""Fewest completed trials a study needs for its rank correlation to count (Fisher z needs n > 3)."""


@dataclass(frozen=True)
class StudyWindows:
    """Where one symbol's validation period sits in today's bars.

    Attributes:
        bars: the symbol's bars.
        test_end: index of the experiment's last test target.
        windows: the experiment's ``windows`` (val_windows, test_windows, horizon).
    """

    bars: Bars
    test_end: int
    windows: Mapping[str, Any]

    @property
    def validation_targets(self) -> np.ndarray:
        t, v = int(self.windows["test_windows"]), int(self.windows["val_windows"])
        return np.arange(self.test_end + 1 - t - v, self.test_end + 1 - t)


def trial_strategy_scores(trials: pd.DataFrame, studies: Mapping[str, StudyWindows], forecasters: Forecasters,
                          seed: int, costs_bps: float, echo: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per completed trial: ``symbol, family, number, pct_return_mae, sharpe_bar``
    (per-bar Sharpe of the sign rule's net returns, None when flat throughout) and ``hit_rate``.

    Trials of derived candidates and of symbols not in ``studies`` are skipped.
    """
    rows = []
    done = trials[trials["status"] == "completed"] if "status" in trials else trials
    for (symbol, family), group in done.groupby(["symbol", "family"], sort=True):
        if symbol not in studies:
            continue
        where = studies[symbol]
        targets = where.validation_targets
        length = experiment_context_length(forecasters.context(family), where.test_end, where.windows)
        batch = target_batch(where.bars, targets, length, "validation")
        moves = batch.actual_return
        for _, trial in group.iterrows():
            config = json.loads(trial["config"])
            predicted = forecasters.predicted_returns(family, config, batch, seed)
            pos = positions(SIGN, predicted)
            net = strategy_returns(pos, moves, costs_bps).net
            active = pos != 0
            sd = net.std(ddof=1)
            rows.append({"symbol": symbol, "family": family, "number": int(trial["number"]),
                         "pct_return_mae": float(trial["pct_return_mae"]),
                         "sharpe_bar": float(net.mean() / sd) if sd > 0 else None,
                         "hit_rate": float(np.mean(np.sign(pos[active]) == np.sign(moves[active])))
                         if active.any() else None})
        if echo:
            echo(f"  {symbol}/{family}: {len(group)} trials traded on validation")
    return pd.DataFrame(rows, columns=["symbol", "family", "number", "pct_return_mae", "sharpe_bar", "hit_rate"])


def _study_rho(group: pd.DataFrame, column: str) -> tuple[float, int] | None:
    sub = group[["pct_return_mae", column]].dropna()
    if len(sub) < MIN_TRIALS or sub[column].nunique() < 2 or sub["pct_return_mae"].nunique() < 2:
        return None
    rho = stats.spearmanr(sub["pct_return_mae"], sub[column]).statistic
    return (float(rho), len(sub)) if math.isfinite(rho) else None


def combined_rank_correlation(rhos: list[tuple[float, int]]) -> dict[str, Any]:
    """Fixed-effect Fisher-z mean of per-study Spearman ``(rho, n)`` pairs with a 95 % interval."""
    usable = [(r, n) for r, n in rhos if n > 3]
    if not usable:
        return {"rho": None, "ci": None, "studies": 0, "trials": 0,
                "reason": f"no study with at least {MIN_TRIALS} trials and varying scores"}
    z = np.array([math.atanh(max(min(r, 0.999999), -0.999999)) for r, _ in usable])
    w = np.array([n - 3 for _, n in usable], dtype=np.float64)
    mean = float((w * z).sum() / w.sum())
    se = math.sqrt(1.06 / w.sum())
    return {"rho": math.tanh(mean), "ci": [math.tanh(mean - 1.96 * se), math.tanh(mean + 1.96 * se)],
            "studies": len(usable), "trials": int(sum(n for _, n in usable))}


def rank_correlations(scores: pd.DataFrame) -> dict[str, Any]:
    """Per family and over all families (``all``): the combined rank correlation of validation
    pct_return_mae with the trials' Sharpe ratio and with their hit rate."""
    out: dict[str, Any] = {}
    if scores.empty:
        return out
    groups = {family: part for family, part in scores.groupby("family", sort=True)}
    groups["all"] = scores
    for name, part in groups.items():
        out[name] = {}
        for column, key in (("sharpe_bar", "sharpe"), ("hit_rate", "hit_rate")):
            rhos = [r for _, g in part.groupby(["symbol", "family"]) if (r := _study_rho(g, column))]
            out[name][key] = combined_rank_correlation(rhos)
    return out


def trial_sharpe_variance(scores: pd.DataFrame, symbol: str, family: str) -> tuple[float | None, int]:
    """Variance (ddof 1) of one study's per-bar trial Sharpe ratios and how many trials gave one."""
    part = scores[(scores["symbol"] == symbol) & (scores["family"] == family)]["sharpe_bar"].dropna()
    return (float(part.var(ddof=1)) if len(part) >= 2 else None), int(len(part))
