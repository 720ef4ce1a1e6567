"""A finished experiment written without Ray, for the backtest, forward and patterns tests.

Each symbol's bootstrap_returns winner and a few other trials are scored in-process with
``run_trial`` on the first ``tuned_bars`` bars (what the experiment saw); the data folder may
hold more bars (a later append). The layout is what ``tuner run`` writes: ``summary.json``,
``<family>/<SYMBOL>.json``, ``trials.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import random_walk_bars
from tuner.core.data import load_bars
from tuner.core.families.registry import family_class
from tuner.core.storage import Storage
from tuner.core.summary_tables import write_summary
from tuner.core.trial import run_trial
from tuner.core.windows import WindowSpec, make_periods

FAMILY = "bootstrap_returns"
CONFIGS = [{"num_samples": 64, "lookback": lb, "aggregate": agg}
           for lb, agg in [(16, "mean"), (32, "median"), (64, "mean"), (128, "quantile_0.4"), (200, "median"),
                           (24, "trimmed_mean_10")]]
WINDOWS = WindowSpec(val_windows=20, test_windows=20)


def write_bars(folder: Path, symbol: str, n: int, seed: int, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{symbol}.csv"
    random_walk_bars(n, seed=seed, **kwargs).to_csv(file, index=False)
    return file


def make_experiment(root: Path, data: Path, tuned_bars: int, name: str = "exp",
                    symbols: tuple[str, ...] = ("AAA", "BBB"), seed: int = 0) -> Storage:
    """Write the experiment ``name`` under ``root`` from the first ``tuned_bars`` bars of
    ``data/<SYMBOL>.csv``."""
    storage = Storage(str(root), name)
    family = family_class(FAMILY)()
    entries, rows = {}, []
    for symbol in symbols:
        bars = load_bars(data / f"{symbol}.csv", symbol)
        tuned = type(bars)(bars.symbol, bars.source, bars.frame.iloc[:tuned_bars].reset_index(drop=True))
        periods = make_periods(tuned, WINDOWS, 256)
        results = [run_trial(family, c, periods, seed, with_test=True) for c in CONFIGS]
        for number, r in enumerate(results):
            rows.append({"study": f"{symbol}/{FAMILY}", "symbol": symbol, "family": FAMILY, "number": number,
                         "status": "completed", "config": json.dumps(r.config, sort_keys=True),
                         "pct_return_mae": r.objective})
        best = min(results, key=lambda r: r.objective)
        storage.write_json(f"{FAMILY}/{symbol}.json", best.to_dict())
        fam = {"config": best.config, "validation_pct_return_mae": best.objective,
               "test_pct_return_mae": best.test.scores.pct_return_mae,
               "latency_per_forecast_s": best.validation.scores.latency_per_forecast_s}
        entries[symbol] = {"families": {FAMILY: fam}, "best_family": FAMILY, "config": best.config}
    write_summary(storage, {"experiment": name, "data": str(data), "seed": seed,
                            "windows": dict(WINDOWS.__dict__), "tiny_weights": False,
                            "created_at": "2026-01-01T00:00:00+00:00", "complete": True, "symbols": entries})
    storage.write_parquet("trials.parquet", pd.DataFrame(rows))
    return storage
