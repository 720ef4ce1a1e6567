"""The pooled study of a family: one config tuned on every symbol at once.

Beside the per-symbol studies, each family of an experiment with two or more symbols (and
``pooled: true``) gets one more Optuna study, keyed ``"*pooled*/<family>"``: each of its trials
is one config evaluated on every symbol's validation windows by the family's model actors
(:meth:`tuner.engine.actors.ModelServer.evaluate_pooled`), and its objective is the mean over
symbols of each symbol's validation ``pct_return_mae``. It runs in the same searcher, packs and
journal as the others (so a resume rebuilds it like any study), with the experiment's ``trials``
as its budget and the family default as its first trial. After tuning, its best config is scored
on each symbol's validation and test periods with the experiment seed (the same windows and
draws as the symbol's own winner) and handed to collation as a :class:`PooledOutcome`.

Cost: a pooled trial does one trial's model work per symbol it is tuned on, on one actor, so
with every symbol of a large universe the pooled study would cost as much as all the
per-symbol studies together and run serially. It is tuned on a seeded sample of at most
``pooled_symbols`` (:data:`POOLED_SYMBOLS`) symbols: the mean error over 50 symbols' windows
already ranks configs far more precisely than any one symbol's, and the decision scores the
chosen config on every symbol's test period anyway.

Pooled records never enter the per-symbol tables (winners, trial counts, ``trials.parquet``):
:class:`tuner.engine.trial_store.TrialStore` keeps them apart.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tuner.core.pooled import PooledOutcome

POOLED_SYMBOL = "*pooled*"
"""The symbol part of a pooled study's key: never a symbol (data files cannot yield ``*``)."""

POOLED_SYMBOLS = 50
"""Default cap on the symbols a pooled study is tuned on (``pooled_symbols``; None = all)."""


def pooled_key(family: str) -> str:
    return f"{POOLED_SYMBOL}/{family}"


def pooled_families(families: Iterable[str], studies: Iterable[tuple[str, str]], enabled: bool) -> list[str]:
    """The families that get a pooled study: those with studies on at least two symbols."""
    if not enabled:
        return []
    symbols: dict[str, set[str]] = {}
    for symbol, family in studies:
        symbols.setdefault(family, set()).add(symbol)
    return [f for f in families if len(symbols.get(f, ())) >= 2]


def tuning_symbols(family: str, symbols: Iterable[str], cap: int | None, seed: int) -> tuple[str, ...]:
    """The symbols ``family``'s pooled study is tuned on: all of them up to ``cap``, else a
    sample of ``cap`` fixed by the experiment seed and the family (so a resume, or another
    actor, takes the same ones), sorted."""
    ordered = sorted(set(symbols))
    if cap is None or len(ordered) <= cap:
        return tuple(ordered)
    return tuple(sorted(random.Random(f"pooled/{seed}/{family}").sample(ordered, cap)))


def pooled_summary(outcomes: Mapping[str, PooledOutcome], budget: int,
                   tuned_on: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """``summary.json``'s ``pooled`` section: family → its pooled config, objective (over the
    ``tuned_on`` symbols), trials, the symbols it was scored on and those it was tuned on."""
    tuned_on = tuned_on or {}
    return {family: {"config": dict(o.config), "validation_pct_return_mae": o.validation_pct_return_mae,
                     "trials": o.trials, "budget": budget, "symbols": sorted(o.results),
                     "tuned_on": sorted(tuned_on.get(family) or o.results)}
            for family, o in sorted(outcomes.items())}


def pooled_metrics(per_symbol: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A pooled trial's validation block from each symbol's ``TrialResult.to_dict()``: the mean
    over symbols of pct_return_mae (the objective) and of the baseline's, summed latency and
    windows, and each symbol's own pct_return_mae."""
    n = len(per_symbol)
    vals = [r["validation"] for r in per_symbol.values()]
    bases = [r["baseline"]["validation"] for r in per_symbol.values()]
    mae = sum(v["pct_return_mae"] for v in vals) / n
    base = sum(b["pct_return_mae"] for b in bases) / n
    windows = sum(v["windows"] for v in vals)
    latency = sum(v["latency_s"] for v in vals)
    validation = {"pct_return_mae": mae, "price_mae": sum(v["price_mae"] for v in vals) / n,
                  "latency_s": latency, "latency_per_forecast_s": latency / max(1, windows),
                  "windows": windows, "skill": (1.0 - mae / base) if base > 0 else None,
                  "per_symbol": {s: r["validation"]["pct_return_mae"] for s, r in per_symbol.items()}}
    return {"validation": validation, "baseline": {"validation": {"pct_return_mae": base}}}


def pooled_completed(pooled_records: Iterable[Any], families: Iterable[str]) -> dict[str, int]:
    """Completed trials of each family's pooled study (``pooled_records``: its trial records)."""
    done = Counter(r.family for r in pooled_records if r.status == "completed")
    return {f: done[f] for f in families}
