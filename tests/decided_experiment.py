"""A small experiment written through ``collate.write_experiment`` from synthetic per-window errors
(no model, no Ray): three symbols of one family, each with a winner, a default and optionally a
pooled config, so the decisions, the panel tests, the report and promote can be checked end to end.

* ``EDGE``: its own winner is far better than the default and the pooled config on test → ``own``.
* ``POOL`` and ``NULL``: their own winners are no better than the default. With ``pooled``, the
  pooled config is clearly better than the default on every symbol → both get ``pooled``;
  without it, both get ``default``.
"""

from __future__ import annotations

import numpy as np

from tuner.core.metrics import Scores
from tuner.core.pooled import PooledOutcome
from tuner.core.storage import Storage
from tuner.core.trial import PeriodResult, TrialResult
from tuner.engine.collate import COMPLETED, TrialRecord, write_experiment

FAMILY = "bootstrap_returns"
SYMBOLS = ("EDGE", "NULL", "POOL")
WINDOWS = 60


def scores(errors: np.ndarray) -> Scores:
    return Scores(float(errors.mean()), float(errors.mean() * 100), 0.0, 0.0, len(errors),
                  tuple(float(e) for e in errors))


def result(symbol: str, config: dict, errors: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> TrialResult:
    def period(p: str) -> PeriodResult:
        return PeriodResult(scores(errors[p]), scores(base[p]), 1 - errors[p].mean() / base[p].mean())

    return TrialResult(symbol, FAMILY, config, 0, period("validation"), period("test"), None, False)


def write(root: str, name: str, *, with_pooled: bool, seed: int = 0, derived: bool = False, collator=None) -> dict:
    rng = np.random.default_rng(seed)
    records, finals, defaults, pooled_results = [], {}, {}, {}
    derived_docs = {}
    for symbol in SYMBOLS:
        base = {p: np.abs(rng.normal(0, 0.01, WINDOWS)) for p in ("validation", "test")}
        default = {p: base[p] * 0.98 for p in base}
        factor = {"EDGE": 0.6, "NULL": 1.0, "POOL": 1.0}[symbol]
        own = {p: default[p] * factor * np.exp(rng.normal(0, 0.02, WINDOWS)) for p in base}
        own["validation"] = own["validation"] * 0.97  # chosen on validation: looks better there
        pooled = {p: default[p] * 0.8 for p in base}
        config = {"lookback": 100 + len(symbol)}
        finals[(symbol, FAMILY)] = result(symbol, config, own, base)
        defaults[(symbol, FAMILY)] = result(symbol, {"lookback": 256}, default, base)
        pooled_results[symbol] = result(symbol, {"lookback": 64}, pooled, base)
        for i in range(4):  # the study's trials, the winner last (lowest validation error)
            errors = own["validation"] if i == 3 else own["validation"] * (1.1 + 0.05 * i)
            records.append(TrialRecord(f"{symbol}-{i}", symbol, FAMILY, COMPLETED, config if i == 3 else {"lookback": 20 + i},
                                       {"pct_return_mae": float(errors.mean()), "errors": list(map(float, errors))},
                                       number=i, session=1))
        if derived and symbol == "NULL":
            blend = {p: own[p] * 0.9 for p in own}  # validation-best: the symbol's winner
            doc = result(symbol, {"members": [FAMILY]}, blend, base).to_dict()
            doc["model_type"] = "blend"
            derived_docs[(symbol, "blend")] = doc
    pooled = ({FAMILY: PooledOutcome(FAMILY, {"lookback": 64}, 0.01, 4, pooled_results)} if with_pooled else None)
    dates = {s: {p: [f"2024-{p[0]}-{t:03d}" for t in range(WINDOWS)] for p in ("validation", "test")}
             for s in SYMBOLS}
    meta = {"experiment": name, "seed": 0, "windows": {"horizon": 1}, "tiny_weights": False}
    return write_experiment(Storage(root, name), records, finals, [(s, FAMILY) for s in SYMBOLS], 4, meta,
                            derived_docs or None, defaults=defaults, pooled=pooled, window_dates=dates,
                            collator=collator)
