"""The flags a report shows on a study's winner, each with its rule in words.

Flags (:func:`flags_for`), checked for every study's winner, so for every family of a symbol
and for the symbol's overall winner; the rule is printed in every report:

* ``no-skill``: validation pct_return_mae >= the naive no-change baseline's pct_return_mae on the
  same validation windows. The config does not beat doing nothing on the very period it was
  chosen on (``summary.json``'s ``beats_baseline`` is false).
* ``overfit``: test pct_return_mae > 1.5 × validation pct_return_mae **and** test
  pct_return_mae >= the naive baseline's on the test windows. Why both: a winner's validation
  score is optimistic (it is the minimum over the study's trials) and two 20-bar periods differ
  in volatility, so a ratio alone flags a calmer validation than test period, whose baseline gets
  worse too; a model that still beats doing nothing on the unseen period is not overfit in any
  way that matters. 1.5 leaves room for that noise: on 20 windows the period-to-period spread
  of a mean absolute return error is commonly ±30%.
* ``untested``: no test-period score is stored, so the overfit rule cannot be checked.

From the winner file's ``significance`` section (:mod:`tuner.core.statistics.significance`), when there is one
(:func:`significance_flags`; files without it get none of these):

* ``not-better-than-default``: on the test period the winner does not beat the family's default
  config at 5 % (one-sided Diebold–Mariano p >= 0.05, or no lower error at all).
* ``luck``: Hansen's SPA p >= 0.05: the best of the study's trials does not beat the naive
  baseline by more than the best of that many tries could by chance.
* ``likely-overfit``: PBO > 0.5 **and** on the test period the winner beats neither the default
  nor the baseline at 5 %: in most splits of the validation windows the config best on one half
  is no better than the median config on the other, and nothing unseen says otherwise. PBO alone
  ranks configs among themselves: when every config beats the baseline equally (a drift any of
  them captures), it is ~0.5 although the winner is fine; the test-period condition keeps such
  winners unflagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OVERFIT_RATIO = 1.5
"""``overfit`` needs test pct_return_mae above this multiple of the validation score."""
NO_SKILL, OVERFIT, UNTESTED = "no-skill", "overfit", "untested"
NOT_BETTER_THAN_DEFAULT, LUCK, LIKELY_OVERFIT = "not-better-than-default", "luck", "likely-overfit"
SIGNIFICANCE_ALPHA = 0.05
"""Level of the significance flags."""
FLAG_RULES = {
    NO_SKILL: "validation pct_return_mae >= the naive no-change baseline's on the validation "
              "windows: does not beat doing nothing on the period it was chosen on",
    OVERFIT: f"test pct_return_mae > {OVERFIT_RATIO:g} x validation pct_return_mae and >= the "
             "naive baseline's on the test windows: much worse on unseen bars and no better "
             "than doing nothing there",
    UNTESTED: "no test-period score stored: the overfit rule cannot be checked",
}
SIGNIFICANCE_FLAG_RULES = {
    NOT_BETTER_THAN_DEFAULT: "test period: does not beat the family's default config at 5 % "
                             "(one-sided Diebold-Mariano p >= 0.05, or no lower error)",
    LUCK: "Hansen's SPA p >= 0.05: the best of the study's trials does not beat the naive baseline "
          "by more than the best of that many tries could by chance",
    LIKELY_OVERFIT: "PBO > 0.5 and on the test period it beats neither the default nor the naive "
                    "baseline at 5 %: the config best on one half of the validation windows is usually "
                    "no better than the median config on the other half, and nothing unseen says otherwise",
}
def flags_for(validation: float | None, test: float | None, baseline_validation: float | None,
              baseline_test: float | None, ratio: float = OVERFIT_RATIO) -> tuple[str, ...]:
    """The flags of one study winner, from its pct_return_mae scores (see the module docstring).

    Args:
        validation, test: the winner's pct_return_mae on the validation and test periods
            (``test`` None when not scored).
        baseline_validation, baseline_test: the naive no-change forecast's on the same windows.
        ratio: how many times worse than validation the test score must be for ``overfit``.

    Returns:
        A subset of ``("no-skill", "overfit", "untested")``, in that order.
    """
    flags = []
    if validation is not None and baseline_validation is not None and validation >= baseline_validation:
        flags.append(NO_SKILL)
    if test is None or validation is None:
        flags.append(UNTESTED)
    elif test > ratio * validation and baseline_test is not None and test >= baseline_test:
        flags.append(OVERFIT)
    return tuple(flags)


def significance_flags(section: Mapping[str, Any] | None, alpha: float = SIGNIFICANCE_ALPHA
                       ) -> tuple[str, ...]:
    """The flags a winner file's ``significance`` section raises (see the module docstring);
    () without a section. A test that could not be computed (null) raises no flag, except a
    default comparison that found the winner no better at all (identical or worse errors)."""
    if not section:
        return ()
    flags = []
    versus = ((section.get("vs_default") or {}).get("test")) or {}
    p, diff = as_float(versus.get("p_value")), as_float(versus.get("mean_difference"))
    if (p is not None and p >= alpha) or (p is None and diff is not None and diff >= 0):
        flags.append(NOT_BETTER_THAN_DEFAULT)
    spa = as_float(section.get("spa_p_value"))
    if spa is not None and spa >= alpha:
        flags.append(LUCK)
    overfit = as_float(section.get("pbo"))
    beats = [as_float((((section.get(k) or {}).get("test")) or {}).get("p_value"))
             for k in ("vs_default", "vs_baseline")]
    if overfit is not None and overfit > 0.5 and not any(b is not None and b < alpha for b in beats):
        flags.append(LIKELY_OVERFIT)
    return tuple(flags)


def as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
