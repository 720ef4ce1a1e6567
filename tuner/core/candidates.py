"""Derived candidates built from the family winners of a symbol; they compete with them.

* **blend** ("ensemble of ensembles"): the best Toto and the best Kronos-ensemble point
  forecasts, weighted by inverse validation pct_return_mae (``w_i ∝ 1 / mae_i``).
* **regime**: per window, the *fast* winner (lowest latency per forecast) in calm markets and
  the *conservative* winner (lowest validation error among the others) in volatile ones. A
  window's volatility is the standard deviation of its context's last ``VOL_BARS`` one-bar log
  returns (its own context: leak-free); the threshold (a midpoint between two validation
  windows' volatilities) is the one that minimises pct_return_mae over validation windows.

A rule fitted on the validation windows and scored on the same windows would look better than
it is, and it competes with family winners that were not fitted that way. So a candidate's
validation score is **cross-fitted**: the validation windows are cut into 4 contiguous blocks
and each block is scored by the rule fitted on the other three (blocked, not interleaved:
neighbouring windows share most of their bars, so an interleaved split would score the rule on
near-copies of what it was fitted on). The rule that is reported, scored on test and promoted is
fitted on all validation windows. A regime is only written when its cross-fitted score beats
both of its members.

Both are point-forecast rules: they need each winner's forecasts on both periods, which the
driver asks the model actors for (the draws are the winners' own, same seed). Their latency is
derived, never measured: a blend runs both members (the sum of their latencies), a regime one
member per window (the mean over the windows of the chosen member's); each period uses the
members' latency on that period, so the test latency comes from the members' test re-scoring.

A candidate's result file carries the labels every result file carries (weights, tiny weights,
trial counts, windows, data): :func:`label_candidate` takes them from its members' files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.core.metrics import baseline, pct_return_errors, score, skill, skill_fields
from tuner.core.windows import Periods, WindowBatch

VOL_BARS = 20


@dataclass(frozen=True)
class WinnerForecasts:
    """One family winner's point forecasts on a symbol's periods.

    Attributes:
        family: the family.
        validation, test: (W,) point forecasts, price units.
        latency_per_forecast_s: the winner's validation latency per forecast, seconds.
        test_latency_per_forecast_s: its latency per forecast on the test period (from the
            winner's test re-scoring), seconds; None when not known: a candidate's test latency
            is then None too, never the validation one.
    """

    family: str
    validation: np.ndarray
    test: np.ndarray
    latency_per_forecast_s: float
    test_latency_per_forecast_s: float | None = None


def realised_volatility(batch: WindowBatch, bars: int = VOL_BARS) -> np.ndarray:
    """(W,) std of the last ``bars`` one-bar log returns of each window's context."""
    closes = batch.close_context[:, -(bars + 1):]
    return np.log(closes[:, 1:] / closes[:, :-1]).std(axis=1)


def _document(kind: str, symbol: str, config: dict[str, Any], periods: Periods, val: np.ndarray,
              test: np.ndarray, latency: float, test_latency: float | None, seed: int) -> dict[str, Any]:
    """``latency``, ``test_latency``: seconds per forecast on each period (None: unknown)."""

    def period(point: np.ndarray, batch: WindowBatch, per_forecast: float | None) -> tuple[dict, dict]:
        s = score(point, batch, (per_forecast or 0.0) * len(batch))
        ref = baseline(batch)
        out = {**s.to_dict(), **skill_fields(skill(s, ref))}
        if per_forecast is None:
            out.update(latency_s=None, latency_per_forecast_s=None)
        return out, ref.to_dict()

    v, v_ref = period(val, periods.validation, latency)
    t, t_ref = period(test, periods.test, test_latency)
    return {"symbol": symbol, "model_type": kind, "config": config, "validation": v, "test": t,
            "baseline": {"validation": v_ref, "test": t_ref}, "seed": seed}


MIN_CROSS_FIT_WINDOWS = 4
"""Fewest validation windows for a cross-fitted score (two per block); fewer: no candidates."""

CROSS_FIT_BLOCKS = 4
"""Contiguous blocks of validation windows in the cross-fit (each scored by a rule fitted on the others)."""

CROSS_FITTED = ("cross-fitted: each of 4 contiguous blocks of validation windows scored by the rule "
                "fitted on the other blocks")


def cross_fitted(n: int, fit: Callable[[np.ndarray], Any], apply: Callable[[Any, np.ndarray], np.ndarray]
                 ) -> np.ndarray:
    """(n,) out-of-fold validation forecasts of a rule, by blocked cross-validation: the windows
    are cut into ``CROSS_FIT_BLOCKS`` contiguous blocks (two below 8 windows); each block gets
    ``apply(fit(other blocks), block)``. Blocks, not interleaved windows: neighbouring windows
    share most of their volatility bars and their errors are correlated, so an interleaved
    held-out window would be nearly a copy of one the rule was fitted on."""
    blocks = np.array_split(np.arange(n), CROSS_FIT_BLOCKS if n >= 2 * CROSS_FIT_BLOCKS else 2)
    out = np.empty(n)
    for i, held_out in enumerate(blocks):
        fitted_on = np.concatenate([b for j, b in enumerate(blocks) if j != i])
        out[held_out] = apply(fit(fitted_on), held_out)
    return out


def blend(symbol: str, periods: Periods, a: WinnerForecasts, b: WinnerForecasts, seed: int) -> dict[str, Any] | None:
    """The inverse-MAE blend of two winners; None with too few validation windows to cross-fit."""
    val = periods.validation
    if len(val) < MIN_CROSS_FIT_WINDOWS:
        return None
    errors = np.stack([pct_return_errors(a.validation, val), pct_return_errors(b.validation, val)])

    def fit(windows: np.ndarray) -> np.ndarray:
        inverse = 1.0 / np.maximum(errors[:, windows].mean(axis=1), 1e-12)
        return inverse / inverse.sum()

    def apply(w: np.ndarray, windows: np.ndarray) -> np.ndarray:
        return w[0] * a.validation[windows] + w[1] * b.validation[windows]

    w = fit(np.arange(len(val)))
    config = {"members": [a.family, b.family], "weights": [float(w[0]), float(w[1])],
              "rule": "inverse validation pct_return_mae", "validation_score": CROSS_FITTED}
    known = a.test_latency_per_forecast_s is not None and b.test_latency_per_forecast_s is not None
    test_latency = a.test_latency_per_forecast_s + b.test_latency_per_forecast_s if known else None
    return _document("blend", symbol, config, periods, cross_fitted(len(val), fit, apply),
                     w[0] * a.test + w[1] * b.test, a.latency_per_forecast_s + b.latency_per_forecast_s,
                     test_latency, seed)


def regime(symbol: str, periods: Periods, winners: list[WinnerForecasts], seed: int) -> dict[str, Any] | None:
    """Switch by realised volatility between the fast and the conservative winner; None when
    fewer than two winners exist, when validation is too short to cross-fit, or when the
    cross-fitted switch does not beat both members (the rule would just be a winner again)."""
    val = periods.validation
    if len(winners) < 2 or len(val) < MIN_CROSS_FIT_WINDOWS:
        return None
    fast = min(winners, key=lambda w: w.latency_per_forecast_s)
    others = [w for w in winners if w is not fast]
    conservative = min(others, key=lambda w: pct_return_errors(w.validation, val).mean())
    vol_val = realised_volatility(val)
    errors = {"fast": pct_return_errors(fast.validation, val),
              "conservative": pct_return_errors(conservative.validation, val)}

    def fit(windows: np.ndarray) -> float:
        # Cut between neighbouring volatilities (midpoints), not at one of them: a window held
        # out in between falls on the side its closer neighbours took.
        seen = np.unique(vol_val[windows])
        best: tuple[float, float] | None = None
        for threshold in np.concatenate([[-np.inf], (seen[:-1] + seen[1:]) / 2, [np.inf]]):
            use = vol_val[windows] >= threshold
            mae = np.where(use, errors["conservative"][windows], errors["fast"][windows]).mean()
            if best is None or mae < best[0]:
                best = (mae, float(threshold))
        return best[1]

    def apply(threshold: float, windows: np.ndarray) -> np.ndarray:
        return np.where(vol_val[windows] >= threshold, conservative.validation[windows], fast.validation[windows])

    threshold = fit(np.arange(len(val)))
    if not np.isfinite(threshold) or threshold <= vol_val.min():
        return None  # every validation window on one side: no regime, just one winner
    honest = cross_fitted(len(val), fit, apply)
    if pct_return_errors(honest, val).mean() >= min(errors["fast"].mean(), errors["conservative"].mean()):
        return None  # out of fold, switching does not beat always using one member
    use_val = vol_val >= threshold
    use_test = realised_volatility(periods.test) >= threshold
    config = {"fast": fast.family, "conservative": conservative.family,
              "volatility_threshold": threshold, "volatility_bars": VOL_BARS,
              "rule": "conservative when realised volatility >= threshold", "validation_score": CROSS_FITTED}
    latency = float(np.mean(np.where(use_val, conservative.latency_per_forecast_s, fast.latency_per_forecast_s)))
    test_latency = None
    if conservative.test_latency_per_forecast_s is not None and fast.test_latency_per_forecast_s is not None:
        test_latency = float(np.mean(np.where(use_test, conservative.test_latency_per_forecast_s,
                                              fast.test_latency_per_forecast_s)))
    return _document("regime", symbol, config, periods, honest,
                     np.where(use_test, conservative.test, fast.test), latency, test_latency, seed)


def blend_toto_member(found: Mapping[str, WinnerForecasts], periods: Periods) -> WinnerForecasts | None:
    """The blend's Toto member: ``toto`` or ``toto2``, whichever winner has the lower validation
    ``pct_return_mae`` (None when neither ran)."""
    members = [found[f] for f in ("toto", "toto2") if f in found]
    if not members:
        return None
    return min(members, key=lambda w: float(pct_return_errors(w.validation, periods.validation).mean()))


def symbol_candidates(symbol: str, periods: Periods, found: Mapping[str, WinnerForecasts],
                      max_latency_s: float | None, seed: int) -> dict[str, dict[str, Any]]:
    """A symbol's derived candidates, kind (``blend``, ``regime``) → document, from its family
    winners' forecasts ``found`` (family → forecasts). A blend is only built when its members'
    latencies together stay within ``max_latency_s`` (None: no limit)."""
    derived = {}
    toto = blend_toto_member(found, periods)
    ensemble = found.get("kronos_ensemble")
    if toto is not None and ensemble is not None and (
            max_latency_s is None
            or toto.latency_per_forecast_s + ensemble.latency_per_forecast_s <= max_latency_s):
        mixed = blend(symbol, periods, toto, ensemble, seed)
        if mixed is not None:
            derived["blend"] = mixed
    switch = regime(symbol, periods, list(found.values()), seed)
    if switch is not None:
        derived["regime"] = switch
    return derived


def candidate_members(config: Mapping[str, Any]) -> list[str]:
    """The families a candidate's config combines: a blend's ``members``, a regime's ``fast``
    and ``conservative``."""
    if "members" in config:
        return [str(m) for m in config["members"]]
    return [str(config[k]) for k in ("fast", "conservative") if k in config]


def label_candidate(candidate: Mapping[str, Any], documents: Mapping[tuple[str, str], Mapping[str, Any]],
                    counts: Mapping[tuple[str, str], Mapping[str, int]], meta: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """A candidate's result document with the labels every result file carries.

    Args:
        candidate: what :func:`blend` or :func:`regime` returned.
        documents: the experiment's family winner documents, (symbol, family) → document
            (``collate.winner_document``'s layout); the candidate's members must be there.
        counts: (symbol, family) → the study's trial counts.
        meta: the run facts (``experiment``, ``created_at``, ``windows``, ``data``,
            ``tiny_weights``).

    Returns:
        The candidate plus ``weights`` (member family → its weights), ``tiny_weights`` (any
        member's, or the run's), ``trials`` (``{"members": {family: counts}}``: a candidate runs
        no trials of its own), ``windows``, ``data``, ``experiment`` and ``created_at``.
    """
    symbol = candidate["symbol"]
    members = {f: documents.get((symbol, f)) or {} for f in candidate_members(candidate["config"])}
    tiny = bool(meta.get("tiny_weights")) or any(bool(m.get("tiny_weights")) for m in members.values())
    return {
        **candidate,
        "weights": {f: m.get("weights") for f, m in members.items()},
        "tiny_weights": tiny,
        "trials": {"members": {f: dict(counts.get((symbol, f)) or {}) for f in members}},
        "windows": meta.get("windows"),
        "data": meta.get("data"),
        "experiment": meta.get("experiment"),
        "created_at": meta.get("created_at"),
    }
