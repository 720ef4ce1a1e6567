"""One trial: a family's forecasts for one symbol's periods under one config and seed, scored.

This module never imports Ray; the Ray layer calls :func:`run_trial` (a test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.core.families.base import Family
from tuner.core.metrics import Scores, baseline, score, skill, skill_fields
from tuner.core.windows import Periods, WindowBatch


@dataclass(frozen=True)
class PeriodResult:
    """A family's scores on one period next to the naive baseline on the same windows.

    Attributes:
        scores: the family's scores.
        baseline: the no-change forecast's scores (latency 0).
        skill: ``1 - scores.pct_return_mae / baseline.pct_return_mae`` (> 0 beats the baseline);
            None when the baseline's error is 0 and the family's is not (``skill_reason`` says so).
    """

    scores: Scores
    baseline: Scores
    skill: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.scores.to_dict(), **skill_fields(self.skill)}


@dataclass(frozen=True)
class TrialResult:
    """What one trial produced.

    Attributes:
        symbol, family: what was evaluated.
        config: the checked trial parameters (defaults filled in).
        seed: the trial seed; each window's seed derives from it (``windows.window_seeds``).
        validation: scores on the validation period (what tuning optimises).
        test: scores on the held-out test period, or None when not scored (only winners are).
        weights: the checkpoints used (None for weights-free families).
        tiny_weights: True when the weights were tiny random-init ones.
        folds: scores on the stability folds (scored with the test period, for winners).
    """

    symbol: str
    family: str
    config: dict[str, Any]
    seed: int
    validation: PeriodResult
    test: PeriodResult | None
    weights: str | None
    tiny_weights: bool
    folds: tuple[PeriodResult, ...] = ()

    @property
    def objective(self) -> float:
        """The value tuning minimises: validation pct_return_mae."""
        return self.validation.scores.pct_return_mae

    def to_dict(self) -> dict[str, Any]:
        """SPEC.md's result layout (the collator adds the experiment's fields)."""
        return {
            "symbol": self.symbol,
            "model_type": self.family,
            "config": dict(self.config),
            "validation": self.validation.to_dict(),
            "test": self.test.to_dict() if self.test else None,
            "baseline": {
                "validation": self.validation.baseline.to_dict(),
                "test": self.test.baseline.to_dict() if self.test else None,
            },
            "seed": self.seed,
            "weights": self.weights,
            "tiny_weights": self.tiny_weights,
            **({"stability": stability(self)} if self.folds else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialResult:
        def period(name: str) -> PeriodResult | None:
            if data.get(name) is None:
                return None
            return PeriodResult(Scores.from_dict(data[name]), Scores.from_dict(data["baseline"][name]),
                                data[name]["skill"])

        folds = tuple(
            PeriodResult(Scores.from_dict(f), Scores.from_dict(f["baseline"]), f["skill"])
            for f in data.get("stability", {}).get("folds", []))
        return cls(data["symbol"], data["model_type"], dict(data["config"]), data["seed"],
                   period("validation"), period("test"), data.get("weights"),
                   bool(data.get("tiny_weights", False)), folds)


def stability(result: TrialResult) -> dict[str, Any]:
    """The validation score next to the earlier folds', and their spread (max - min, std)."""
    values = [result.validation.scores.pct_return_mae] + [f.scores.pct_return_mae for f in result.folds]
    return {
        "folds": [{**f.to_dict(), "baseline": f.baseline.to_dict()} for f in result.folds],
        "pct_return_mae_validation_and_folds": values,
        "spread": max(values) - min(values),
        "std": float(np.std(values)),
    }


def evaluate_period(family: Family, params: Mapping[str, Any], batch: WindowBatch, seed: int) -> PeriodResult:
    """Forecast every window of ``batch`` and score it next to the baseline."""
    forecast = family.forecast(batch, params, seed)
    scores = score(forecast.point, batch, forecast.latency_s)
    reference = baseline(batch)
    return PeriodResult(scores, reference, skill(scores, reference))


def run_trial(family: Family, params: Mapping[str, Any], periods: Periods, seed: int,
              *, with_test: bool = False, validation: Scores | None = None) -> TrialResult:
    """Evaluate ``params`` on the validation period (and the test period when ``with_test``).

    Tuning calls this with ``with_test=False``: the test period (and the stability folds) are only
    scored for winners, with the same seed, so tuning never sees them. ``validation``: the
    scores the trial already has on the validation period (a winner's, from tuning): that
    period is then not forecast again, only its baseline is computed.
    """
    checked = family.check_params(params)
    if validation is None:
        tuned_on = evaluate_period(family, checked, periods.validation, seed)
    else:
        reference = baseline(periods.validation)
        tuned_on = PeriodResult(validation, reference, skill(validation, reference))
    test = evaluate_period(family, checked, periods.test, seed) if with_test else None
    folds = tuple(evaluate_period(family, checked, f, seed) for f in periods.folds) if with_test else ()
    return TrialResult(
        symbol=periods.validation.symbol,
        family=family.name,
        config=checked,
        seed=seed,
        validation=tuned_on,
        test=test,
        weights=family.weights_id,
        tiny_weights=family.tiny_weights,
        folds=folds,
    )
